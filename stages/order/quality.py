"""How good an ordering is: the figures the project reports (see the ICLM reference).

- MAC: mean cosine similarity of consecutive documents (vectors are L2-normalised).
- U2 bound: 1/2 [sum(s1 + s2) - (two smallest s2)], with s1 / s2 each document's best and
  second-best similarity to any *other* document. A Hamiltonian path uses two edges at every inner
  node and one at each end, each edge counted from both ends, so its total is at most that; the two
  ends lose at least their second-best. Exact s1 / s2 give a valid bound; from an approximate kNN
  graph it is only an estimate.
- kNN edge fraction: adjacent pairs where one is in the other's top-k list.
- label agreement: adjacent pairs sharing a topic label, beside chance (sum of squared shares).
"""

from __future__ import annotations

import numpy as np

from stages.neighbors.rowfiles import read_rows

_CHUNK = 1 << 15  # rows per block: two float32 blocks of 384-d vectors stay under 100 MB


def is_permutation(order: np.ndarray, n: int) -> bool:
    order = np.asarray(order)
    if order.shape != (n,):
        return False
    if n == 0:
        return True
    if order.min() < 0 or order.max() >= n:
        return False
    return bool(np.bincount(order, minlength=n).max() == 1)


def adjacent_similarities(vectors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Cosine similarity of each consecutive pair along `order` (float32, length n-1)."""
    order = np.asarray(order, dtype=np.int64)
    out = np.empty(max(len(order) - 1, 0), dtype=np.float32)
    for lo in range(0, len(out), _CHUNK):
        hi = min(lo + _CHUNK, len(out))
        x = read_rows(vectors, order[lo : hi + 1], np.float32)
        out[lo:hi] = np.einsum("ij,ij->i", x[:-1], x[1:])
    return out


def mean_adjacent_cosine(vectors: np.ndarray, order: np.ndarray) -> float:
    sims = adjacent_similarities(vectors, order)
    return float(sims.mean()) if len(sims) else 0.0


def top2_similarities(vectors: np.ndarray, exact_limit: int = 200_000):
    """(s1, s2): best and second-best similarity of each row to any other row, by exact search.

    The row itself is excluded by index (an exact duplicate of a row still counts as "other").
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n > exact_limit:
        raise ValueError(f"exact top-2 search on {n} rows is quadratic; use bounds_from_knn")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    kk = min(3, n)
    sims, idx = index.search(x, kk)
    s = np.where(idx == np.arange(n)[:, None], -np.inf, sims)
    s = -np.sort(-s, axis=1)
    s1 = s[:, 0]
    s2 = s[:, 1] if kk > 2 else np.full(n, -np.inf, dtype=np.float32)
    return s1.astype(np.float64), s2.astype(np.float64)


def top2_from_knn(neighbors: np.ndarray, similarities: np.ndarray):
    """(s1, s2) read from a kNN table (valid bounds only if the table is exact)."""
    return top2_from_knn_rows(neighbors, similarities, np.arange(len(neighbors)))


def upper_bound_u2(s1: np.ndarray, s2: np.ndarray) -> float:
    """U2 = 1/2 [sum(s1 + s2) - (two smallest s2)]; missing values (-inf) count as 0 (no edge)."""
    s1 = np.where(np.isfinite(s1), s1, 0.0)
    s2 = np.where(np.isfinite(s2), s2, 0.0)
    if len(s1) < 2:
        return 0.0
    two_smallest = np.partition(s2, 1)[:2].sum()
    return float(0.5 * (s1.sum() + s2.sum() - two_smallest))


def knn_edge_fraction(order: np.ndarray, neighbors: np.ndarray) -> float:
    """Share of adjacent pairs (u, v) with v in u's list or u in v's list."""
    order = np.asarray(order, dtype=np.int64)
    if len(order) < 2:
        return 0.0
    hits = 0
    for lo in range(0, len(order) - 1, _CHUNK):
        hi = min(lo + _CHUNK, len(order) - 1)
        u, v = order[lo:hi], order[lo + 1 : hi + 1]
        hit = (neighbors[u] == v[:, None]).any(axis=1) | (neighbors[v] == u[:, None]).any(axis=1)
        hits += int(hit.sum())
    return hits / (len(order) - 1)


def knn_quality_streamed(order: np.ndarray, table_chunks) -> tuple[np.ndarray, np.ndarray, float]:
    """(s1, s2, kNN-edge fraction) of a path from a restricted table read chunk by chunk.

    `table_chunks` yields (first row, renumbered neighbours, similarities) in row order (see
    `RestrictedKnnTable.chunks`). The pair at path position i is a kNN edge when the successor is in
    the first's list or the first is in the successor's list; each row checks its own list against
    its successor and predecessor, so no step needs the whole table.
    """
    order = np.asarray(order, dtype=np.int64)
    n = len(order)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    succ = np.full(n, -2, dtype=np.int64)
    pred = np.full(n, -2, dtype=np.int64)
    succ[order[:-1]] = order[1:]
    pred[order[1:]] = order[:-1]
    pair_hit = np.zeros(max(n - 1, 0), dtype=bool)
    s1 = np.full(n, -np.inf)
    s2 = np.full(n, -np.inf)
    for lo, nb, sims in table_chunks:
        m = len(nb)
        r = np.arange(lo, lo + m)
        a, b = top2_bounds_from_rows(nb, sims, r)
        s1[lo : lo + m], s2[lo : lo + m] = a, b
        fwd = (nb == succ[r][:, None]).any(axis=1)
        back = (nb == pred[r][:, None]).any(axis=1)
        pair_hit[pos[r[fwd]]] = True
        pair_hit[pos[r[back]] - 1] = True
    return s1, s2, (float(pair_hit.mean()) if n > 1 else 0.0)


def top2_bounds_from_rows(neighbors: np.ndarray, similarities: np.ndarray, rows: np.ndarray):
    """Upper bounds on each row's best and second-best similarity to another *kept* document.

    `neighbors` is a restricted table (removed documents are -1) whose `similarities` are still the
    full list's. Where a row lost its top two to the restriction (semantic dedup, or k = 1), the
    unknown values are at most the full list's smallest similarity, since every document outside
    a full top-k list is at most that similar; a row whose list is not full (the corpus has fewer
    than k+1 documents) lists every other document, so a missing value there means no document.
    """
    s1, s2 = top2_from_knn_rows(neighbors, similarities, rows)
    sims = np.asarray(similarities, dtype=np.float64)
    if sims.shape[1] == 0:
        return s1, s2
    full = np.isfinite(sims).all(axis=1)
    floor = np.where(full, np.where(np.isfinite(sims), sims, np.inf).min(axis=1), -np.inf)
    s1 = np.where(np.isfinite(s1), s1, floor)
    s2 = np.where(np.isfinite(s2), s2, floor)
    return s1, s2


def top2_from_knn_rows(neighbors: np.ndarray, similarities: np.ndarray, rows: np.ndarray):
    """`top2_from_knn` for a slice of a table whose rows are numbered `rows`."""
    nb = np.asarray(neighbors)
    s = np.where((nb >= 0) & (nb != np.asarray(rows)[:, None]), np.asarray(similarities, dtype=np.float64), -np.inf)
    s = -np.sort(-s, axis=1)
    s1 = s[:, 0] if s.shape[1] > 0 else np.full(len(nb), -np.inf)
    s2 = s[:, 1] if s.shape[1] > 1 else np.full(len(nb), -np.inf)
    return s1, s2


def label_agreement(labels, order: np.ndarray) -> tuple[float, float]:
    """(share of adjacent pairs with equal labels, chance level = sum of squared label shares)."""
    lab = np.asarray(labels)
    order = np.asarray(order, dtype=np.int64)
    if len(order) < 2:
        return 0.0, 0.0
    seq = lab[order]
    agree = float(np.mean(seq[1:] == seq[:-1]))
    _, counts = np.unique(lab, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum())
    return agree, chance


def ordering_quality(vectors, order, neighbors=None, labels=None, s1=None, s2=None) -> dict:
    """All figures for one ordering. Pass (s1, s2) to get the bound ratio."""
    n = len(order)
    sims = adjacent_similarities(vectors, order)
    out = {"documents": n, "mac": float(sims.mean()) if len(sims) else 0.0, "path_total": float(sims.sum(dtype=np.float64))}
    if s1 is not None and s2 is not None:
        u2 = upper_bound_u2(s1, s2)
        out["u2_bound"] = u2
        out["bound_ratio"] = out["path_total"] / u2 if u2 > 0 else None
    if neighbors is not None:
        out["knn_edge_fraction"] = knn_edge_fraction(order, neighbors)
    if labels is not None:
        agree, chance = label_agreement(labels, order)
        out["label_agreement"], out["label_chance"] = agree, chance
    return out


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def stitched_path_quality(vectors: np.ndarray, path: np.ndarray, rows: np.ndarray, table_chunks,
                          labels=None) -> tuple[dict, np.ndarray]:
    """Figures of a path over the documents `rows` (sorted global rows; `path` is a permutation of
    them), from a kNN table restricted to those rows and read chunk by chunk (`table_chunks`, see
    `knn_quality_streamed`); `labels` per global row, when the input has topic labels.

    Returns (figures, adjacent similarities along the path): MAC, path total, U2 bound and the bound
    ratio, kNN-edge fraction, similarity quantiles, and label agreement beside chance.
    """
    local = np.searchsorted(rows, path)
    if not is_permutation(local, len(rows)):
        raise ValueError("the path is not a permutation of the documents it orders")
    adjacent = adjacent_similarities(vectors, path)
    s1, s2, edge_fraction = knn_quality_streamed(local, table_chunks)
    u2 = upper_bound_u2(s1, s2)
    total = float(adjacent.sum(dtype=np.float64))
    figures = {
        "mac": float(adjacent.mean()) if len(adjacent) else 0.0,
        "path_total": total,
        "u2_bound": u2,
        "bound_ratio": total / u2 if u2 > 0 else None,
        "knn_edge_fraction": edge_fraction,
        "similarity_quantiles": {str(q): float(np.quantile(adjacent, q)) for q in QUANTILES} if len(adjacent) else {},
    }
    if labels is not None:
        lab = np.array(["" if labels[r] is None else str(labels[r]) for r in rows])
        figures["label_agreement"], figures["label_chance"] = label_agreement(lab, local)
    return figures, adjacent


def random_order_similarities(vectors: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Adjacent similarities of `rows` in a seeded random order: the reference a path is compared to."""
    perm = np.asarray(rows)[np.random.default_rng(seed).permutation(len(rows))]
    return adjacent_similarities(vectors, perm) if len(perm) > 1 else np.empty(0, dtype=np.float32)
