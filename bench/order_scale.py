"""Ordering at scale: 1,000,000 documents (384-d clustered synthetic vectors, k = 20) within 2 minutes
and 4 GiB, and partitioned vs unpartitioned quality at 100,000 documents.

Vectors: topics (unit centroids) with documents = centroid + noise, renormalised, stored float16 like
the embed stage. The kNN graph is built fast and outside the timing: an exact search inside each
generated topic (documents of different topics are near-orthogonal, so this is what a global search
finds too). Timed: the `order` stage's algorithm (edge matching + local search, partitioned, in
`--workers` threads). Prints one JSON line; `--docs N` changes the corpus size, `--quick` = 100k
documents and no unpartitioned comparison run.

`stitch` (at `--docs`): the partitions' paths are ordered once, then stitched both ways from the same
paths, side by side in this one run: the stage's default `dp` (centroid path + exact directions) and
`ortools` (OR-tools routing, guided local search over the seams under `--stitch-time-limit`, from the
solver's own first solution), plus `ortools_from_dp` (the same search started from the dp answer).
Figures: mean similarity across the seams between partitions, the whole path's MAC, stitch seconds.

`--stage`: the same corpus written as the embed and neighbors stages write it (vector shards, kNN
shards), then the `order` stage's own phases (partition, paths in `--tasks` datatrove tasks, stitch)
run by datatrove's LocalPipelineExecutor, each phase in a fresh process: wall time and peak resident
memory per phase (the largest task's). The phases map the vectors and the graph from disk, so their
resident memory includes file pages they touched, which the OS can drop.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fresh import print_peak, run_fresh  # noqa: E402
from stages.order.algorithms import ALGORITHMS  # noqa: E402
from stages.order.partition import order_partitioned, order_partitions  # noqa: E402
from stages.order.stitch import apply_plan, plan_dp, plan_ortools, seam_similarities  # noqa: E402
from stages.order.quality import is_permutation, mean_adjacent_cosine, top2_from_knn, upper_bound_u2  # noqa: E402


def synthetic_corpus(n: int, d: int = 384, topic_size: int = 500, noise: float = 0.06, seed: int = 0):
    """(vectors float16 [n, d] L2-normalised, topic id per row); rows are shuffled."""
    rng = np.random.default_rng(seed)
    topics = max(1, n // topic_size)
    centroids = rng.standard_normal((topics, d)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    topic = rng.integers(0, topics, n)
    x = np.empty((n, d), dtype=np.float16)
    for lo in range(0, n, 1 << 16):
        t = topic[lo : lo + (1 << 16)]
        v = centroids[t] + noise * rng.standard_normal((len(t), d)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        x[lo : lo + len(t)] = v
    return x, topic


def knn_within_topics(x: np.ndarray, topic: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inside each topic (self excluded): (neighbors int64 [n, k], sims float16)."""
    n = len(x)
    nbrs = np.full((n, k), -1, dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float16)
    order = np.argsort(topic, kind="stable")
    bounds = np.flatnonzero(np.diff(topic[order])) + 1
    for rows in np.split(order, bounds):
        v = x[rows].astype(np.float32)
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        kk = min(k, len(rows) - 1)
        if kk <= 0:
            continue
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        ts = np.take_along_axis(s, top, axis=1)
        rank = np.argsort(-ts, axis=1)
        nbrs[rows, :kk] = rows[np.take_along_axis(top, rank, axis=1)]
        sims[rows, :kk] = np.take_along_axis(ts, rank, axis=1)
    return nbrs, sims


def run_order(x, nbrs, sims, partition_size: int, workers: int, kicks: float, max_kicks: int, seed: int = 0):
    fn = ALGORITHMS["edge_matching"]
    kw = {"kicks_per_document": kicks, "max_kicks": max_kicks}
    t = time.perf_counter()
    if partition_size >= len(x):
        order = fn(np.asarray(x, dtype=np.float32), nbrs, sims, seed, **kw)
    else:
        order = order_partitioned(fn, x, nbrs, sims, seed, partition_size=partition_size, workers=workers, **kw)
    return order, time.perf_counter() - t


def compare_stitches(x, paths, time_limit_s: float, seed: int = 0) -> dict:
    """Stitch the same partition paths with every solver; seams, MAC and time of each."""
    paths = [p for p in paths if len(p)]
    out = {"partitions": len(paths), "seams": len(paths) - 1, "time_limit_s": time_limit_s}
    solvers = {
        "dp": lambda: plan_dp(x, paths, seed),
        "ortools": lambda: plan_ortools(x, paths, seed, time_limit_s),
        "ortools_from_dp": lambda: plan_ortools(x, paths, seed, time_limit_s, start=plan_dp(x, paths, seed)),
    }
    for name, solve in solvers.items():
        t = time.perf_counter()
        plan = solve()
        seconds = time.perf_counter() - t
        order = apply_plan(paths, plan)
        assert is_permutation(order, len(x))
        seams = seam_similarities(x, paths, plan)
        out[name] = {"seam_mac": round(float(seams.mean()), 5), "seam_min": round(float(seams.min()), 5),
                     "mac": round(mean_adjacent_cosine(x, order), 6), "stitch_seconds": round(seconds, 2)}
    out["ortools_minus_dp_seam_mac"] = round(out["ortools"]["seam_mac"] - out["dp"]["seam_mac"], 5)
    out["ortools_minus_dp_mac"] = round(out["ortools"]["mac"] - out["dp"]["mac"], 7)
    out["ortools_minus_dp_seconds"] = round(out["ortools"]["stitch_seconds"] - out["dp"]["stitch_seconds"], 2)
    return out


