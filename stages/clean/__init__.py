"""Cleaning stages: normalisation, language id, heuristic rules, quality classifier."""

from stages.clean import normalize  # noqa: F401
