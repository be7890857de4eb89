"""Semantic dedup over document embeddings: two stages, both applied by one filter.

- `semantic_dedup` (ICLM-style): every kNN edge with similarity >= threshold joins two documents;
  the connected components are the duplicate groups, and each keeps its smallest id (so the result
  does not depend on sharding). Chains can join documents that are not directly similar, which is
  what "near-duplicate cluster" means in the ICLM pipeline; raise the threshold to tighten it.
- `semdedup` (SemDeDup, Abbas et al. 2023): spherical k-means (FAISS) on the vectors; inside each
  cluster, items are visited in a fixed order and an item is dropped when its cosine similarity to an
  already *kept* item exceeds 1 - eps. The visiting order decides who survives: smallest id first
  (default), or SemDeDup's "hard" (farthest from the centroid first) / "easy" (closest first).
Both write `duplicates.parquet` (id, kept_id, similarity) that the `apply` filter reads, and
optionally `groups.parquet` (every member of every group, kept ones included) for inspection.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup.common import ListedDuplicatesFilter

DUPLICATES = "duplicates.parquet"
GROUPS = "groups.parquet"


class SemanticDedupSettings(StageSettings):
    threshold: float = Field(
        0.95, ge=-1, le=1, description="cosine similarity at or above which two neighbours are duplicates"
    )
    write_groups: bool = Field(True, description="write groups.parquet (all members of every group) for inspection")


class SemDeDupSettings(StageSettings):
    eps: float = Field(0.05, gt=0, lt=2, description="drop an item more similar than 1 - eps to a kept item of its cluster")
    clusters: int = Field(0, ge=0, description="k-means clusters; 0 = n/50 capped at 1000 (NeMo Curator uses 1000)")
    keep: Literal["smallest_id", "hard", "easy"] = Field(
        "smallest_id", description="who survives: smallest id, farthest from the centroid (hard) or closest (easy)"
    )
    iterations: int = Field(20, ge=1, description="k-means iterations")
    write_groups: bool = Field(True, description="write groups.parquet (all members of every group) for inspection")


def _frame(ids, kept_ids, sims, extra: dict | None = None):
    import polars as pl

    cols = {
        "id": pl.Series("id", list(ids), dtype=pl.String),
        "kept_id": pl.Series("kept_id", list(kept_ids), dtype=pl.String),
        "similarity": pl.Series("similarity", np.asarray(sims, dtype=np.float32)),
    }
    for name, values in (extra or {}).items():
        cols[name] = pl.Series(name, values)
    return pl.DataFrame(cols)


def semantic_duplicate_groups(ids: list[str], neighbors: np.ndarray, similarities: np.ndarray, threshold: float):
    """Connected components of the kNN edges with similarity >= threshold.

    Returns (duplicates, groups): duplicates has one row per removed document (id, kept_id,
    similarity = its best similarity inside the group); groups lists every member of every group of
    two or more, with `group_size`.
    """
    rows, cols, w = edges_at_or_above(0, neighbors, similarities, threshold)
    return duplicate_groups_from_edges(ids, rows, cols, w)


def edges_at_or_above(first_row: int, neighbors: np.ndarray, similarities: np.ndarray, threshold: float):
    """(rows, neighbour rows, similarity) of the kNN edges >= threshold in a block of rows."""
    sims = np.asarray(similarities, dtype=np.float32)
    mask = (neighbors >= 0) & (sims >= threshold)
    rows = np.broadcast_to(np.arange(first_row, first_row + len(neighbors))[:, None], neighbors.shape)[mask]
    return rows.astype(np.int64), np.asarray(neighbors)[mask].astype(np.int64), sims[mask]


def duplicate_groups_from_edges(ids: list[str], rows: np.ndarray, cols: np.ndarray, sims: np.ndarray):
    """`semantic_duplicate_groups` from the edges alone (read from the graph a block at a time, so
    only the few edges above the threshold are ever in memory)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    if n == 0:  # no document has a vector (an empty corpus, or an embedder that gave only NaN)
        return _frame([], [], []), _frame([], [], [], {"group_size": np.zeros(0, np.int64)})
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=True, connection="weak")
    best = np.full(n, -np.inf, dtype=np.float32)  # best in-group similarity per document
    np.maximum.at(best, rows, sims)
    np.maximum.at(best, cols, sims)
    order = np.lexsort((np.asarray(ids, dtype=object).astype(str), label))  # by group, then id
    lab_sorted = label[order]
    first = np.r_[True, lab_sorted[1:] != lab_sorted[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, n])
    size_of = np.repeat(sizes, sizes)
    kept_row = np.repeat(order[starts], sizes)  # smallest id of each group (ids sorted within group)
    in_group = size_of >= 2
    ids_arr = np.asarray(ids, dtype=object)
    g_rows, g_kept = order[in_group], kept_row[in_group]
    groups = _frame(ids_arr[g_rows], ids_arr[g_kept], best[g_rows], {"group_size": size_of[in_group].astype(np.int64)})
    removed = g_rows != g_kept
    duplicates = _frame(ids_arr[g_rows[removed]], ids_arr[g_kept[removed]], best[g_rows[removed]]).sort("id")
    return duplicates, groups.sort("kept_id", "id")


