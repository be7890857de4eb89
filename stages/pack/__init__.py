"""Packing: documents in path order -> tokens -> fixed-length context windows (ICLM), with window
coherence and padding figures. `packing` holds the plain functions; `stage` the `pack` stage."""

from stages.pack import stage  # noqa: F401  (registers `pack`)
