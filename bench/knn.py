"""kNN graph benchmark: the `neighbors` stage (automatic index choice, tuned to recall@10 >= 0.95)
against exact FAISS IndexFlatIP, on clustered synthetic 384-d vectors.

For each corpus size it runs the stage's own function (`build_knn_graph`: load shards, build, tune,
search every row, write the graph) in a fresh process (so peak memory is that size's own), then
computes recall@10 of the written graph on a query sample with a plain `faiss.IndexFlatIP` (not the
stage's code), and times that exact search to extrapolate what exact all-pairs search would cost.

    python bench/knn.py            # 100,000 and 1,000,000 vectors
    python bench/knn.py --quick    # 20,000 and 100,000
    python bench/knn.py --sizes 200000 --index-shards 4
        # also the sharded build (4 database-shard search tasks, merge, finalize as datatrove tasks,
        # each phase in its own process): time, recall and peak memory per phase beside the one-task run
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

K = 10
DIM = 384


def clustered_vectors(n: int, d: int = DIM, topics: int = 50, subtopics: int = 20, seed: int = 0):
    """Unit vectors shaped like sentence embeddings of a topical corpus: 50 topics of 20 sub-topics
    (centres = topic + noise, so neighbouring clusters overlap), points spread around their
    sub-topic centre along 16 directions of their own plus a little isotropic noise. Nearest-neighbour
    cosine ~0.8-0.9 and random pairs ~0, close to all-MiniLM-L6-v2 on news text."""
    import numpy as np

    rng = np.random.default_rng(seed)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    topic = unit(rng.standard_normal((topics, d), dtype=np.float32))
    centres = unit(np.repeat(topic, subtopics, 0) + 0.8 * unit(rng.standard_normal((topics * subtopics, d), dtype=np.float32)))
    spread = rng.standard_normal((topics * subtopics, 16, d), dtype=np.float32) / np.sqrt(d)
    cluster = rng.integers(0, topics * subtopics, n)
    out = np.empty((n, d), dtype=np.float16)
    for j in range(topics * subtopics):  # per cluster: one small matmul instead of a huge gather
        rows = np.flatnonzero(cluster == j)
        z = rng.standard_normal((len(rows), 16), dtype=np.float32) * (0.15 * np.sqrt(d / 16))
        x = centres[j] + z @ spread[j] + (0.2 / np.sqrt(d)) * rng.standard_normal((len(rows), d), dtype=np.float32)
        out[rows] = unit(x)
    return out


def _run_size(n: int, sample: int, queue) -> None:
    import faiss
    import numpy as np

    from stages.embed.store import write_shard
    from stages.neighbors.stage import NeighborsSettings, build_knn_graph
    from stages.neighbors.store import load_knn_graph

    x = clustered_vectors(n)
    with tempfile.TemporaryDirectory() as tmp:
        embed_dir = os.path.join(tmp, "embed")
        for rank, start in enumerate(range(0, n, 250_000)):
            part = x[start : start + 250_000]
            write_shard(embed_dir, rank, part, [str(i) for i in range(start, start + len(part))], None,
                        {"model": "synthetic", "dim": DIM, "dtype": "float16", "normalized": True})
        t = time.perf_counter()
        manifest = build_knn_graph(embed_dir, os.path.join(tmp, "graph"), NeighborsSettings(k=K), seed=0)
        stage_s = time.perf_counter() - t
        graph = load_knn_graph(os.path.join(tmp, "graph"))
    # Independent check: exact IndexFlatIP over the whole corpus for a query sample of our own.
    rows = np.sort(np.random.default_rng(123).choice(n, size=sample, replace=False))
    flat = faiss.IndexFlatIP(DIM)
    for s in range(0, n, 100_000):
        flat.add(np.ascontiguousarray(x[s : s + 100_000], dtype=np.float32))
    t = time.perf_counter()
    _, exact = flat.search(np.ascontiguousarray(x[rows], dtype=np.float32), K + 1)
    exact_s = time.perf_counter() - t
    hits = 0
    for r, e, a in zip(rows, exact, graph.neighbors[rows]):
        e = e[e != r][:K]
        hits += len(set(e.tolist()) & set(a.tolist()))
    recall = hits / (K * len(rows))
    exact_full_s = exact_s * n / sample
    queue.put({
        "n": n, "index": manifest["index"], "device": manifest["device"],
        "search_parameter": f'{manifest["search_parameter"]}={manifest["search_parameter_value"]}',
        "recall_at_10": round(recall, 4), "stated_recall_at_10": round(manifest["recall_at_k"], 4),
        "stage_s": round(stage_s, 1), "build_s": manifest["build_s"], "search_s": manifest["search_s"],
        "exact_flat_sample_s": round(exact_s, 2), "exact_flat_all_rows_est_s": round(exact_full_s, 1),
        "speedup_vs_exact": round(exact_full_s / manifest["search_s"], 2) if manifest["search_s"] else None,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "target_met": recall >= 0.95,
    })


def write_embed_dir(embed_dir: str, n: int) -> None:
    """The corpus in the embed stage's on-disk format (run in its own process by the sharded mode)."""
    from stages.embed.store import write_shard

    x = clustered_vectors(n)
    for rank, start in enumerate(range(0, n, 250_000)):
        part = x[start : start + 250_000]
        write_shard(embed_dir, rank, part, [str(i) for i in range(start, start + len(part))], None,
                    {"model": "synthetic", "dim": DIM, "dtype": "float16", "normalized": True})


