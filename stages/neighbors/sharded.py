"""The kNN graph built by many tasks, none of which holds the whole corpus (`index_shards` > 1).

The corpus rows are split into S contiguous database shards. Three phases:
1. `search` (S tasks, each with `gpus` GPUs on a cluster): task j indexes shard j only (Flat or IVF chosen and tuned for the shard's
   size, as the one-task path does for the corpus), then streams *every* row of the corpus through
   it as a query and writes its top-k per row (global row numbers) to `partial/`. Memory: the shard
   and its index, plus one query block.
2. `merge` (`tasks` tasks): each owns some output shards (`rows_per_shard` rows each) and keeps, per
   row, the best k of the S partial lists. Memory: rows_per_shard x S x k candidates.
3. `finalize` (1 task): ids, the recall of the merged graph on a seeded sample against exact search
   (streamed over the corpus in blocks), the manifest; then the partial lists are deleted.
The graph lands in the `search` phase's data folder, in the one-task path's format
(`stages/neighbors/store.py`), so its readers do not know how it was built. Per-row top-k over the
union of the shards' exact top-k is the exact top-k, so Flat shards give the exact graph.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

PARTIAL = "partial"
QUERY_BLOCK = 65536


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) of each database shard; sizes differ by at most one row."""
    edges = np.linspace(0, n, shards + 1).round().astype(np.int64)
    return [(int(edges[j]), int(edges[j + 1])) for j in range(shards)]


def _partial_paths(data_dir: str, shard: int) -> tuple[str, str, str]:
    base = os.path.join(data_dir, PARTIAL, f"shard_{shard:05d}")
    return base + ".sims.npy", base + ".rows.npy", base + ".json"