def write_stage_inputs(root: Path, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, rows_per_shard: int = 100_000):
    """Embed and neighbors artifacts in their on-disk formats (see stages/embed/store.py and
    stages/neighbors/store.py), plus the `ids` phase's output listing every document as kept."""
    import polars as pl

    from stages.embed.store import write_shard
    from stages.neighbors.store import write_knn_shard

    emb, graph, ids_dir = root / "embed", root / "neighbors", root / "ids"
    for d in (emb, graph, ids_dir):
        d.mkdir(parents=True, exist_ok=True)
    ids = [f"doc{i:07d}" for i in range(len(x))]
    manifest = {"model": "synthetic", "dim": int(x.shape[1]), "dtype": "float16", "normalized": True}
    for rank, lo in enumerate(range(0, len(x), rows_per_shard)):
        write_shard(str(emb), rank, x[lo : lo + rows_per_shard], ids[lo : lo + rows_per_shard], None, manifest)
        write_knn_shard(str(graph), rank, lo, nbrs[lo : lo + rows_per_shard], sims[lo : lo + rows_per_shard])
    pl.DataFrame({"id": ids}).write_parquet(graph / "ids.parquet")
    (graph / "manifest.json").write_text(json.dumps({"n": len(x), "k": int(nbrs.shape[1]), "index": "Flat", "exact": True}))
    pl.DataFrame({"id": ids}).write_parquet(ids_dir / "00000.parquet")


def run_stage_phase(root: str, phase: str, tasks: int, workers: int, partition_size: int) -> None:
    """One phase of the order stage over `root` (run in its own process by `--stage`)."""
    from datatrove.executor import LocalPipelineExecutor

    from stages.order.stage import OrderPartition, OrderPaths, OrderSettings, OrderStitch

    r = Path(root)
    inputs = {"embed": str(r / "embed"), "neighbors": str(r / "neighbors")}
    settings = OrderSettings(partition_size=partition_size)
    step = {
        "partition": lambda: OrderPartition(str(r / "ids"), inputs, str(r / "partition"), settings, 0),
        "paths": lambda: OrderPaths(str(r / "partition"), inputs, str(r / "paths"), settings, 0),
        "stitch": lambda: OrderStitch(str(r / "partition"), str(r / "paths"), inputs, str(r / "stitch"), settings, 0,
                                      str(r / "neighbors" / "manifest.json")),
    }[phase]()
    # fork: the pool workers are this process's children, so RUSAGE_CHILDREN sees their peaks
    LocalPipelineExecutor([step], tasks=tasks, workers=workers, logging_dir=str(r / f"logs_{phase}"),
                          start_method="fork").run()
    print_peak()


def prepare_stage_inputs(root: str, docs: int, k: int) -> None:
    """Generate the corpus and write it (run in its own process by `--stage`); prints the U2 bound."""
    x, topic = synthetic_corpus(docs, seed=2)
    nbrs, sims = knn_within_topics(x, topic, k)
    write_stage_inputs(Path(root), x, nbrs, sims)
    print("U2", upper_bound_u2(*top2_from_knn(nbrs, sims)))