def run_sharded_phase(embed_dir: str, graph_dir: str, phase: str, shards: int, tasks: int, workers: int) -> None:
    """One phase of the sharded `neighbors` build, as datatrove tasks (run in its own process)."""
    from datatrove.executor import LocalPipelineExecutor

    from _fresh import print_peak
    from stages.neighbors.stage import NeighborsFinalize, NeighborsMerge, NeighborsSettings, NeighborsShardSearch

    settings = NeighborsSettings(k=K, index_shards=shards, threads=max(1, (os.cpu_count() or 1) // workers))
    step = {"search": lambda: NeighborsShardSearch(embed_dir, graph_dir, settings, 0),
            "merge": lambda: NeighborsMerge(embed_dir, graph_dir, settings),
            "finalize": lambda: NeighborsFinalize(embed_dir, graph_dir, settings, 0)}[phase]()
    LocalPipelineExecutor([step], tasks=tasks, workers=min(workers, tasks), start_method="fork",
                          logging_dir=os.path.join(graph_dir, "..", f"logs_{phase}")).run()
    print_peak()


def sharded(n: int, shards: int, workers: int, sample: int) -> dict:
    """The sharded build of an n-row corpus: per-phase time and peak memory, and recall checked here."""
    import faiss
    import numpy as np

    from _fresh import run_fresh
    from stages.neighbors.store import KnnTable, read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        embed_dir, graph_dir = os.path.join(tmp, "embed"), os.path.join(tmp, "graph")
        run_fresh("knn", f"write_embed_dir({embed_dir!r}, {n})")
        phases = {}
        for phase, tasks in (("search", shards), ("merge", workers), ("finalize", 1)):
            t = time.perf_counter()
            _, peak = run_fresh("knn", f"run_sharded_phase({embed_dir!r}, {graph_dir!r}, {phase!r}, {shards}, {tasks}, {workers})")
            phases[phase] = {"tasks": tasks, "seconds": round(time.perf_counter() - t, 1), "peak_rss_gb": round(peak, 2)}
        manifest = read_manifest(graph_dir)
        from stages.embed.store import load_embeddings

        _, x, _ = load_embeddings(embed_dir, mmap=True)
        rows = np.sort(np.random.default_rng(123).choice(n, size=sample, replace=False))
        flat = faiss.IndexFlatIP(DIM)
        for s in range(0, n, 100_000):
            flat.add(np.ascontiguousarray(x[s : s + 100_000], dtype=np.float32))
        _, exact = flat.search(np.ascontiguousarray(x[rows], dtype=np.float32), K + 1)
        got = KnnTable(graph_dir).rows(rows)[0]
        hits = sum(len(set(e[e != r][:K].tolist()) & set(a.tolist())) for r, e, a in zip(rows, exact, got))
        return {
            "n": n, "index_shards": shards, "shard_index": manifest["index"],
            "search_parameter": [f'{s.get("search_parameter")}={s.get("search_parameter_value")}' for s in manifest["shards"]],
            "recall_at_10": round(hits / (K * len(rows)), 4), "stated_recall_at_10": round(manifest["recall_at_k"], 4),
            "phases": phases, "seconds_total": round(sum(p["seconds"] for p in phases.values()), 1),
            "peak_rss_gb_largest_task": max(p["peak_rss_gb"] for p in phases.values()),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 and 100,000 vectors")
    ap.add_argument("--sizes", type=int, nargs="*", help="corpus sizes (overrides the defaults)")
    ap.add_argument("--sample", type=int, default=1000, help="queries checked against exact search")
    ap.add_argument("--index-shards", type=int, default=0, help="also run the sharded build with this many database shards")
    ap.add_argument("--workers", type=int, default=2, help="tasks at once in the sharded build")
    args = ap.parse_args()
    import faiss

    sizes = args.sizes or ([20_000, 100_000] if args.quick else [100_000, 1_000_000])
    ctx = mp.get_context("spawn")
    results = []
    for n in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_size, args=(n, min(args.sample, n), queue))
        proc.start()
        results.append(queue.get())
        proc.join()
        if args.index_shards > 1:
            one = results[-1]
            results[-1] = {"one_task": one, "sharded": sharded(n, args.index_shards, args.workers, min(args.sample, n))}
            sh = results[-1]["sharded"]
            results[-1]["sharded_vs_one_task"] = {
                "time_ratio": round(sh["seconds_total"] / one["stage_s"], 2),
                "peak_memory_ratio": round(sh["peak_rss_gb_largest_task"] / one["peak_rss_gb"], 2),
                "recall_difference": round(sh["recall_at_10"] - one["recall_at_10"], 4),
            }
    print(json.dumps({"bench": "knn", "k": K, "dim": DIM, "cpus": os.cpu_count(), "faiss": faiss.__version__,
                      "faiss_gpus": faiss.get_num_gpus(), "results": results}))


if __name__ == "__main__":
    main()
