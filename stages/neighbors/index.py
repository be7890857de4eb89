"""FAISS k-nearest-neighbour search over L2-normalised vectors (inner product = cosine).

The choices that matter at scale, each in one small function:
- `select_faiss_device`: GPU only when faiss reports one *and* the faiss build has GPU classes;
- `choose_index_key`: exact `Flat` for small corpora, otherwise an IVF index whose storage fits the
  memory budget (Flat, then SQfp16, then PQ), unless the recipe names a factory string;
- `tune_search`: raises nprobe / efSearch until recall@k on a query sample, measured against exact
  search, reaches the target, so every run states (and bounds) how approximate it was.
Self-matches are removed from every neighbour list; missing neighbours are -1 with similarity -inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SEARCH_BATCH = 16384
EXACT_BLOCK = 65536


def select_faiss_device(num_gpus: int | None = None, index_key: str = "Flat", has_gpu_api: bool | None = None) -> str:
    """"gpu" when a GPU is visible to faiss, the faiss build has GPU support and the index type runs
    on GPU (HNSW does not); "cpu" otherwise. Arguments default to what the installed faiss reports."""
    import faiss

    if num_gpus is None:
        num_gpus = faiss.get_num_gpus()
    if has_gpu_api is None:
        has_gpu_api = hasattr(faiss, "StandardGpuResources")
    if num_gpus <= 0 or not has_gpu_api or "HNSW" in index_key.upper():
        return "cpu"
    return "gpu"


def ivf_lists_for(n: int) -> int:
    """IVF list count: the power of two nearest 2*sqrt(n), within [16, 65536] and at most n/39 (FAISS
    wants >= 39 training points per centroid)."""
    target = 2.0 * math.sqrt(max(n, 1))
    nlist = 2 ** int(round(math.log2(max(target, 1.0))))
    return int(max(1, min(max(16, nlist), 65536, n // 39)))


def index_bytes_per_vector(key: str, d: int) -> float:
    """Approximate memory per stored vector of a factory string (ids included for IVF)."""
    k = key.upper()
    ivf_ids = 8 if k.startswith("IVF") else 0
    if "SQFP16" in k or "SQ16" in k:
        return 2 * d + ivf_ids
    if "SQ8" in k:
        return d + ivf_ids
    if ",PQ" in k or k.startswith("PQ"):
        m = int(k.split("PQ")[1].split("X")[0].split(",")[0] or 8)
        return m + ivf_ids
    if k.startswith("HNSW"):
        m = int("".join(ch for ch in k[4:].split(",")[0] if ch.isdigit()) or 32)
        return 4 * d + 2 * m * 4
    return 4 * d + ivf_ids


def choose_index_key(n: int, d: int, memory_bytes: float, flat_max_rows: int) -> str:
    """Exact search up to `flat_max_rows`; above, the most accurate IVF storage that fits in memory
    next to the float16 query vectors the search keeps (2*d bytes per row)."""
    if n <= flat_max_rows:
        return "Flat"
    nlist = ivf_lists_for(n)
    pq_m = max(m for m in (4, 8, 16, 24, 32, 48, 64, 96, 128) if d % m == 0 and m <= d // 2) if d >= 8 else d
    for key in (f"IVF{nlist},Flat", f"IVF{nlist},SQfp16", f"IVF{nlist},PQ{pq_m}"):
        if n * (index_bytes_per_vector(key, d) + 2 * d) <= memory_bytes:
            return key
    return f"IVF{nlist},PQ{max(4, pq_m // 4)}"


def available_memory_bytes() -> float:
    """MemAvailable from /proc/meminfo (Linux); 8 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8.0 * 2**30


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def build_index(vectors: np.ndarray, key: str, device: str = "cpu", seed: int = 0,
                train_per_list: int = 40, train_iterations: int = 10):
    """Train (on a seeded sample) and fill a FAISS index with inner-product metric."""
    import faiss

    n, d = vectors.shape
    index = faiss.index_factory(d, key, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.niter = train_iterations
        ivf.cp.seed = seed
    if device == "gpu":
        nlist = ivf.nlist if ivf is not None else None
        index = _to_gpu(index)
        if nlist:
            index.curate_nlist = nlist  # GPU IVF classes do not expose nlist uniformly across versions
    if not index.is_trained:
        nlist = ivf_list_count(index) or 256
        size = min(n, max(train_per_list * nlist, 10_000))
        rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
        index.train(_f32(vectors[rows]))
    for start in range(0, n, SEARCH_BATCH * 4):
        index.add(_f32(vectors[start : start + SEARCH_BATCH * 4]))
    return index


def _to_gpu(index):
    import faiss

    if faiss.get_num_gpus() > 1:
        co = faiss.GpuMultipleClonerOptions()
        co.shard = True
        co.useFloat16 = True
        return faiss.index_cpu_to_all_gpus(index, co=co)
    res = faiss.StandardGpuResources()
    co = faiss.GpuClonerOptions()
    co.useFloat16 = True  # float16 lookup tables: needed by GPU IVF-PQ with many sub-quantizers
    index = faiss.index_cpu_to_gpu(res, 0, index, co)
    index.referenced_resources = res  # keep the resources alive as long as the index
    return index


def search_parameter(index) -> str | None:
    """Name of the speed/accuracy knob of this index ("nprobe", "efSearch") or None (exact)."""
    if _ivf_of(index) is not None:
        return "nprobe"
    if "HNSW" in type(index).__name__:
        return "efSearch"
    return None


def set_search_parameter(index, name: str, value: int, device: str = "cpu") -> None:
    import faiss

    space = faiss.GpuParameterSpace() if device == "gpu" else faiss.ParameterSpace()
    space.set_index_parameter(index, name, int(value))


def _drop_self(rows: np.ndarray, D: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 results per query, remove the query itself (or the last result when it is absent)."""
    is_self = I == rows[:, None]
    absent = ~is_self.any(axis=1)
    is_self[absent, -1] = True
    keep = ~is_self
    m = len(rows)
    return D[keep].reshape(m, k), I[keep].reshape(m, k)


def _clean(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    D = D.astype(np.float32, copy=True)
    D[I < 0] = -np.inf
    return D, I.astype(np.int64, copy=False)


def default_rerank(key: str) -> int:
    """Candidates per wanted neighbour to re-score exactly: compressed codes (PQ, SQ8/4) rank
    approximately, so fetch 4x and re-rank with the true inner products; 1 (none) otherwise."""
    k = key.upper()
    return 4 if ("PQ" in k or "SQ8" in k or "SQ4" in k) else 1


def search_rows(index, vectors: np.ndarray, rows: np.ndarray, k: int, rerank: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours (self excluded) of `vectors[rows]`: (similarities float32, indices int64).

    With `rerank` > 1, rerank*(k+1) candidates are fetched and re-scored with exact inner products
    against `vectors` (which the search holds anyway), fixing the order that compressed codes blur.
    """
    outD, outI = [], []
    kk = (k + 1) * max(1, rerank)
    batch = SEARCH_BATCH if rerank <= 1 else max(64, min(SEARCH_BATCH, 2**24 // (kk * vectors.shape[1])))
    for s in range(0, len(rows), batch):
        r = rows[s : s + batch]
        xq = _f32(vectors[r])
        D, I = index.search(xq, kk)
        if rerank > 1:
            D, I = _rescore(vectors, xq, I, k + 1)
        D, I = _drop_self(r, D, I, k)
        D, I = _clean(D, I)
        outD.append(D)
        outI.append(I)
    if not outD:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(outD), np.concatenate(outI)


def _rescore(vectors: np.ndarray, xq: np.ndarray, I: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its candidates; the best `keep`, sorted descending."""
    cand = _f32(vectors[np.maximum(I, 0)])  # [m, c, d]
    D = np.einsum("mcd,md->mc", cand, xq)
    D[I < 0] = -np.inf
    order = np.argsort(-D, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)


def exact_knn(vectors: np.ndarray, rows: np.ndarray, k: int, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (self excluded) for `vectors[rows]`, scanning the corpus in blocks
    so no float32 copy of the whole corpus is needed."""
    import faiss

    xq = _f32(vectors[rows])
    heap = faiss.ResultHeap(len(rows), k + 1, keep_max=True)
    res = faiss.StandardGpuResources() if device == "gpu" else None
    for start in range(0, len(vectors), EXACT_BLOCK):
        xb = _f32(vectors[start : start + EXACT_BLOCK])
        kk = min(k + 1, len(xb))
        if res is not None:
            D, I = faiss.knn_gpu(res, xq, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            D, I = faiss.knn(xq, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(D, np.where(I >= 0, I + start, -1))
    heap.finalize()
    D, I = _drop_self(np.asarray(rows), heap.D, heap.I, k)
    return _clean(D, I)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / (exact neighbours that exist)."""
    if len(exact) == 0:
        return 1.0
    hits, total = 0, 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        total += len(e)
        hits += len(np.intersect1d(a[a >= 0], e, assume_unique=True))
    return hits / total if total else 1.0


@dataclass
class TuningResult:
    parameter: str | None
    value: int | None
    recall: float
    trace: list[tuple[int, float]] = field(default_factory=list)


def tune_search(index, vectors: np.ndarray, sample: np.ndarray, exact_I: np.ndarray, k: int,
                target_recall: float, fixed_value: int = 0, device: str = "cpu", max_value: int = 0,
                rerank: int = 1, margin: float = 0.0) -> TuningResult:
    """Set the index's search knob: `fixed_value` if given, else raise it by half from a small start
    until recall@k on `sample` reaches `target_recall + margin` (the margin absorbs the sample's error,
    so the whole graph meets the target), the knob is exhausted, or raising stops helping (compressed
    codes cap recall whatever nprobe is)."""
    name = search_parameter(index)
    if name is None:
        _, I = search_rows(index, vectors, sample, k, rerank)
        return TuningResult(None, None, recall_at_k(I, exact_I))
    nlist = ivf_list_count(index)
    limit = max_value or (nlist if (name == "nprobe" and nlist) else 4096)
    value = fixed_value or (8 if name == "nprobe" else max(16, k + 1))
    trace = []
    while True:
        value = min(value, limit)
        set_search_parameter(index, name, value, device)
        _, I = search_rows(index, vectors, sample, k, rerank)
        r = recall_at_k(I, exact_I)
        stalled = len(trace) > 0 and r - trace[-1][1] < 0.002
        trace.append((value, r))
        if fixed_value or r >= min(1.0, target_recall + margin) or value >= limit or stalled:
            return TuningResult(name, value, r, trace)
        value = max(value + 1, int(round(value * 1.5)))


def _ivf_of(index):
    """The IVF part of a CPU index, or a GPU IVF index itself (it carries `curate_nlist`), or None."""
    import faiss

    if getattr(index, "curate_nlist", None):
        return index
    return faiss.try_extract_index_ivf(index)


def ivf_list_count(index) -> int | None:
    ivf = _ivf_of(index)
    if ivf is None:
        return None
    return int(getattr(ivf, "curate_nlist", None) or ivf.nlist)