def kmeans_clusters(vectors: np.ndarray, clusters: int, seed: int = 0, iterations: int = 20, gpu: bool = False):
    """Spherical k-means (FAISS): (cluster of each row, centroids)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(clusters, len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, spherical=True, gpu=gpu,
                      max_points_per_centroid=512, min_points_per_centroid=1)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0].astype(np.int64), km.centroids


def _greedy_keep(x: np.ndarray, threshold: float, block_elems: int = 2**25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visit rows in order; keep a row unless its similarity to a kept earlier row exceeds threshold.

    Returns (kept mask, kept row each removed row duplicates, that similarity). Similarities are
    computed in row blocks (bounded memory); only pairs above threshold reach the sequential pass.
    """
    m = len(x)
    pi, pj, ps = [], [], []
    block = max(1, block_elems // max(m, 1))
    for s in range(0, m, block):
        e = min(m, s + block)
        sim = x[s:e] @ x[:e].T
        i, j = np.nonzero(sim > threshold)
        earlier = j < i + s
        pi.append(i[earlier] + s)
        pj.append(j[earlier])
        ps.append(sim[i[earlier], j[earlier]])
    i, j, sv = (np.concatenate(a) if a else np.zeros(0) for a in (pi, pj, ps))
    kept = np.ones(m, dtype=bool)
    match = np.full(m, -1, dtype=np.int64)
    match_sim = np.zeros(m, dtype=np.float32)
    if len(i):
        order = np.lexsort((-sv, i))  # by row, most similar candidate first
        i, j, sv = i[order].astype(np.int64), j[order].astype(np.int64), sv[order]
        starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
        ends = np.r_[starts[1:], len(i)]
        for a, b in zip(starts, ends):  # rows ascending, so every candidate is decided already
            hit = np.flatnonzero(kept[j[a:b]])
            if len(hit):
                row = i[a]
                kept[row] = False
                match[row], match_sim[row] = j[a + hit[0]], sv[a + hit[0]]
    return kept, match, match_sim


def semdedup(ids: list[str], vectors: np.ndarray, eps: float, clusters: int = 0, keep: str = "smallest_id",
             seed: int = 0, iterations: int = 20, gpu: bool = False):
    """SemDeDup: returns (duplicates, groups) frames like `semantic_duplicate_groups`, groups with
    the cluster of each member."""
    import polars as pl

    n = len(ids)
    if n == 0:
        return _frame([], [], []), _frame([], [], [], {"cluster": pl.Series([], dtype=pl.Int64)})
    k = clusters or max(1, min(1000, n // 50))
    assign, centroids = kmeans_clusters(vectors, k, seed, iterations, gpu)
    x = np.asarray(vectors, dtype=np.float32)
    ids_arr = np.asarray(ids, dtype=object)
    threshold = 1.0 - eps
    out_rm, out_kept, out_sim, g_id, g_kept, g_cluster = [], [], [], [], [], []
    for c in np.unique(assign):
        members = np.flatnonzero(assign == c)
        if keep == "smallest_id":
            members = members[np.argsort(ids_arr[members].astype(str), kind="stable")]
        else:
            to_centroid = x[members] @ centroids[c]
            members = members[np.argsort(to_centroid if keep == "hard" else -to_centroid, kind="stable")]
        kept, match, match_sim = _greedy_keep(x[members], threshold)
        gone = np.flatnonzero(~kept)
        if not len(gone):
            continue
        out_rm.append(members[gone])
        out_kept.append(members[match[gone]])
        out_sim.append(match_sim[gone])
        keepers = np.unique(members[match[gone]])
        g_id.append(np.r_[keepers, members[gone]])
        g_kept.append(np.r_[keepers, members[match[gone]]])
        g_cluster.append(np.full(len(keepers) + len(gone), c, dtype=np.int64))
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    rm, kp = cat(out_rm, np.int64), cat(out_kept, np.int64)
    duplicates = _frame(ids_arr[rm], ids_arr[kp], cat(out_sim, np.float32)).sort("id")
    gi, gk = cat(g_id, np.int64), cat(g_kept, np.int64)
    groups = _frame(ids_arr[gi], ids_arr[gk], np.ones(len(gi), np.float32), {"cluster": cat(g_cluster, np.int64)})
    return duplicates, groups.drop("similarity").sort("kept_id", "id")


class SemanticDedupFind(PipelineStep):
    """One task: read the upstream graph (semantic_dedup) or vectors (semdedup), write duplicates."""

    name = "🧬 semantic dedup"
    type = "🫂 - DEDUP"
    _requires_dependencies = ["scipy"]

    def __init__(self, method: str, source_dir: str, output_dir: str, settings, seed: int = 0):
        super().__init__()
        self.method, self.source_dir, self.output_dir = method, source_dir, output_dir
        self.settings, self.seed = settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if rank != 0:
            return
        from curate.atomic import write_parquet_atomic

        with self.track_time("find"):
            if self.method == "semantic_dedup":
                from stages.neighbors.store import KnnTable

                table = KnnTable(self.source_dir)
                ids = table.ids()
                n = len(ids)
                parts = [edges_at_or_above(lo, nb, sims, self.settings.threshold) for lo, nb, sims in table.chunks()]
                rows, cols, w = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(3))
                dups, groups = duplicate_groups_from_edges(ids, rows.astype(np.int64), cols.astype(np.int64),
                                                           w.astype(np.float32))
            else:
                from stages.embed.store import load_embeddings
                from stages.neighbors.index import select_faiss_device

                ids, vectors, _ = load_embeddings(self.source_dir)
                n = len(ids)
                s = self.settings
                dups, groups = semdedup(ids, vectors, s.eps, s.clusters, s.keep, self.seed, s.iterations,
                                        gpu=select_faiss_device() == "gpu")
        self.stat_update("documents", value=n, unit="run")
        self.stat_update("duplicates", value=dups.height, unit="run")
        self.stat_update("groups", value=dups["kept_id"].n_unique() if dups.height else 0, unit="run")
        if self.settings.write_groups:
            write_parquet_atomic(groups, os.path.join(self.output_dir, GROUPS))
        write_parquet_atomic(dups, os.path.join(self.output_dir, DUPLICATES))
        return
        yield


@register_stage("semantic_dedup", settings=SemanticDedupSettings, kind="global")
def build_semantic_dedup(settings: SemanticDedupSettings, ctx: StageContext) -> GlobalPlan:
    """ICLM-style semantic dedup: kNN edges >= threshold form groups; each keeps its smallest id."""
    source = ctx.upstream_data_dir("neighbors", "search")
    out = ctx.data_dir("groups")
    step = SemanticDedupFind("semantic_dedup", source, out, settings, ctx.seed)
    return GlobalPlan(phases=[Phase("groups", [step], tasks=1)],
                      apply=[ListedDuplicatesFilter(out, "semantic_duplicate", ctx.removed_writer(), DUPLICATES)])


@register_stage("semdedup", settings=SemDeDupSettings, kind="global")
def build_semdedup(settings: SemDeDupSettings, ctx: StageContext) -> GlobalPlan:
    """SemDeDup: k-means the embeddings, drop items within 1 - eps of a kept item of their cluster."""
    source = ctx.upstream_data_dir("embed", "embed")
    out = ctx.data_dir("clusters")
    step = SemanticDedupFind("semdedup", source, out, settings, ctx.seed)
    return GlobalPlan(phases=[Phase("clusters", [step], tasks=1)],
                      apply=[ListedDuplicatesFilter(out, "semdedup_duplicate", ctx.removed_writer(), DUPLICATES)])
