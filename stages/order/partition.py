"""Partitioned ordering: no single step holds the whole graph.

1. `assign_partitions`: FAISS k-means on (a sample of) the vectors, every document to its nearest
   centroid; a partition larger than `max_size` is split again the same way. Then
   `refine_partitions_by_graph` moves documents to their kNN neighbours' majority partition.
2. each partition is ordered on its own (its kNN table restricted to its members), independently, so
   partitions can run as parallel tasks (threads here, datatrove tasks in the `order` stage);
3. `stitch_partitions` (`stages/order/stitch.py`): the partitions are ordered and oriented so that
   the similarity across every junction is high (centroid path + dynamic programming, or OR-tools'
   routing solver).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from stages.neighbors.rowfiles import read_rows
from stages.order.graph import restrict_knn
from stages.order.stitch import stitch_partitions


def assign_partitions(vectors: np.ndarray, partition_size: int, seed: int = 0, max_size: int | None = None,
                      sample: int = 256, gpu: bool | None = None) -> np.ndarray:
    """Partition id (0..P-1, dense) of each row; P ~ n / partition_size.

    `gpu` (None = whenever faiss has a GPU build and sees a GPU) trains and assigns with FAISS's GPU
    k-means; otherwise on the CPU.
    """
    import faiss

    if gpu is None:
        from stages.neighbors.index import select_faiss_device

        gpu = select_faiss_device() == "gpu"

    n, d = vectors.shape
    labels = np.zeros(n, dtype=np.int64)
    if n <= partition_size:
        return labels
    max_size = max_size or 4 * partition_size
    parts = int(np.ceil(n / partition_size))
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, size=min(n, parts * sample), replace=False))
    train = np.ascontiguousarray(vectors[take], dtype=np.float32)  # a RowSubset reads it in windows
    km = faiss.Kmeans(d, parts, niter=12, seed=int(seed) % (2**31), spherical=True, verbose=False,
                      max_points_per_centroid=sample, gpu=bool(gpu))
    km.train(train)
    block = 1 << 16  # rows converted to float32 at a time (100 MB at 384 dimensions)
    for lo in range(0, n, block):
        _, lab = km.index.search(np.ascontiguousarray(vectors[lo : lo + block], dtype=np.float32), 1)
        labels[lo : lo + len(lab)] = lab[:, 0]
    # split partitions that came out too large (k-means clusters are not balanced)
    next_id = parts
    for p in np.flatnonzero(np.bincount(labels, minlength=parts) > max_size):
        rows = np.flatnonzero(labels == p)
        sub = assign_partitions(vectors[rows], partition_size, seed + 1 + int(p), max_size, sample, gpu)
        labels[rows[sub > 0]] = next_id + sub[sub > 0] - 1
        next_id += int(sub.max())
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def refine_partitions_by_graph(labels: np.ndarray, neighbors: np.ndarray, iterations: int = 3,
                               chunk: int = 1 << 17) -> np.ndarray:
    """Move each document to the partition most of its kNN neighbours are in (ties keep it where it is).

    k-means on the vectors alone can cut a tight topic across partitions when many topics share a
    centroid; every kNN edge cut that way is lost to the per-partition orderings. A few rounds of
    this majority vote (label propagation) pull each topic into one partition.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = len(labels)
    parts = int(labels.max()) + 1 if n else 0
    if parts <= 1:
        return labels
    for _ in range(iterations):
        new = labels.copy()
        for lo in range(0, n, chunk):
            nb = np.asarray(neighbors[lo : lo + chunk], dtype=np.int64)
            m = len(nb)
            valid = (nb >= 0) & (nb < n)
            rows = np.broadcast_to(np.arange(m)[:, None], nb.shape)[valid]
            counts = np.bincount(rows * parts + labels[nb[valid]], minlength=m * parts).astype(np.float32).reshape(m, parts)
            counts[np.arange(m), labels[lo : lo + m]] += 0.5
            new[lo : lo + m] = counts.argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def order_partition(order_fn: Callable[..., np.ndarray], vectors, neighbors, similarities, rows: np.ndarray,
                    seed: int = 0, **kw) -> np.ndarray:
    """Order the documents `rows` by `order_fn` on their restricted kNN table; returns global rows."""
    nb, ns = restrict_knn(neighbors, similarities, rows)
    return order_restricted(order_fn, vectors, nb, ns, rows, seed, **kw)


def order_restricted(order_fn: Callable[..., np.ndarray], vectors, local_neighbors: np.ndarray,
                     local_similarities: np.ndarray, rows: np.ndarray, seed: int = 0, **kw) -> np.ndarray:
    """`order_partition` when the partition's table is already read and renumbered (`RestrictedKnnTable`)."""
    nb, ns = local_neighbors, local_similarities
    x = read_rows(vectors, rows, np.float32)
    local = order_fn(x, nb, ns, seed, **kw)
    return rows[local]


def order_partitions(order_fn: Callable[..., np.ndarray], vectors, neighbors, similarities, seed: int = 0,
                     partition_size: int = 50_000, workers: int = 1, labels: np.ndarray | None = None,
                     **kw) -> list[np.ndarray]:
    """Partition the corpus and order every partition (in `workers` threads): one path of global rows
    per partition, not yet stitched."""
    n = len(vectors)
    if labels is None:
        labels = refine_partitions_by_graph(assign_partitions(vectors, partition_size, seed), neighbors)
    groups = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[groups])) + 1
    members = np.split(groups, bounds) if n else []

    def run(i_rows):
        i, rows = i_rows
        return order_partition(order_fn, vectors, neighbors, similarities, rows, seed + i, **kw)

    if workers > 1 and len(members) > 1:
        def run_single_threaded(i_rows):
            import faiss

            # the partitions are the parallelism; FAISS's own threads would oversubscribe the cores
            # (an OpenMP setting is per OS thread, so this leaves the caller's threads alone)
            faiss.omp_set_num_threads(1)
            return run(i_rows)

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run_single_threaded, enumerate(members)))
    return [run(x) for x in enumerate(members)]


def order_partitioned(order_fn: Callable[..., np.ndarray], vectors, neighbors, similarities, seed: int = 0,
                      partition_size: int = 50_000, workers: int = 1, labels: np.ndarray | None = None,
                      stitch: str = "dp", **kw) -> np.ndarray:
    """Order a corpus partition by partition (in `workers` threads) and stitch the paths (`stitch`:
    "dp" or "ortools", see `stitch_partitions`)."""
    paths = order_partitions(order_fn, vectors, neighbors, similarities, seed, partition_size, workers, labels, **kw)
    return stitch_partitions(vectors, paths, seed, method=stitch)