def stage_scale(args) -> dict:
    """The order stage's phases as separate processes over on-disk inputs: time and memory per phase."""
    import shutil
    import tempfile

    import polars as pl

    from stages.embed.store import load_embeddings

    root = Path(tempfile.mkdtemp(prefix="order_stage_"))
    try:
        t = time.perf_counter()
        stdout, _ = run_fresh("order_scale", f"prepare_stage_inputs({str(root)!r}, {args.docs}, {args.k})")
        u2 = float(stdout.split("U2")[-1].split()[0])
        prep_s = time.perf_counter() - t
        phases = {}
        for phase, tasks in (("partition", 1), ("paths", args.tasks), ("stitch", 1)):
            t = time.perf_counter()
            _, peak = run_fresh("order_scale", f"run_stage_phase({str(root)!r}, {phase!r}, {tasks}, {args.workers}, {args.partition_size})")
            phases[phase] = {"tasks": tasks, "seconds": round(time.perf_counter() - t, 2), "peak_rss_gib": round(peak, 3)}
        ids, x, _ = load_embeddings(str(root / "embed"), mmap=True)
        row_of = {d: i for i, d in enumerate(ids)}
        order = np.array([row_of[i] for i in pl.read_parquet(root / "stitch" / "order.parquet")["id"].to_list()])
        assert is_permutation(order, len(x))
        quality = json.loads((root / "stitch" / "quality.json").read_text())
        mac = mean_adjacent_cosine(x, order)
        total = sum(p["seconds"] for p in phases.values())
        return {
            "documents": len(x), "inputs_written_seconds_untimed": round(prep_s, 1), "phases": phases,
            "seconds_total": round(total, 2), "mac": round(mac, 5), "mac_in_quality_json": round(quality["mac"], 5),
            "bound_ratio_vs_knn_u2": round(mac * (len(x) - 1) / u2, 4), "partitions": quality["partitions"],
            "within_2_minutes": bool(total <= 120),
            "within_4_gib": bool(max(p["peak_rss_gib"] for p in phases.values()) <= 4.0),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--compare-docs", type=int, default=100_000, help="size of the partitioned vs unpartitioned run (0 = skip)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--partition-size", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kicks", type=float, default=20.0, help="local-search kicks per document (stage default 20)")
    ap.add_argument("--max-kicks", type=int, default=10_000, help="kicks cap per partition (stage default 10,000)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--stage", action="store_true", help="run the order stage's phases as datatrove tasks over on-disk inputs")
    ap.add_argument("--tasks", type=int, default=8, help="tasks of the `paths` phase with --stage")
    ap.add_argument("--stitch-only", action="store_true",
                    help="at --docs: order the partitions once and compare the stitch solvers on them (dp, ortools)")
    ap.add_argument("--stitch-time-limit", type=float, default=2.0, help="ortools stitch: guided local search seconds")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.compare_docs = 100_000, 0
    if args.stitch_only:
        args.compare_docs = 0
    out = {"bench": "order_scale", "k": args.k, "partition_size": args.partition_size, "workers": args.workers,
           "kicks_per_document": args.kicks, "max_kicks_per_partition": args.max_kicks}

    if args.stage:
        if args.quick:
            args.docs = 100_000
        out["tasks"] = args.tasks
        out["stage"] = stage_scale(args)
        print(json.dumps(out))
        return

    # warm the compiled kernels outside the timings
    xw, tw = synthetic_corpus(2000, seed=99)
    run_order(xw, *knn_within_topics(xw, tw, 5), 1000, 1, args.kicks, args.max_kicks)

    if args.compare_docs:
        x, topic = synthetic_corpus(args.compare_docs, seed=1)
        nbrs, sims = knn_within_topics(x, topic, args.k)
        whole, t_whole = run_order(x, nbrs, sims, len(x), 1, args.kicks, args.max_kicks)
        parts, t_parts = run_order(x, nbrs, sims, args.partition_size, args.workers, args.kicks, args.max_kicks)
        assert is_permutation(whole, len(x)) and is_permutation(parts, len(x))
        mac_w, mac_p = mean_adjacent_cosine(x, whole), mean_adjacent_cosine(x, parts)
        out["compare"] = {
            "documents": len(x), "mac_unpartitioned": round(mac_w, 5), "mac_partitioned": round(mac_p, 5),
            "partitioned_vs_unpartitioned": round(mac_p / mac_w, 5), "seconds_unpartitioned": round(t_whole, 2),
            "seconds_partitioned": round(t_parts, 2), "within_2pct": bool(mac_p >= 0.98 * mac_w),
        }
        del x, topic, nbrs, sims, whole, parts

    t = time.perf_counter()
    x, topic = synthetic_corpus(args.docs, seed=2)
    nbrs, sims = knn_within_topics(x, topic, args.k)
    prep_s = time.perf_counter() - t
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if args.stitch_only:  # the partition paths once, then every stitch on them (no timed default run)
        kw = {"kicks_per_document": args.kicks, "max_kicks": args.max_kicks}
        t = time.perf_counter()
        paths = order_partitions(ALGORITHMS["edge_matching"], x, nbrs, sims, 0, args.partition_size, args.workers, **kw)
        out["partition_paths_seconds"] = round(time.perf_counter() - t, 2)
        out["stitch"] = compare_stitches(x, paths, args.stitch_time_limit)
        out["documents"] = len(x)
        print(json.dumps(out))
        return
    order, seconds = run_order(x, nbrs, sims, args.partition_size, args.workers, args.kicks, args.max_kicks)
    assert is_permutation(order, len(x))
    s1, s2 = top2_from_knn(nbrs, sims)
    mac = mean_adjacent_cosine(x, order)
    total = mac * (len(x) - 1)
    out["scale"] = {
        "documents": len(x), "order_seconds": round(seconds, 2), "graph_build_seconds_untimed": round(prep_s, 1),
        "mac": round(mac, 5), "bound_ratio_vs_knn_u2": round(total / upper_bound_u2(s1, s2), 4),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_rss_gib_before_ordering": round(rss_before, 3),
        "within_2_minutes": bool(seconds <= 120),
    }
    out["scale"]["within_4_gib"] = bool(out["scale"]["peak_rss_gib"] <= 4.0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
