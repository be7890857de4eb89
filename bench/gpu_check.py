"""Python steps of `bench/gpu_check.sh` (one JSON line each, printed to stdout).

    python bench/gpu_check.py env
    python bench/gpu_check.py embed  [--docs 50000] [--cpu-smoke]
    python bench/gpu_check.py kmeans [--rows 1000000] [--cpu-smoke]
    python bench/gpu_check.py tiny-corpus FOLDER      (writes a 60-document jsonl.gz for the smoke recipe run)

Every step uses the project's own code paths (`load_model` / `encode_texts`, semdedup's
`kmeans_clusters`, the order stage's `assign_partitions`), so "gpu" in a line means those paths took
the GPU, and "cpu" that they fell back as they do when torch / faiss see no GPU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DATA = os.environ.get("CURATE_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
CORPORA = ("bbc_news", "ag_news_test", "mini_newsgroups", "web_pages")


def real_texts(n: int) -> list[str]:
    """`n` real texts from the shared corpora, repeated in turn when they hold fewer."""
    pool: list[str] = []
    for name in CORPORA:
        path = os.path.join(DATA, f"{name}.jsonl.gz")
        if os.path.exists(path):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                pool.extend(json.loads(line)["text"] for line in f)
    if not pool:
        raise SystemExit(f"no corpora under {DATA} (set CURATE_SHARED_DATA)")
    return [pool[i % len(pool)] for i in range(n)]


def gpu_memory_gb() -> float | None:
    try:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    except Exception:
        return None


def step_env(_args) -> dict:
    import faiss
    import torch

    return {"torch": torch.__version__, "torch_cuda": torch.cuda.is_available(),
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "faiss": faiss.__version__, "faiss_gpus": faiss.get_num_gpus(),
            "faiss_gpu_api": hasattr(faiss, "StandardGpuResources")}


def step_embed(args) -> dict:
    import numpy as np
    import torch

    from stages.embed.encoder import choose_torch_device, encode_texts, load_model

    n = 64 if args.cpu_smoke else args.docs
    device = "cpu" if args.cpu_smoke else choose_torch_device("auto")
    texts = real_texts(n)
    t = time.perf_counter()
    model = load_model(device=device, half_on_gpu=True)
    load_s = time.perf_counter() - t
    encode_texts(model, texts[:256], args.batch_size)  # warm-up: CUDA kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    vecs = encode_texts(model, texts, args.batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    return {"device": device, "dtype": "float16" if device.startswith("cuda") else "float32", "documents": n,
            "batch_size": args.batch_size, "max_tokens": int(model.max_seq_length), "load_s": round(load_s, 1),
            "encode_s": round(sec, 2), "docs_per_s": round(n / sec, 1), "finite": bool(np.isfinite(vecs).all()),
            "gpu_peak_gb": gpu_memory_gb()}


def clustered_vectors(n: int, d: int = 384, centres: int = 2000, seed: int = 0):
    """Unit vectors around random centres (k-means has structure to find), made in blocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 1 << 18):
        hi = min(n, lo + (1 << 18))
        x[lo:hi] = c[rng.integers(0, centres, hi - lo)] + 0.5 * rng.standard_normal((hi - lo, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def step_kmeans(args) -> dict:
    import numpy as np

    from stages.dedup.semantic import kmeans_clusters
    from stages.neighbors.index import select_faiss_device
    from stages.order.partition import assign_partitions

    n = 5000 if args.cpu_smoke else args.rows
    device = select_faiss_device()
    x = clustered_vectors(n)
    clusters = max(2, min(1000, n // 50))  # semdedup's default cluster count
    t = time.perf_counter()
    assign, _ = kmeans_clusters(x, clusters, seed=0, iterations=20, gpu=device == "gpu")
    semdedup_s = time.perf_counter() - t
    size = max(100, n // 20)  # ~20 order partitions
    t = time.perf_counter()
    parts = assign_partitions(x, size, seed=0)  # gpu=None: the order stage's own choice
    partition_s = time.perf_counter() - t
    return {"faiss_device": device, "rows": n, "dim": int(x.shape[1]),
            "semdedup_kmeans": {"clusters": clusters, "iterations": 20, "seconds": round(semdedup_s, 2),
                                "nonempty_clusters": len(np.unique(assign))},
            "order_partition_kmeans": {"partition_size": size, "partitions": int(parts.max()) + 1,
                                       "seconds": round(partition_s, 2)}}


def step_tiny_corpus(args) -> dict:
    os.makedirs(args.folder, exist_ok=True)
    path = os.path.join(args.folder, "bbc_60.jsonl.gz")
    with gzip.open(os.path.join(DATA, "bbc_news.jsonl.gz"), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][::37][:60]  # every topic
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return {"path": path, "documents": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["env", "embed", "kmeans", "tiny-corpus"])
    ap.add_argument("folder", nargs="?", default="")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes, CPU")
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    fn = {"env": step_env, "embed": step_embed, "kmeans": step_kmeans, "tiny-corpus": step_tiny_corpus}[args.step]
    t = time.perf_counter()
    out = fn(args)
    print(json.dumps({"step": args.step, "ok": True, "seconds": round(time.perf_counter() - t, 1), **out}))


if __name__ == "__main__":
    main()
