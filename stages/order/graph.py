"""The undirected kNN graph the orderings walk on, built from a directed top-k table.

A kNN table holds, per document row, up to k neighbour rows (-1 = none) and their similarities. The
paper's graph is undirected: (a, b) is an edge when b is in a's list or a in b's. Self-loops,
padding and out-of-range rows are dropped; a pair listed from both sides is kept once with the larger
similarity (the two can differ slightly with float16 storage or approximate search).
"""

from __future__ import annotations

import numpy as np


def undirected_edges(neighbors: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique undirected edges (a < b) of a directed kNN table: (a int32, b int32, weight float32)."""
    neighbors = np.asarray(neighbors)
    n = neighbors.shape[0]
    if n == 0 or neighbors.ndim != 2 or neighbors.shape[1] == 0:
        empty = np.empty(0, dtype=np.int32)
        return empty, empty.copy(), np.empty(0, dtype=np.float32)
    k = neighbors.shape[1]
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = neighbors.reshape(-1).astype(np.int64, copy=False)
    w = np.asarray(similarities, dtype=np.float32).reshape(-1)
    valid = (cols >= 0) & (cols < n) & (cols != rows) & np.isfinite(w)
    rows, cols, w = rows[valid], cols[valid], w[valid]
    a = np.minimum(rows, cols)
    b = np.maximum(rows, cols)
    key = a * n + b
    del rows, cols, a, b
    # group equal pairs (sort by key), keep the largest weight of each pair
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    w = np.maximum.reduceat(w, starts) if len(starts) else w
    key = key[starts]
    return (key // n).astype(np.int32), (key % n).astype(np.int32), w


def heaviest_first(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Edge indices by descending weight; equal weights keep the (a, b) order of `undirected_edges`."""
    return np.argsort(-w, kind="stable").astype(np.int64)


def csr_adjacency(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compressed adjacency of an undirected edge list: (indptr int64 [n+1], indices int32, weights float32).

    Each node's neighbours are listed by descending weight, then by row, so walks that take "the
    first best" are deterministic.
    """
    src = np.concatenate([a, b]).astype(np.int64)
    dst = np.concatenate([b, a]).astype(np.int32)
    ww = np.concatenate([w, w]).astype(np.float32)
    order = np.lexsort((dst, -ww, src))
    src, dst, ww = src[order], dst[order], ww[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst, ww


def renumber_neighbors(neighbors: np.ndarray, remap: np.ndarray) -> np.ndarray:
    """Global neighbour rows -> local numbers through `remap` (-1 = not kept; padding stays -1)."""
    sub = np.asarray(neighbors, dtype=np.int64)
    valid = (sub >= 0) & (sub < len(remap))
    return np.where(valid, remap[np.where(valid, sub, 0)], -1)


def local_numbering(keep: np.ndarray, n: int) -> np.ndarray:
    remap = np.full(n, -1, dtype=np.int64)
    remap[np.asarray(keep, dtype=np.int64)] = np.arange(len(keep), dtype=np.int64)
    return remap


def restrict_knn(neighbors: np.ndarray, similarities: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kNN table of the rows in `keep` (sorted or not), renumbered to 0..len(keep)-1.

    Neighbours outside `keep` become -1: the documents semantic dedup removed, or those of another
    partition.
    """
    keep = np.asarray(keep, dtype=np.int64)
    out = renumber_neighbors(neighbors[keep], local_numbering(keep, neighbors.shape[0]))
    return out, np.asarray(similarities[keep], dtype=np.float32)


class RestrictedKnnTable:
    """`restrict_knn` over an on-disk `KnnTable`, read a slice at a time instead of all at once.

    Slicing (`view[lo:hi]`) gives the renumbered neighbours of kept rows lo..hi-1, so chunked code
    (partition refinement, the quality figures) runs on a corpus whose table does not fit in memory.
    """

    def __init__(self, table, keep: np.ndarray):
        self.table = table
        self.keep = np.asarray(keep, dtype=np.int64)
        self.remap = local_numbering(self.keep, table.n)

    def __len__(self) -> int:
        return len(self.keep)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.keep), self.table.k

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        nb, sims = self.table.rows(self.keep[lo:hi])
        return renumber_neighbors(nb, self.remap), np.asarray(sims, dtype=np.float32)

    def __getitem__(self, item):
        if not isinstance(item, slice) or item.step not in (None, 1):
            raise TypeError("RestrictedKnnTable supports contiguous slices only")
        lo, hi, _ = item.indices(len(self.keep))
        return self.rows(lo, hi)[0]

    def chunks(self, chunk: int = 1 << 17):
        for lo in range(0, len(self.keep), chunk):
            yield (lo, *self.rows(lo, min(lo + chunk, len(self.keep))))
