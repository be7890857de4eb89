"""kNN graph benchmark: the `neighbors` stage's default builder (the self-join, `method: join`) run as
its datatrove phases, against today's FAISS IVF search at equal or better recall, timed in the same
run, on clustered synthetic 384-d float16 vectors with k = 20.

Per corpus size (each phase in a fresh process, so its peak memory is its own):
- the join: `quantize` (1 task: k-means, probe tuning, vectors by list), `search` (`--tasks` tasks on
  `--workers` workers) and `finalize` (1 task); `join_s` is the three phases' wall time, the coarse
  quantiser and interpreter starts included; peak resident memory per phase is its largest task's;
- `recall_at_10`: the graph's first 10 neighbours against exact top-10 (FAISS brute force, not the
  stage's code) on `--sample` seeded rows;
- the IVF reference (`--skip-ivf` leaves it out): `IVF{lists},Flat` as `method: ivf` builds it for this
  size, nprobe raised until its recall@10 on the same rows reaches the join's, then `--ivf-queries`
  rows searched and the time extrapolated to every row; `speedup_vs_ivf` = (IVF build + search of all
  rows) / `join_s`;
- `--cluster-rows 1000`: the corpus has one sub-topic per 1,000 rows, 20 per topic (the default corpus
  at 1M), so a larger corpus has more topics rather than denser ones (by default 50 topics of 20
  sub-topics at every size);
- `--order`: then the `order` stage's phases (partition, paths in `--tasks` tasks, stitch) over the
  written graph and vectors: time and peak memory per phase, MAC (bench/order_scale.py's runner).
`--device gpu` runs the blocks, k-means and exact sample on the GPU (torch CUDA, faiss-gpu) and
reports `gpu_mem_peak_gb` (torch's peak allocation over the phases).

    python bench/knn.py --sizes 1000000                          # the issue's target run
    python bench/knn.py --sizes 1000000,2000000 --order          # graph and order at 1M and 2M
    python bench/knn.py --sizes 1000000,2000000 --skip-ivf --cluster-rows 1000   # scaling with topics
    python bench/knn.py --sizes 1000000,10000000 --device gpu --skip-ivf   # what bench/gpu_check.sh runs
    python bench/knn.py --quick                                  # 100,000 rows
    python bench/knn.py --sizes 200000 --index-shards 2          # also the sharded IVF build (method: ivf)
Prints one JSON line. The machine may be shared: read times as ratios within one run (the line
carries the load average at start and end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

K = 20
RECALL_AT = 10
DIM = 384
GPU_MARK = "GPU_PEAK_GB"


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


def run_join_phase(embed_dir: str, graph_dir: str, phase: str, tasks: int, workers: int, device: str) -> None:
    """One phase of the join build as datatrove tasks (run in its own process); prints its peaks."""
    from datatrove.executor import LocalPipelineExecutor

    from _fresh import print_peak
    from stages.neighbors.stage import NeighborsJoin, NeighborsJoinFinalize, NeighborsQuantize, NeighborsSettings

    settings = NeighborsSettings(k=K, device=device, tasks=tasks)
    step = {"quantize": lambda: NeighborsQuantize(embed_dir, graph_dir, settings, 0),
            "search": lambda: NeighborsJoin(graph_dir, settings, min(workers, tasks)),
            "finalize": lambda: NeighborsJoinFinalize(embed_dir, graph_dir, settings, 0)}[phase]()
    LocalPipelineExecutor([step], tasks=tasks, workers=min(workers, tasks), start_method="fork",
                          logging_dir=os.path.join(graph_dir, "..", f"logs_{phase}")).run()
    if device == "gpu":
        import torch

        if torch.cuda.is_available():  # with workers=1 every task ran in this process
            print(GPU_MARK, torch.cuda.max_memory_allocated() / 2**30, flush=True)
    print_peak()


def independent_exact(x, rows, k: int, device: str):
    """Exact top-k (self excluded) of x[rows] with FAISS brute force, streamed over the corpus."""
    import faiss
    import numpy as np

    xq = np.ascontiguousarray(x[rows], dtype=np.float32)
    heap = faiss.ResultHeap(len(rows), k + 1, keep_max=True)
    res = faiss.StandardGpuResources() if device == "gpu" and hasattr(faiss, "StandardGpuResources") \
        and faiss.get_num_gpus() > 0 else None
    for lo in range(0, len(x), 262_144):
        xb = np.ascontiguousarray(x[lo : lo + 262_144], dtype=np.float32)
        if res is not None:
            D, I = faiss.knn_gpu(res, xq, xb, min(k + 1, len(xb)), metric=faiss.METRIC_INNER_PRODUCT)
        else:
            D, I = faiss.knn(xq, xb, min(k + 1, len(xb)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(np.ascontiguousarray(D), np.ascontiguousarray(np.where(I >= 0, I + lo, -1)))
    heap.finalize()
    return np.array([i[i != r][:k] for r, i in zip(rows, heap.I)])


def recall(approx, exact) -> float:
    return sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)) / exact.size


def ivf_reference(embed_dir: str, rows_path: str, exact_path: str, goal: float, queries: int, out_path: str) -> None:
    """Today's FAISS IVF search (`method: ivf`, as it chooses the index for this size) at recall@10 >=
    `goal` on the sample: build time, tuned nprobe and the search time of all rows extrapolated from
    `queries` rows (run in its own process)."""
    import numpy as np

    from _fresh import print_peak
    from stages.embed.store import load_embeddings
    from stages.neighbors import index as knn

    _, x, _ = load_embeddings(embed_dir, mmap=True, check=False)
    n = len(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, exact = np.load(rows_path), np.load(exact_path)
    key = f"IVF{knn.ivf_lists_for(n)},Flat"
    t = time.perf_counter()
    index = knn.build_index(x, key, "cpu", 0, 40)
    build_s = time.perf_counter() - t
    trace, nprobe = [], 8
    while True:
        knn.set_search_parameter(index, "nprobe", nprobe)
        _, got = knn.search_rows(index, x, rows, K)
        r = recall(got[:, :RECALL_AT], exact)
        trace.append([nprobe, round(r, 4)])
        if r >= goal or nprobe >= knn.ivf_list_count(index):
            break
        nprobe = min(knn.ivf_list_count(index), int(round(nprobe * 1.5)))
    timed = np.sort(np.random.default_rng(7).choice(n, size=min(n, queries), replace=False))
    t = time.perf_counter()
    knn.search_rows(index, x, timed, K)
    search_sample_s = time.perf_counter() - t
    search_all_s = search_sample_s * n / len(timed)
    with open(out_path, "w") as f:
        json.dump({"index": key, "nprobe": nprobe, "recall_at_10": round(r, 4), "nprobe_trace": trace,
                   "build_s": round(build_s, 1), "queries_timed": len(timed), "search_sample_s": round(search_sample_s, 2),
                   "search_all_rows_est_s": round(search_all_s, 1), "total_est_s": round(build_s + search_all_s, 1)}, f)
    print_peak()


def write_order_ids(root: str) -> None:
    """The `ids` phase output the order stage reads: every document kept (run in its own process)."""
    import polars as pl

    os.makedirs(os.path.join(root, "ids"), exist_ok=True)
    pl.read_parquet(os.path.join(root, "neighbors", "ids.parquet"), columns=["id"]).write_parquet(
        os.path.join(root, "ids", "00000.parquet"))


def one_size(n: int, args) -> dict:
    import numpy as np

    from _fresh import LAST_CPU_S, run_fresh
    from stages.embed.store import load_embeddings
    from stages.neighbors.store import KnnTable, read_manifest

    root = tempfile.mkdtemp(prefix="bench_knn_", dir=args.tmp)
    try:
        embed_dir, graph_dir = os.path.join(root, "embed"), os.path.join(root, "neighbors")
        run_fresh("knn", f"write_embed_dir({embed_dir!r}, {n}, {args.cluster_rows})")
        phases, gpu_peak = {}, 0.0
        # one GPU: its tasks run one after another in the phase's own process, which reads torch's peak
        workers = 1 if args.device == "gpu" else args.workers
        for phase, tasks in (("quantize", 1), ("search", args.tasks), ("finalize", 1)):
            t = time.perf_counter()
            out, peak = run_fresh("knn", f"run_join_phase({embed_dir!r}, {graph_dir!r}, {phase!r}, {tasks}, "
                                         f"{workers}, {args.device!r})")
            phases[phase] = {"tasks": tasks, "seconds": round(time.perf_counter() - t, 1), "cpu_s": round(LAST_CPU_S[0], 1),
                             "peak_rss_gb": round(peak, 3)}
            if GPU_MARK in out:
                gpu_peak = max(gpu_peak, float(out.split(GPU_MARK)[-1].split()[0]))
        join_s = sum(p["seconds"] for p in phases.values())
        join_cpu_s = sum(p["cpu_s"] for p in phases.values())
        manifest = read_manifest(graph_dir)
        _, x, _ = load_embeddings(embed_dir, mmap=True, check=False)
        rows = np.sort(np.random.default_rng(123).choice(n, size=min(n, args.sample), replace=False))
        exact = independent_exact(x, rows, RECALL_AT, args.device)
        got = KnnTable(graph_dir).rows(rows)[0][:, :RECALL_AT]
        r = recall(got, exact)
        result = {
            "n": n, "recall_at_10": round(r, 4), "stated_recall_at_20": round(manifest["recall_at_k"], 4),
            "join_s": round(join_s, 1), "join_cpu_s": round(join_cpu_s, 1), "phases": phases,
            "peak_rss_gb_largest_task": max(p["peak_rss_gb"] for p in phases.values()),
            "lists": manifest["lists"], "probes": manifest["probes"], "extra_lists": manifest.get("extra_lists", 0),
            "extra_pairs": manifest.get("extra_pairs", 0), "precision": manifest["precision"],
            "device": manifest["device"], "comparisons_share": round(manifest["comparisons_share"], 5),
        }
        if args.device == "gpu":
            result["gpu_mem_peak_gb"] = round(gpu_peak, 2)
        if not args.skip_ivf and n <= args.ivf_max_size:
            np.save(os.path.join(root, "rows.npy"), rows)
            np.save(os.path.join(root, "exact.npy"), exact)
            ivf_out = os.path.join(root, "ivf.json")
            _, peak = run_fresh("knn", f"ivf_reference({embed_dir!r}, {os.path.join(root, 'rows.npy')!r}, "
                                       f"{os.path.join(root, 'exact.npy')!r}, {r!r}, {args.ivf_queries}, {ivf_out!r})")
            with open(ivf_out) as f:
                ivf = json.load(f)
            ivf["peak_rss_gb"] = round(peak, 2)
            result["ivf"] = ivf
            result["speedup_vs_ivf"] = round(ivf["total_est_s"] / join_s, 2)
            result["ivf_recall_at_least_join"] = ivf["recall_at_10"] >= r
        if args.order:
            from order_scale import run_stage_phase  # noqa: F401  (checked importable before the run)

            run_fresh("knn", f"write_order_ids({root!r})")
            order = {}
            for phase, tasks in (("partition", 1), ("paths", args.tasks), ("stitch", 1)):
                t = time.perf_counter()
                _, peak = run_fresh("order_scale", f"run_stage_phase({root!r}, {phase!r}, {tasks}, {args.workers}, 50000)")
                order[phase] = {"tasks": tasks, "seconds": round(time.perf_counter() - t, 1), "cpu_s": round(LAST_CPU_S[0], 1),
                                "peak_rss_gb": round(peak, 3)}
            with open(os.path.join(root, "stitch", "quality.json")) as f:
                quality = json.load(f)
            result["order"] = {"phases": order, "seconds": round(sum(p["seconds"] for p in order.values()), 1),
                               "peak_rss_gb_largest_task": max(p["peak_rss_gb"] for p in order.values()),
                               "mac": round(quality["mac"], 5), "bound_ratio": quality.get("bound_ratio")}
            result["graph_and_order_s"] = round(join_s + result["order"]["seconds"], 1)
        result["targets"] = {"recall_at_10_ge_0.95": r >= 0.95, "largest_task_le_1.5gb": result["peak_rss_gb_largest_task"] <= 1.5}
        if "speedup_vs_ivf" in result:
            result["targets"]["speedup_vs_ivf_ge_10"] = result["speedup_vs_ivf"] >= 10
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_embed_dir(embed_dir: str, n: int, cluster_rows: int = 0) -> None:
    """The corpus in the embed stage's on-disk format (run in its own process). `cluster_rows` > 0:
    the topics grow with the corpus (n / cluster_rows sub-topics, 20 per topic: 50 topics at 1M with
    1000, the default corpus), so every topic and sub-topic keeps its density; 0: always 50 topics of
    20 sub-topics, so a larger corpus is denser in each. (Growing only the sub-topics inside 50 fixed
    topics would make the topics denser: measured, probes 18 -> 35 at 2M.)"""
    from stages.embed.store import write_shard

    x = clustered_vectors(n, topics=max(1, round(n / (20 * cluster_rows))) if cluster_rows else 50)
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
        _, exact = flat.search(np.ascontiguousarray(x[rows], dtype=np.float32), RECALL_AT + 1)
        got = KnnTable(graph_dir).rows(rows)[0][:, :RECALL_AT]
        hits = sum(len(set(e[e != r][:RECALL_AT].tolist()) & set(a.tolist())) for r, e, a in zip(rows, exact, got))
        return {
            "n": n, "index_shards": shards, "shard_index": manifest["index"],
            "search_parameter": [f'{s.get("search_parameter")}={s.get("search_parameter_value")}' for s in manifest["shards"]],
            "recall_at_10": round(hits / (RECALL_AT * len(rows)), 4), "stated_recall_at_20": round(manifest["recall_at_k"], 4),
            "phases": phases, "seconds_total": round(sum(p["seconds"] for p in phases.values()), 1),
            "peak_rss_gb_largest_task": max(p["peak_rss_gb"] for p in phases.values()),
        }




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 vectors")
    ap.add_argument("--sizes", default="", help="corpus sizes, comma-separated (default 1000000)")
    ap.add_argument("--sample", type=int, default=1000, help="rows checked against exact search")
    ap.add_argument("--tasks", type=int, default=8, help="tasks of the join's search phase (and the order's paths)")
    ap.add_argument("--workers", type=int, default=2, help="tasks at once")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the join's blocks run")
    ap.add_argument("--skip-ivf", action="store_true", help="no IVF reference")
    ap.add_argument("--ivf-max-size", type=int, default=1_000_000, help="IVF reference only up to this size")
    ap.add_argument("--ivf-queries", type=int, default=5000, help="IVF queries timed (extrapolated to every row)")
    ap.add_argument("--order", action="store_true", help="also run the order stage's phases over the graph")
    ap.add_argument("--index-shards", type=int, default=0, help="also the sharded IVF build with this many database shards")
    ap.add_argument("--cluster-rows", type=int, default=0,
                    help="topics grow with the corpus: one sub-topic per this many rows, 20 per topic (0: 50 topics at every size)")
    ap.add_argument("--tmp", default=None, help="folder for the corpus and graph (default: the system's temporary folder)")
    args = ap.parse_args()
    import faiss
    import torch

    sizes = [int(v) for v in args.sizes.replace(" ", ",").split(",") if v] or ([100_000] if args.quick else [1_000_000])
    load_start = os.getloadavg()
    results = []
    for n in sizes:
        results.append(one_size(n, args))
        if args.index_shards > 1:
            results[-1]["sharded_ivf"] = sharded(n, args.index_shards, args.workers, min(args.sample, n))
    out = {"bench": "knn", "k": K, "dim": DIM, "cpus": os.cpu_count(), "tasks": args.tasks, "workers": args.workers,
           "cluster_rows": args.cluster_rows,
           "device": args.device, "faiss": faiss.__version__, "torch": torch.__version__,
           "faiss_gpus": faiss.get_num_gpus(), "load_avg_start": [round(v, 1) for v in load_start],
           "load_avg_end": [round(v, 1) for v in os.getloadavg()], "results": results}
    if len(results) >= 2:
        out["time_ratio_last_to_first"] = round(results[-1]["join_s"] / results[0]["join_s"], 3)
        out["cpu_ratio_last_to_first"] = round(results[-1]["join_cpu_s"] / results[0]["join_cpu_s"], 3)
        out["size_ratio_last_to_first"] = round(results[-1]["n"] / results[0]["n"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
