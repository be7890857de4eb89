"""Orderings of documents along an approximate maximum-similarity Hamiltonian path.

Every function takes arrays (a kNN table: `neighbors` int [n, k] with -1 for none, `similarities`
[n, k]; and/or L2-normalised `vectors` [n, d]) and returns a permutation of range(n) as int64.

- `order_random`: the "standard packing" baseline.
- `order_iclm_greedy`: the paper's Algorithm 1 (the reference).
- `order_cluster_capped_walk`: what the paper's released code does instead (a second reference).
- `order_by_greedy_path` (registered as `edge_matching`, the default): greedy maximum-weight
  matching of kNN edges into path fragments, fragments joined by the best similarity between their
  ends, then 2-opt / Or-opt local search on kNN candidate lists.

`ALGORITHMS` names each as an `OrderingAlgorithm`, the interface the `order` stage calls: a new
ordering is one more entry there (and its name in `OrderSettings.algorithm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from stages.neighbors.rowfiles import read_rows
from stages.order.graph import csr_adjacency, heaviest_first, undirected_edges


def _check_table(neighbors: np.ndarray, similarities: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    neighbors = np.asarray(neighbors, dtype=np.int64)
    if neighbors.ndim != 2:
        neighbors = neighbors.reshape(len(neighbors), -1)
    if similarities is None:
        similarities = np.zeros(neighbors.shape, dtype=np.float32)
    similarities = np.asarray(similarities, dtype=np.float32).reshape(neighbors.shape)
    return neighbors, similarities


def order_random(n: int, seed: int = 0) -> np.ndarray:
    """A uniformly random permutation (what standard packing sees)."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def order_iclm_greedy(neighbors: np.ndarray, similarities: np.ndarray, seed: int = 0) -> np.ndarray:
    """Paper Algorithm 1 on the undirected kNN graph.

    Start at an unvisited document of minimum degree; move to the unvisited neighbour with the
    highest similarity; when none is left, jump (weight 0) to a random unvisited minimum-degree
    document. Ties in degree are broken by a seeded random key; ties in similarity by row number.
    """
    from stages.order.kernels import greedy_walk

    neighbors, similarities = _check_table(neighbors, similarities)
    n = neighbors.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    a, b, w = undirected_edges(neighbors, similarities)
    indptr, indices, weights = csr_adjacency(n, a, b, w)
    degree = np.diff(indptr)
    start_order = np.lexsort((np.random.default_rng(seed).random(n), degree)).astype(np.int64)
    return greedy_walk(indptr, indices, weights, start_order)


def order_cluster_capped_walk(
    neighbors: np.ndarray, similarities: np.ndarray | None = None, seed: int = 0,
    max_rank: int = 9, cap: int = 21, min_cluster: int = 3,
) -> np.ndarray:
    """The released ICLM code's ordering, written from its description.

    From each unseen document (in row order), follow the first unseen id among neighbour ranks 1-9,
    ignoring similarity values, until stuck or the cluster holds 21 documents. Clusters smaller than
    `min_cluster` are then dissolved: each of their documents joins the cluster of its first listed
    neighbour that lies in a kept cluster (appended at that cluster's end), or stays alone when none
    does. Clusters are emitted in creation order.
    """
    from stages.order.kernels import capped_walk_clusters

    neighbors, _ = _check_table(neighbors, similarities)
    n = neighbors.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    cluster, visit = capped_walk_clusters(neighbors, max_rank, cap, np.arange(n, dtype=np.int64))
    sizes = np.bincount(cluster)
    members: list[list[int]] = [[] for _ in range(len(sizes))]
    for node in visit:
        members[cluster[node]].append(int(node))
    small = sizes < min_cluster
    for c in np.flatnonzero(small):
        for node in members[c]:
            row = neighbors[node]
            hosts = [cluster[j] for j in row[: max_rank] if 0 <= j < n and not small[cluster[j]]]
            if hosts:
                members[hosts[0]].append(node)
            else:
                members.append([node])
        members[c] = []
    return np.fromiter((x for m in members for x in m), dtype=np.int64, count=n)


