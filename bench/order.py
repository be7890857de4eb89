"""Ordering quality on real labelled corpora, side by side with the references, in one run.

For bbc_news, ag_news_test and mini_newsgroups: MiniLM embeddings (cached outside the repository),
an exact k=20 FAISS graph, then for each ordering MAC, bound ratio (vs U2 from exact top-2),
adjacent-label agreement (and chance), kNN-edge fraction and wall time:
random, iclm_greedy (paper Algorithm 1), cluster_capped_walk (released code), edge_matching
(curate's default) and a near-optimal path from the LKH solver (elkai; benchmark only).
Prints one JSON line. `--quick` runs BBC only with a smaller LKH budget.
AG News is sampled (`--ag-sample`, default 4000 of 7,600 documents) so that LKH's dense distance
matrix and search stay within minutes; the sample is seeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus_cache import embed_corpus, exact_knn  # noqa: E402

from stages.order.algorithms import ALGORITHMS  # noqa: E402
from stages.order.quality import is_permutation, ordering_quality, top2_similarities  # noqa: E402


def lkh_path(vectors: np.ndarray, runs: int = 1, time_limit: float = 120.0, scale: int = 10000, seed: int = 0,
             trials: int = 100, extra: str = "INITIAL_PERIOD = 100\n") -> np.ndarray:
    """Near-optimal open path from LKH: distance = round((1 - cos) * scale); a dummy node at distance
    0 from every document turns the best tour into the best open path (cut at the dummy). The
    subgradient ascent is shortened (INITIAL_PERIOD 100) and trials capped: on BBC one trial already
    matches a 5-minute default run to 4 decimals of MAC."""
    from elkai import _elkai

    n = len(vectors)
    sims = vectors @ vectors.T
    dist = np.rint((1.0 - np.clip(sims, -1.0, 1.0)) * scale).astype(np.int64)
    full = np.zeros((n + 1, n + 1), dtype=np.int64)  # last row / column: the dummy node
    full[:n, :n] = dist
    np.fill_diagonal(full, 0)
    lines = [" ".join(map(str, row)) for row in full.tolist()]
    params = f"RUNS = {runs}\nMAX_TRIALS = {trials}\nTIME_LIMIT = {time_limit}\nSEED = {seed + 1}\n{extra}PROBLEM_FILE = :stdin:\n"
    problem = (
        f"TYPE : TSP\nDIMENSION : {n + 1}\nEDGE_WEIGHT_TYPE : EXPLICIT\nEDGE_WEIGHT_FORMAT : FULL_MATRIX\n"
        "EDGE_WEIGHT_SECTION\n" + "\n".join(lines) + "\nEOF\n"
    )
    tour = [t - 1 for t in _elkai.solve_problem(params, problem)]
    cut = tour.index(n)
    return np.array(tour[cut + 1 :] + tour[:cut], dtype=np.int64)


def bench_corpus(name: str, limit: int | None, k: int, lkh_time: float, seed: int, lkh_trials: int = 100) -> dict:
    ids, x, labels = embed_corpus(name, limit, seed)
    t = time.perf_counter()
    nbrs, sims = exact_knn(x, k)
    knn_s = time.perf_counter() - t
    s1, s2 = top2_similarities(x)
    row = {"documents": len(ids), "k": k, "knn_seconds": round(knn_s, 2), "orderings": {}}
    runs = list(ALGORITHMS.items())
    for algo, fn in runs:
        fn(x[:50], *exact_knn(x[:50], 5), seed)  # warm the compiled kernels outside the timing
    for algo, fn in runs + [("lkh", None)]:
        t = time.perf_counter()
        order = lkh_path(x, time_limit=lkh_time, seed=seed, trials=lkh_trials) if fn is None else fn(x, nbrs, sims, seed)
        dt = time.perf_counter() - t
        assert is_permutation(order, len(ids)), algo
        q = ordering_quality(x, order, nbrs, labels, s1, s2)
        row["orderings"][algo] = {
            "mac": round(q["mac"], 4), "bound_ratio": round(q["bound_ratio"], 4),
            "label_agreement": round(q["label_agreement"], 4), "knn_edge_fraction": round(q["knn_edge_fraction"], 4),
            "seconds": round(dt, 3),
        }
        row["label_chance"] = round(q["label_chance"], 4)
    o = row["orderings"]
    default, greedy, lkh = o["edge_matching"], o["iclm_greedy"], o["lkh"]
    row["default_vs_lkh_mac"] = round(default["mac"] / lkh["mac"], 4)
    row["default_vs_greedy_mac"] = round(default["mac"] / greedy["mac"], 4)
    row["default_time_vs_lkh"] = round(default["seconds"] / max(lkh["seconds"], 1e-9), 4)
    row["default_time_vs_greedy"] = round(default["seconds"] / max(greedy["seconds"], 1e-9), 2)
    row["default_minus_greedy_label_agreement"] = round(default["label_agreement"] - greedy["label_agreement"], 4)
    row["targets_met"] = bool(
        row["default_vs_lkh_mac"] >= 0.99 and row["default_vs_greedy_mac"] >= 1.03
        and row["default_minus_greedy_label_agreement"] > 0
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="BBC only, shorter LKH budget")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--ag-sample", type=int, default=4000, help="AG News documents sampled (0 = all 7,600)")
    ap.add_argument("--lkh-seconds", type=float, default=90.0, help="LKH time limit per corpus")
    ap.add_argument("--lkh-trials", type=int, default=100, help="LKH MAX_TRIALS per corpus")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    corpora = [("bbc_news", None)]
    if not args.quick:
        corpora += [("ag_news_test", args.ag_sample or None), ("mini_newsgroups", None)]
    lkh_time = min(args.lkh_seconds, 20.0) if args.quick else args.lkh_seconds
    trials = min(args.lkh_trials, 10) if args.quick else args.lkh_trials
    out = {"bench": "order", "k": args.k, "lkh_seconds_limit": lkh_time, "lkh_trials": trials, "corpora": {}}
    for name, limit in corpora:
        out["corpora"][name] = bench_corpus(name, limit, args.k, lkh_time, args.seed, trials)
    out["all_targets_met"] = all(r["targets_met"] for r in out["corpora"].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
