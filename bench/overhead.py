"""Benchmark: the fixed cost of a phase on a small run, worker processes per phase vs in-process.

A 500-document recipe of 16 phases (normalize, exact dedup, embed, kNN, order, pack; 2 tasks, 2
workers) runs twice through the CLI, each in a fresh interpreter and output folder, side by side in
one benchmark run (the machine is shared: compare the ratio, not the seconds):
- `pools` (the reference: how every local run worked before `executor.in_process_mb`): each phase
  starts datatrove's worker pool, whose processes import datatrove, torch and the stage's models;
- `in_process` (the default for inputs under 8 MB): every task runs in the launching process, one
  after another, each on its own copy of the pipeline; start-up work of later phases (numba for
  `order.paths`) is done in a background thread while earlier phases run (`curate/warm_up.py`).
Per-phase wall times come from each run's run.json. `same_outputs` says, per kind of output
(documents, order, windows), whether the two runs wrote the same bytes.
`embed` is compute (encoding 450 documents on CPU), not overhead; it is reported apart.

Prints ONE JSON line.

    python bench/overhead.py [--docs 500] [--tasks 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

STAGES = ["normalize", "exact_dedup", {"embed": {"device": "cpu"}}, {"neighbors": {"k": 8, "device": "cpu"}},
          "order", {"pack": {"context_length": 512}}]


def run_mode(recipe: Path, out: Path, in_process_mb: float) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(recipe), "-o", str(out), "--no-report",
                          f"executor.in_process_mb={in_process_mb}"], env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"run failed ({in_process_mb=}): {res.stderr[-3000:]}")
    record = json.loads((out / "run.json").read_text())
    return wall, {p["id"]: p["wall_s"] for p in record["phases"]}


def data_digests(out: Path) -> dict[str, str]:
    """A hash per kind of published data (documents, order, windows), not the bookkeeping."""
    kinds = {"documents": lambda rel: "documents" in rel.parts and "_corpus" not in rel.parts,
             "order": lambda rel: rel.parts[0] == "order.stitch" and rel.name == "order.parquet",
             "windows": lambda rel: rel.parts[0] == "pack.windows" and "data" in rel.parts}
    digests = {}
    for kind, wanted in kinds.items():
        h = hashlib.sha256()
        for path in sorted(out.rglob("*")):
            rel = path.relative_to(out)
            if path.is_file() and rel.parts[0] != "final" and wanted(rel):
                h.update(str(rel).encode())
                h.update(path.read_bytes())
        digests[kind] = h.hexdigest()[:16]
    return digests


def summary(phases: dict) -> dict:
    rest = [s for pid, s in phases.items() if not pid.startswith("embed.")]
    return {"phases": len(phases), "total_s": round(sum(phases.values()), 2),
            "embed_s": round(sum(s for pid, s in phases.items() if pid.startswith("embed.")), 2),
            "other_phases_mean_s": round(statistics.mean(rest), 3),
            "other_phases_median_s": round(statistics.median(rest), 3),
            "other_phases_max_s": round(max(rest), 3), "phases_over_1s": sum(1 for s in phases.values() if s > 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--tasks", type=int, default=2)
    args = ap.parse_args()

    from helpers import synthetic_docs, write_jsonl_gz

    base = Path(tempfile.mkdtemp(prefix="curate_bench_overhead_"))
    write_jsonl_gz(base / "data" / "docs.jsonl.gz", synthetic_docs(args.docs, dup_every=10))
    recipe = base / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "overhead", "input": {"paths": str(base / "data")},
                                      "output": str(base / "out"),
                                      "executor": {"tasks": args.tasks, "workers": args.tasks}, "stages": STAGES}))
    pools_wall, pools = run_mode(recipe, base / "pools", 0)
    inproc_wall, inproc = run_mode(recipe, base / "in_process", 8)
    a, b = data_digests(base / "pools"), data_digests(base / "in_process")
    same = {kind: a[kind] == b[kind] for kind in a}
    print(json.dumps({
        "bench": "overhead", "docs": args.docs, "tasks": args.tasks,
        "pools": {"wall_s": round(pools_wall, 2), **summary(pools)},
        "in_process": {"wall_s": round(inproc_wall, 2), **summary(inproc)},
        "ratio_wall": round(pools_wall / inproc_wall, 2),
        "ratio_other_phases_mean": round(summary(pools)["other_phases_mean_s"]
                                         / max(1e-9, summary(inproc)["other_phases_mean_s"]), 1),
        "same_outputs": same,
        "per_phase_s": {pid: [round(pools[pid], 2), round(inproc[pid], 2)] for pid in pools},
    }))


if __name__ == "__main__":
    main()
