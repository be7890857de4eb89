"""The join's CPU block kernel, before and after: torch (`a @ b.T`, `torch.topk`, float32 re-score
from a float32 copy of the chunk) against the compiled path (one cast to bfloat16, `select_top_bf16`,
`rescore_f16` straight from the stored float16 rows), on the same groups of a clustered corpus.

Per path: CPU seconds (the process's, all threads: far steadier than wall time on a shared machine)
and wall seconds over `--groups` groups of `--rows` query rows against `--candidates` candidate rows,
and the overlap of the two paths' neighbour lists (they differ only on near-ties).

    python bench/join_blocks.py [--groups 6 --rows 1000 --candidates 18000]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def run_path(compiled: bool, groups, k: int, keep: int):
    import numpy as np

    from stages.neighbors import blocks

    blocks.BlockTopK.compiled_cpu = compiled
    out = []
    cpu, wall = time.process_time(), time.perf_counter()
    for queries, cand in groups:
        top = blocks.BlockTopK(queries.astype(np.float32), k, keep, "bfloat16")
        for lo in range(0, len(cand), blocks.CHUNK_ROWS):
            top.add(cand[lo : lo + blocks.CHUNK_ROWS], np.arange(lo, min(len(cand), lo + blocks.CHUNK_ROWS)))
        out.append(top.result()[1])
    return time.process_time() - cpu, time.perf_counter() - wall, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=6)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=18000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import numpy as np
    import torch

    from knn import clustered_vectors

    torch.set_num_threads(args.threads)
    x = clustered_vectors(args.groups * (args.rows + args.candidates))
    groups = []
    for g in range(args.groups):
        base = g * (args.rows + args.candidates)
        groups.append((x[base : base + args.rows], x[base + args.rows : base + args.rows + args.candidates]))
    run_path(True, groups[:1], 20, 40)  # compile / warm up both
    run_path(False, groups[:1], 20, 40)
    torch_cpu, torch_wall, torch_ids = run_path(False, groups, 20, 40)
    fast_cpu, fast_wall, fast_ids = run_path(True, groups, 20, 40)
    overlap = float(np.mean([len(set(a) & set(b)) / len(a) for ga, gb in zip(torch_ids, fast_ids) for a, b in zip(ga, gb)]))
    print(json.dumps({"bench": "join_blocks", "groups": args.groups, "rows": args.rows, "candidates": args.candidates,
                      "threads": args.threads, "torch_cpu_s": round(torch_cpu, 2), "compiled_cpu_s": round(fast_cpu, 2),
                      "cpu_speedup": round(torch_cpu / fast_cpu, 3), "torch_wall_s": round(torch_wall, 2),
                      "compiled_wall_s": round(fast_wall, 2), "wall_speedup": round(torch_wall / fast_wall, 3),
                      "neighbour_overlap": round(overlap, 5), "load_avg": [round(v, 1) for v in os.getloadavg()]}))


if __name__ == "__main__":
    main()