def search_shard_block(index, xb: np.ndarray, lo: int, xq: np.ndarray, q_rows: np.ndarray, k: int,
                       rerank: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the queries `xq` (global rows `q_rows`) among database rows lo.., self excluded:
    (similarities float32 [m, k], global rows int64 [m, k]; -1 / -inf where missing)."""
    from stages.neighbors import index as knn

    kk = min((k + 1) * max(1, rerank), max(1, len(xb)))
    D, I = index.search(xq, kk)
    if rerank > 1:
        D, I = knn._rescore(xb, xq, I, min(k + 1, kk))
    I = np.where(I >= 0, I + lo, -1)
    if D.shape[1] < k + 1:  # a shard smaller than k+1 rows: pad so there is always one to drop
        pad = k + 1 - D.shape[1]
        D = np.pad(D, ((0, 0), (0, pad)), constant_values=-np.inf)
        I = np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
    D, I = knn._drop_self(np.asarray(q_rows), D, I, k)
    return knn._clean(D, I)


def search_one_shard(embed_dir: str, data_dir: str, shard: int, shards: int, settings, seed: int) -> dict:
    """Phase 1 for database shard `shard`: writes its partial top-k lists for every corpus row."""
    from curate.atomic import atomic_path, write_json_atomic
    from stages.embed.store import load_embeddings
    from stages.neighbors import index as knn

    _, vectors, _ = load_embeddings(embed_dir, mmap=True)
    n, d = vectors.shape
    lo, hi = shard_bounds(n, shards)[shard]
    xb = knn._f32(vectors[lo:hi])
    m, k = len(xb), settings.k
    memory = settings.memory_gb * 2**30 if settings.memory_gb else knn.available_memory_bytes() / 2
    flat_max = settings.flat_max_rows or 50_000
    key = settings.index if settings.index != "auto" else knn.choose_index_key(m, d, memory, flat_max)
    rerank = settings.rerank or knn.default_rerank(key)
    on_gpu = settings.device != "cpu" and knn.select_faiss_device(index_key=key) == "gpu"
    device = "gpu" if on_gpu else "cpu"
    info = {"shard": shard, "rows": [lo, hi], "index": key, "rerank": rerank, "device": device}
    sims_path, rows_path, info_path = _partial_paths(data_dir, shard)
    os.makedirs(os.path.dirname(sims_path), exist_ok=True)
    if m == 0:
        index = None
    else:
        index = knn.build_index(xb, key, device, seed + shard, settings.train_per_list or 40)
        rng = np.random.default_rng(seed + shard)
        sample = np.sort(rng.choice(m, size=min(m, settings.recall_sample), replace=False))
        _, exact_I = knn.exact_knn(xb, sample, k, device)
        fixed = settings.nprobe if knn.search_parameter(index) == "nprobe" else settings.ef_search
        tuning = knn.tune_search(index, xb, sample, exact_I, k, settings.target_recall, fixed, device, rerank=rerank,
                                 margin=settings.recall_margin)
        info.update(search_parameter=tuning.parameter, search_parameter_value=tuning.value,
                    shard_recall_at_k=tuning.recall)
    with atomic_path(sims_path) as tmp_sims, atomic_path(rows_path) as tmp_rows:
        out_s = np.lib.format.open_memmap(tmp_sims, mode="w+", dtype=np.float32, shape=(n, k))
        out_i = np.lib.format.open_memmap(tmp_rows, mode="w+", dtype=np.int64, shape=(n, k))
        for start in range(0, n, QUERY_BLOCK):
            q_rows = np.arange(start, min(n, start + QUERY_BLOCK))
            if index is None:
                out_s[start : start + len(q_rows)] = -np.inf
                out_i[start : start + len(q_rows)] = -1
                continue
            D, I = search_shard_block(index, xb, lo, knn._f32(vectors[q_rows]), q_rows, k, rerank)
            out_s[start : start + len(q_rows)], out_i[start : start + len(q_rows)] = D, I
        out_s.flush()
        out_i.flush()
        del out_s, out_i
    write_json_atomic(info, info_path)
    return info


def merge_top_k(sims: list[np.ndarray], rows: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best of the shards' lists: by similarity, then by row (deterministic ties)."""
    s = np.concatenate([np.asarray(x, dtype=np.float32) for x in sims], axis=1)
    r = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows], axis=1)
    key_row = np.where(r >= 0, r, np.iinfo(np.int64).max)
    order = np.lexsort((key_row, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)


def merge_output_shard(data_dir: str, out_shard: int, n: int, shards: int, k: int, rows_per_shard: int) -> int:
    """Phase 2 for one output shard: merge the partial lists of its rows and write `knn_*.npz`."""
    from stages.neighbors.store import write_knn_shard

    lo, hi = out_shard * rows_per_shard, min(n, (out_shard + 1) * rows_per_shard)
    sims, rows = [], []
    for j in range(shards):
        sims_path, rows_path, _ = _partial_paths(data_dir, j)
        if not (os.path.exists(sims_path) and os.path.exists(rows_path)):
            raise FileNotFoundError(f"neighbors: partial results of database shard {j} missing ({sims_path})")
        sims.append(np.load(sims_path, mmap_mode="r")[lo:hi])
        rows.append(np.load(rows_path, mmap_mode="r")[lo:hi])
    D, I = merge_top_k(sims, rows, k)
    write_knn_shard(data_dir, out_shard, lo, I, D.astype(np.float16))
    return hi - lo


def finalize(embed_dir: str, data_dir: str, shards: int, settings, seed: int) -> dict:
    """Phase 3: ids, measured recall of the merged graph, manifest; partial lists removed."""
    import polars as pl

    from curate.atomic import write_json_atomic, write_parquet_atomic
    from stages.embed.store import load_embeddings, read_manifest as read_embed_manifest
    from stages.neighbors import index as knn
    from stages.neighbors.store import IDS, MANIFEST, KnnTable

    ids, vectors, labels = load_embeddings(embed_dir, mmap=True, check=False)  # the search tasks checked them
    n, d = vectors.shape
    table = {"id": pl.Series("id", ids, dtype=pl.String)}
    if labels is not None:
        table["label"] = pl.Series("label", labels, dtype=pl.String)
    write_parquet_atomic(pl.DataFrame(table), os.path.join(data_dir, IDS))
    infos = []
    for j in range(shards):
        with open(_partial_paths(data_dir, j)[2], encoding="utf-8") as f:
            infos.append(json.load(f))
    k = settings.k
    # a provisional manifest lets KnnTable read the merged rows for the recall check
    write_json_atomic({"n": int(n), "k": k}, os.path.join(data_dir, MANIFEST))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, settings.recall_sample), replace=False)) if n else np.zeros(0, np.int64)
    _, exact_I = knn.exact_knn(vectors, sample, k) if n else (None, np.zeros((0, k), np.int64))
    approx_I = KnnTable(data_dir).rows(sample)[0]
    keys = sorted({i["index"] for i in infos})
    manifest = {
        "n": int(n), "k": k, "dim": int(d), "metric": "ip", "index": keys[0] if len(keys) == 1 else ",".join(keys),
        "device": ",".join(sorted({i["device"] for i in infos})), "index_shards": shards, "shards": infos,
        "recall_at_k": float(knn.recall_at_k(approx_I, exact_I)), "recall_sample_size": int(len(sample)),
        "recall_sample_rows": sample.tolist(), "target_recall": settings.target_recall, "seed": seed,
        "exact": all(i["index"].lower().startswith("flat") for i in infos),
        "embedding_model": read_embed_manifest(embed_dir).get("model"),
    }
    write_json_atomic(manifest, os.path.join(data_dir, MANIFEST))
    shutil.rmtree(os.path.join(data_dir, PARTIAL), ignore_errors=True)
    return manifest


def corpus_rows(embed_dir: str) -> int:
    """Rows of the embedded corpus, from the shards' array headers (no ids or vectors read)."""
    from stages.embed.store import list_shards, shard_paths

    return sum(int(np.load(shard_paths(embed_dir, r)[0], mmap_mode="r").shape[0]) for r in list_shards(embed_dir))
