"""`method: ivf`, one task (`index_shards: 1`): today's FAISS index search over the whole corpus.

`build_knn_graph` loads every embed shard, chooses and builds the index (exact `Flat` up to
`flat_max_rows`, else IVF sized to memory, or the recipe's factory string; GPU when faiss has one),
tunes nprobe/efSearch on a seeded query sample against exact search, searches every row and writes
the graph (`store.py` format). FAISS spreads the work over the machine's cores or the GPU. The task
holds the corpus as float32 plus its index: 3.78 GB measured at 1M x 384 (IVF2048,Flat), and per-query
IVF scanning runs at memory bandwidth, so it is the slow path at scale (see `join.py`, the default).
"""

from __future__ import annotations

import os
import time


def build_knn_graph(embed_dir: str, output_dir: str, s: NeighborsSettings, seed: int = 0) -> dict:
    """Everything the `search` phase does, callable without datatrove. Returns the manifest plus
    timings (which stay out of the manifest file)."""
    import faiss
    import numpy as np
    import polars as pl

    from curate.atomic import write_json_atomic, write_parquet_atomic
    from stages.embed.store import load_embeddings, read_manifest as read_embed_manifest
    from stages.neighbors import index as knn
    from stages.neighbors.store import IDS, MANIFEST, write_knn_shard

    if s.threads:
        faiss.omp_set_num_threads(s.threads)
    t0 = time.perf_counter()
    ids, vectors, labels = load_embeddings(embed_dir)
    n, d = vectors.shape
    table = {"id": pl.Series("id", ids, dtype=pl.String)}
    if labels is not None:
        table["label"] = pl.Series("label", labels, dtype=pl.String)
    write_parquet_atomic(pl.DataFrame(table), os.path.join(output_dir, IDS))

    k = s.k
    gpu_ok = knn.select_faiss_device(index_key=s.index if s.index != "auto" else "Flat") == "gpu"
    on_gpu = s.device == "gpu" or (s.device == "auto" and gpu_ok)
    flat_max = s.flat_max_rows or (2_000_000 if on_gpu else 50_000)
    memory = s.memory_gb * 2**30 if s.memory_gb else knn.available_memory_bytes() / 2
    key = s.index if s.index != "auto" else knn.choose_index_key(n, d, memory, flat_max)
    device = "gpu" if on_gpu and knn.select_faiss_device(index_key=key) == "gpu" else "cpu"
    rerank = s.rerank or knn.default_rerank(key)

    t_build = time.perf_counter()
    index = knn.build_index(vectors, key, device, seed, s.train_per_list or 40) if n else None
    build_s = time.perf_counter() - t_build

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, s.recall_sample), replace=False)) if n else np.zeros(0, np.int64)
    t_exact = time.perf_counter()
    _, exact_I = knn.exact_knn(vectors, sample, k, device) if n else (None, np.zeros((0, k), np.int64))
    exact_s = time.perf_counter() - t_exact
    fixed = s.nprobe if knn.search_parameter(index) == "nprobe" else s.ef_search
    tuning = knn.tune_search(index, vectors, sample, exact_I, k, s.target_recall, fixed, device, rerank=rerank,
                        margin=s.recall_margin) \
        if n else knn.TuningResult(None, None, 1.0)

    nlist = knn.ivf_list_count(index) if n else None
    fell_back = (
        s.index == "auto" and tuning.parameter == "nprobe" and nlist is not None
        and tuning.value > s.max_probe_fraction * nlist
        and n * (4 * d + 2 * d) <= memory
    )
    if fell_back:
        del index
        key, rerank = "Flat", 1
        index = knn.build_index(vectors, key, device, seed)
        tuning = knn.TuningResult(None, None, 1.0, tuning.trace)

    t_search = time.perf_counter()
    sample_I = np.zeros((len(sample), k), np.int64)
    for shard, start in enumerate(range(0, max(n, 1), s.rows_per_shard)):
        rows = np.arange(start, min(n, start + s.rows_per_shard))
        D, I = knn.search_rows(index, vectors, rows, k, rerank) if len(rows) else (
            np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
        in_shard = (sample >= start) & (sample < start + len(rows))
        sample_I[in_shard] = I[sample[in_shard] - start]
        write_knn_shard(output_dir, shard, start, I, D.astype(np.float16))
    search_s = time.perf_counter() - t_search
    # The stated recall is that of the rows as written, not of the tuning pass.
    recall = knn.recall_at_k(sample_I, exact_I)
    manifest = {
        "n": int(n), "k": k, "dim": int(d), "metric": "ip", "method": "ivf", "index": key, "device": device,
        "recall_at_k": float(recall), "recall_sample_size": int(len(sample)),
        "recall_sample_rows": sample.tolist(), "search_parameter": tuning.parameter,
        "search_parameter_value": tuning.value, "tuning_trace": tuning.trace, "rerank": rerank,
        "target_recall": s.target_recall, "seed": seed, "fell_back_to_exact": bool(fell_back),
        "embedding_model": read_embed_manifest(embed_dir).get("model"),
    }
    write_json_atomic(manifest, os.path.join(output_dir, MANIFEST))
    # Timings go to the stats only, so the manifest is byte-identical across reruns.
    timings = {"build_s": round(build_s, 3), "exact_sample_s": round(exact_s, 3), "search_s": round(search_s, 3),
               "total_s": round(time.perf_counter() - t0, 3)}
    return {**manifest, **timings}
