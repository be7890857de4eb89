"""Compiled (numba) inner loops of the orderings: walks, greedy edge matching, fragment extraction.

Imported lazily by `stages.order.algorithms` so that listing stages never pays numba's import. All
kernels are `nogil`, so partitions can be ordered by threads in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def greedy_walk(indptr, indices, weights, start_order):
    """Paper Algorithm 1: walk to the most similar unvisited neighbour; when stuck, restart at the next
    unvisited node of `start_order` (minimum degree first, random among ties)."""
    n = indptr.shape[0] - 1
    visited = np.zeros(n, dtype=np.bool_)
    path = np.empty(n, dtype=np.int64)
    ptr = 0
    m = 0
    cur = -1
    while m < n:
        if cur < 0:
            while visited[start_order[ptr]]:
                ptr += 1
            cur = start_order[ptr]
        visited[cur] = True
        path[m] = cur
        m += 1
        best = -1
        best_w = -np.inf
        for e in range(indptr[cur], indptr[cur + 1]):
            j = indices[e]
            if not visited[j] and weights[e] > best_w:
                best_w = weights[e]
                best = j
        cur = best
    return path


@njit(cache=True, nogil=True)
def capped_walk_clusters(neighbors, max_rank, cap, start_order):
    """The released code's walk: from each unseen start, follow the first unseen id among the first
    `max_rank` listed neighbours (similarity values ignored) until stuck or the cluster holds `cap`
    documents. Returns (cluster id per node, nodes in visiting order)."""
    n = neighbors.shape[0]
    k = min(max_rank, neighbors.shape[1])
    cluster = np.full(n, -1, dtype=np.int64)
    visit = np.empty(n, dtype=np.int64)
    m = 0
    c = 0
    for t in range(n):
        cur = start_order[t]
        if cluster[cur] >= 0:
            continue
        size = 0
        while cur >= 0:
            cluster[cur] = c
            visit[m] = cur
            m += 1
            size += 1
            if size >= cap:
                break
            nxt = -1
            for r in range(k):
                j = neighbors[cur, r]
                if j >= 0 and j != cur and cluster[j] < 0:
                    nxt = j
                    break
            cur = nxt
        c += 1
    return cluster, visit


@njit(cache=True, nogil=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def match_edges(a, b, order, deg, adj, parent):
    """Greedy matching of edges taken in `order`: accept (u, v) when both have degree < 2 and lie in
    different fragments (union-find), so the accepted edges form vertex-disjoint simple paths.
    Updates deg / adj / parent in place; returns how many edges were accepted."""
    accepted = 0
    for t in range(order.shape[0]):
        e = order[t]
        u = a[e]
        v = b[e]
        if u == v or deg[u] >= 2 or deg[v] >= 2:
            continue
        ru = _find(parent, u)
        rv = _find(parent, v)
        if ru == rv:
            continue
        if ru < rv:
            parent[rv] = ru
        else:
            parent[ru] = rv
        adj[u, deg[u]] = v
        deg[u] += 1
        adj[v, deg[v]] = u
        deg[v] += 1
        accepted += 1
    return accepted


@njit(cache=True, nogil=True)
def fragment_roots(parent):
    n = parent.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = _find(parent, i)
    return out


@njit(cache=True, nogil=True)
def walk_fragments(deg, adj):
    """Concatenate every path fragment (walked from its lower-numbered end, fragments in order of
    that end) into one sequence of all nodes."""
    n = deg.shape[0]
    seen = np.zeros(n, dtype=np.bool_)
    out = np.empty(n, dtype=np.int64)
    m = 0
    for start in range(n):
        if seen[start] or deg[start] == 2:
            continue
        prev = -1
        cur = start
        while cur >= 0:
            seen[cur] = True
            out[m] = cur
            m += 1
            nxt = -1
            for t in range(deg[cur]):
                j = adj[cur, t]
                if j != prev and not seen[j]:
                    nxt = j
                    break
            prev = cur
            cur = nxt
    return out[:m]
