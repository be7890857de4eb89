"""The figures API that stages call: publish numbers, histograms and series for `curate report`.

A stage's phase writes `OUT/<phase>/report.json`:
    {"title": str, "figures": {name: number}, "histograms": {name: {"edges": [...], "counts": [...],
     "reference": [...] (optional, same bins)}}, "series": {name: [numbers]}}
`curate/report.py` reads these files and renders them; this module only writes them, so stages never
depend on the report's rendering.
"""

from __future__ import annotations

import os

import numpy as np

from curate.atomic import write_json_atomic

REPORT_FILE = "report.json"


def write_report_section(phase_data_dir: str, title: str, figures: dict | None = None,
                         histograms: dict | None = None, series: dict | None = None) -> str:
    """Publish a stage's figures for `curate report`: writes `report.json` in the phase folder
    (the parent of the phase's `data/` folder). Values must be JSON-serialisable numbers/lists."""
    path = os.path.join(os.path.dirname(os.path.abspath(phase_data_dir)), REPORT_FILE)
    write_json_atomic({"title": title, "figures": figures or {}, "histograms": histograms or {},
                       "series": series or {}}, path)
    return path


def histogram(values, lo: float = -0.25, hi: float = 1.0, bins: int = 25) -> dict:
    """Counts of `values` (clipped into [lo, hi]) in equal bins, as the report's histogram format."""
    v = np.clip(np.asarray(values, dtype=np.float64), lo, hi)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return {"edges": [float(x) for x in edges], "counts": [int(c) for c in counts]}


def downsample(values, points: int = 2000) -> list[float]:
    """Bucket means, so a path of a million similarities plots as `points` values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) <= points:
        return [float(x) for x in v]
    return [float(x.mean()) for x in np.array_split(v, points)]