def _endpoint_candidates(vectors: np.ndarray, ends: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate edges between fragment ends: each end's top-k most similar other ends (FAISS)."""
    import faiss

    xe = read_rows(vectors, ends, np.float32)
    m = len(ends)
    kk = min(k + 1, m)
    if m > 4000:
        # exact search among many ends would be quadratic; an IVF index keeps this step near-linear
        nlist = int(np.sqrt(m))
        quantizer = faiss.IndexFlatIP(xe.shape[1])
        index = faiss.IndexIVFFlat(quantizer, xe.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        index.cp.max_points_per_centroid = 64
        index.train(xe)
        index.nprobe = 8
    else:
        index = faiss.IndexFlatIP(xe.shape[1])
    index.add(xe)
    sims, idx = index.search(xe, kk)
    rows = np.repeat(np.arange(m), kk)
    cols = idx.reshape(-1)
    ok = cols >= 0
    return ends[rows[ok]], ends[cols[ok]], sims.reshape(-1)[ok].astype(np.float32)


def join_fragments_by_ends(vectors: np.ndarray, deg: np.ndarray, adj: np.ndarray, parent: np.ndarray, k: int = 8) -> None:
    """Link path fragments into one path, heaviest end-to-end similarity first (in place).

    Each round searches, among the ends of the current fragments, the most similar ends of other
    fragments and greedily accepts the heaviest links (degree <= 2, no cycle). With an exact search
    every round links at least one pair, so the rounds end with a single fragment; an approximate
    round that links nothing falls back to chaining the fragments in row order.
    """
    from stages.order.kernels import fragment_roots, match_edges

    while True:
        roots = fragment_roots(parent)
        if len(np.unique(roots)) <= 1:
            return
        ends = np.flatnonzero(deg < 2).astype(np.int64)
        a, b, w = _endpoint_candidates(vectors, ends, k)
        keep = roots[a] != roots[b]
        a, b, w = a[keep], b[keep], w[keep]
        order = np.lexsort((b, a, -w)).astype(np.int64)  # ties by row pair: deterministic
        if match_edges(a.astype(np.int64), b.astype(np.int64), order, deg, adj, parent) == 0:
            break
    # fallback: chain fragments by their smallest end
    roots = fragment_roots(parent)
    ends = np.flatnonzero(deg < 2)
    first_end: dict[int, list[int]] = {}
    for e in ends:
        first_end.setdefault(int(roots[e]), []).append(int(e))
    frags = [v if len(v) == 2 else v * 2 for _, v in sorted(first_end.items())]
    for (_, tail), (head, _) in zip(frags[:-1], frags[1:]):
        match_edges(np.array([tail]), np.array([head]), np.array([0]), deg, adj, parent)


def order_by_greedy_path(
    vectors: np.ndarray, neighbors: np.ndarray, similarities: np.ndarray, seed: int = 0,
    local_search: bool = True, search_k: int = 10, join_k: int = 8, max_move: int = 50_000,
    max_segment: int = 3, kicks_per_document: float = 20.0, max_kick: int = 30, max_kicks: int = 10_000,
) -> np.ndarray:
    """The default ordering ("edge_matching").

    1. Greedy matching: kNN edges, heaviest first, accepted while both ends have degree < 2 and
       they join different fragments; this yields vertex-disjoint path fragments.
    2. Fragment joining: repeatedly link the most similar ends of different fragments.
    3. Local search: 2-opt and Or-opt moves on the first `search_k` kNN candidates of each node,
       then iterated local search: `kicks_per_document * n` (at most `max_kicks`) random segment
       exchanges, each re-optimised locally and kept only when the path total rises.
    `seed` drives the kicks only; the same seed gives the same path.
    """
    from stages.order.kernels import match_edges, walk_fragments

    neighbors, similarities = _check_table(neighbors, similarities)
    n = neighbors.shape[0]
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    a, b, w = undirected_edges(neighbors, similarities)
    order = heaviest_first(a, w)
    deg = np.zeros(n, dtype=np.int64)
    adj = np.full((n, 2), -1, dtype=np.int64)
    parent = np.arange(n, dtype=np.int64)
    match_edges(a.astype(np.int64), b.astype(np.int64), order, deg, adj, parent)
    del a, b, w, order
    join_fragments_by_ends(x, deg, adj, parent, k=join_k)
    path = walk_fragments(deg, adj)
    if local_search and n >= 3:
        path = improve_order(path, x, neighbors, similarities, search_k, max_move, max_segment,
                             int(min(kicks_per_document * n, max_kicks)), max_kick, seed)
    return path


def improve_order(path, vectors, neighbors, similarities, search_k=10, max_move=50_000, max_segment=3,
                  kicks=0, max_kick=30, seed=0):
    """Run 2-opt / Or-opt on `path` with each node's first `search_k` listed neighbours as candidates."""
    from stages.order.local_search import exact_candidate_sims, improve_path

    neighbors, similarities = _check_table(neighbors, similarities)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    kk = max(1, min(search_k, neighbors.shape[1]))
    n = len(path)
    nb = np.where((neighbors[:, :kk] >= 0) & (neighbors[:, :kk] < n), neighbors[:, :kk], -1)
    # exact candidate similarities, lists sorted by them (the scan stops at the first one too weak)
    sims = exact_candidate_sims(x, np.ascontiguousarray(nb))
    rank = np.argsort(-sims, axis=1, kind="stable")
    nb = np.ascontiguousarray(np.take_along_axis(nb, rank, axis=1))
    ns = np.ascontiguousarray(np.take_along_axis(sims, rank, axis=1))
    new_path, _, _ = improve_path(
        np.asarray(path, dtype=np.int64), x, nb, ns,
        int(min(max_move, n)), int(min(max(max_segment, 1), 3)), int(kicks), int(max_kick), int(seed) % (2**31))
    return new_path


@dataclass(frozen=True)
class OrderingAlgorithm:
    """One way to order the documents of a partition, as the `order` stage uses it.

    function: (vectors [n, d], neighbors [n, k], similarities [n, k], seed, **options) -> permutation.
    options: the `OrderSettings` fields the function takes as keyword options (`options_from`).
    partitioned: whether a large corpus is split into k-means partitions ordered separately and then
        stitched; an ordering that ignores similarity (`random`) orders the whole set as one.
    """

    name: str
    function: Callable[..., np.ndarray]
    help: str
    options: tuple[str, ...] = ()
    partitioned: bool = True

    def __call__(self, vectors, neighbors, similarities, seed: int = 0, **options) -> np.ndarray:
        return self.function(vectors, neighbors, similarities, seed, **options)

    def options_from(self, settings) -> dict:
        """The keyword options this algorithm takes, read from a settings object."""
        return {name: getattr(settings, name) for name in self.options}


ALGORITHMS: dict[str, OrderingAlgorithm] = {a.name: a for a in (
    OrderingAlgorithm(
        "edge_matching", order_by_greedy_path,
        "greedy edge matching into path fragments, joined by their ends, then 2-opt/Or-opt local search",
        options=("search_k", "kicks_per_document", "max_kicks")),
    OrderingAlgorithm(
        "iclm_greedy", lambda vectors, neighbors, similarities, seed=0: order_iclm_greedy(neighbors, similarities, seed),
        "the ICLM paper's Algorithm 1 (greedy walk from minimum-degree documents)"),
    OrderingAlgorithm(
        "cluster_capped_walk",
        lambda vectors, neighbors, similarities, seed=0: order_cluster_capped_walk(neighbors, similarities, seed),
        "what the ICLM paper's released code does (walks capped at 21 documents)"),
    OrderingAlgorithm(
        "random", lambda vectors, neighbors, similarities, seed=0: order_random(len(neighbors), seed),
        "a seeded random permutation (standard packing's baseline)", partitioned=False),
)}
