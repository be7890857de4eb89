"""The kNN graph as a self-join of dense blocks (`method: join`, the default): three phases of
independent datatrove tasks, none of which holds the corpus.

1. `quantize` (1 task): coarse-quantise once. FAISS spherical k-means (`rows_per_list` rows per
   list on average, trained on a seeded sample of `train_per_list` (120) rows per list) over the corpus;
   each row goes to the list of its nearest centroid and votes for its `VOTE_LISTS` nearest lists.
   A list's *probes* are the lists its rows voted for most (ties and the rest by centroid
   similarity), its own list first. Each row also keeps its own `extra_lists` nearest lists: those
   its list's probes leave out are searched for that row alone (rows far from their list's centre
   have neighbours no list-wide probe count reaches cheaply: on 2M clustered rows the probe count
   fell from 77 to ~20 at the same recall, with ~0.9 such lists per row). On a seeded sample of
   `recall_sample` rows the exact top-k (streamed over the corpus) tells, for every probe count P,
   which share of the true neighbours lie in the sample rows' first P probes or own lists (the
   recall a perfect join over those candidates reaches); of the (P, own lists 0/2/4/`extra_lists`)
   pairs reaching `target_recall + recall_margin`, the one with the fewest comparisons is used
   (`quantize.join_costs`; an own-list comparison counts EXTRA_COST, its blocks are small). The vectors are
   then rewritten sorted by list (`join/vectors.npy`, the embeddings' dtype), so every list is one
   contiguous range (an external bucket sort, `rowfiles.write_sorted_by_list`). Up to
   `flat_max_rows` rows (or `probes` >= the list count) there is no k-means: one list holds every
   row and the join is exact (float32).
   Memory: the k-means sample (120 x lists x d x 4 B: 184 MB at 1M rows), the row -> list tables
   (~40 B per row), one 65,536-row window and one sort bucket; every read of the corpus is a
   sequential window whose mapped pages are dropped after use (`rowfiles.py` says why).
2. `search` (`tasks` tasks): the rows are cut into groups (a list, or a slice of a big one); groups
   are dealt to tasks by estimated cost (rows x candidates, largest first to the least loaded). For
   each group the candidates (its first P probe lists) stream through `blocks.BlockTopK` in chunks:
   one matrix product per chunk (bfloat16 on CPUs that have it, float16 on GPUs, float32 when
   exact), the best k x `rerank` re-scored in float32, merged per row. Then the task's rows against
   their own lists left out by the probes, list by list (each read once per task), in fixed-size
   row blocks (so the products, hence the graph, do not depend on the task count). Memory: one group and one
   chunk (~200 MB, see `blocks.py`) plus the task's output (16 B x k per row it owns); vectors are
   read with plain file reads, not mapped, so the task's resident memory is what it holds.
3. `finalize` (1 task): ids, the graph in `rows_per_shard` shards (`store.py` format), the recall
   of the written rows on the sample against exact search, the manifest; `join/` is then removed.
   Memory: the ids plus one output shard (`rows_per_shard` x k x 10 B = 20 MB at 100,000 rows).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import shutil

import numpy as np

from stages.neighbors.rowfiles import NpyRows, drop_pages, release_freed_memory

JOIN_DIR = "join"
GROUP_LISTS = 4  # a group holds at most GROUP_LISTS x rows_per_list rows (big lists are split)
INFO = "quantize.json"


# ------------------------------------------------------------------------------------------------
# files


def join_path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, JOIN_DIR, name)


def read_info(data_dir: str) -> dict:
    with open(join_path(data_dir, INFO), encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------
# phase 2: the join


def plan_groups(offsets: np.ndarray, probes: np.ndarray, group_rows: int, tasks: int):
    """(groups [(list, lo, hi)], owner task of each): lists cut into groups of <= group_rows rows,
    dealt largest cost first to the least-loaded task (ties: lowest group, lowest task)."""
    sizes = np.diff(offsets)
    groups, costs = [], []
    for lst in range(len(sizes)):
        cand = int(sizes[probes[lst]].sum())
        lo, hi = int(offsets[lst]), int(offsets[lst + 1])
        parts = max(1, math.ceil((hi - lo) / group_rows))
        edges = np.linspace(lo, hi, parts + 1).round().astype(np.int64)
        for a, b in zip(edges[:-1], edges[1:]):
            if b > a:
                groups.append((lst, int(a), int(b)))
                costs.append((int(b) - int(a)) * cand)
    owner = np.zeros(len(groups), dtype=np.int64)
    heap = [(0, t) for t in range(max(1, tasks))]
    for g in sorted(range(len(groups)), key=lambda g: (-costs[g], g)):
        load, t = heapq.heappop(heap)
        owner[g] = t
        heapq.heappush(heap, (load + costs[g], t))
    return groups, owner


def _candidate_chunks(ranges: list[tuple[int, int]], read, chunk_rows: int):
    """(vectors, positions, pieces) per chunk of <= chunk_rows candidate rows over sorted-position
    ranges; pieces = [(position lo, position hi, column in chunk)]."""
    pieces, rows, filled = [], [], 0
    for lo, hi in ranges:
        while lo < hi:
            take = min(hi - lo, chunk_rows - filled)
            pieces.append((lo, lo + take, filled))
            rows.append(read(lo, lo + take))
            filled += take
            lo += take
            if filled == chunk_rows:
                yield np.concatenate(rows), pieces
                pieces, rows, filled = [], [], 0
    if filled:
        yield np.concatenate(rows), pieces


def _merged_ranges(offsets: np.ndarray, lists: np.ndarray) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lst in sorted(int(x) for x in lists):
        lo, hi = int(offsets[lst]), int(offsets[lst + 1])
        if hi <= lo:
            continue
        if out and out[-1][1] == lo:
            out[-1][1] = hi
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


EXTRA_BLOCK = 64  # rows per product in the own-lists pass (fixed, padded: see _join_own_lists)


def _join_own_lists(data_dir: str, pos: np.ndarray, lists: np.ndarray, positions: np.ndarray, nb: np.ndarray,
                    sims: np.ndarray, offsets: np.ndarray, read, k: int, keep: int, precision: str, device: str,
                    chunk_rows: int) -> int:
    """Second pass of a search task: row `pos[j]` (a sorted-file position) against list `lists[j]`, one
    of its own nearest lists that its list's probes leave out, merged into its neighbours (`nb`, `sims`
    of the task's `positions`, updated in place).

    Rows far from their list's centre find neighbours that no list-wide probe count reaches at a
    sensible cost. Pairs are taken list by list, so each such list is read (and cast) once per task,
    with all the task's rows that need it. Those rows go through the products in blocks of exactly
    EXTRA_BLOCK rows (the last one padded with zero rows), so every row's products come from the same
    kernel on the same shapes whichever rows share its block: the graph does not depend on the task
    count. Returns the comparisons made."""
    from stages.neighbors import blocks

    where = np.argsort(positions, kind="stable")
    by_pair = np.lexsort((pos, lists))
    pos, lists = pos[by_pair], lists[by_pair]
    cuts = np.flatnonzero(np.diff(lists)) + 1
    mapped = np.load(join_path(data_dir, "vectors.npy"), mmap_mode="r")
    compared = 0
    try:
        for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(lists)]])):
            query_pos = pos[a:b]
            m = len(query_pos)
            queries = np.zeros((-(-m // EXTRA_BLOCK) * EXTRA_BLOCK, mapped.shape[1]), dtype=np.float32)
            queries[:m] = mapped[query_pos]
            drop_pages(mapped)
            # float32 products: with ~1,000 candidates a row, choosing k x rerank of them in low
            # precision and re-scoring costs more than the exact product (measured 3x)
            top = blocks.BlockTopK(queries, k, k, "float32", device, query_rows=EXTRA_BLOCK)
            for chunk, pieces in _candidate_chunks(_merged_ranges(offsets, [lists[a]]), read, chunk_rows):
                ids = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi, _ in pieces])
                top.add(chunk, ids, None)  # another list than the row's own: it cannot meet itself
                compared += m * len(chunk)
            new_s, new_i = top.result()
            at = where[np.searchsorted(positions[where], query_pos)]
            all_s = np.concatenate([sims[at], new_s[:m]], axis=1)
            all_i = np.concatenate([nb[at], new_i[:m]], axis=1)
            best = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
            sims[at] = np.take_along_axis(all_s, best, axis=1)
            nb[at] = np.take_along_axis(all_i, best, axis=1)
    finally:
        del mapped
    return compared


def join_task(data_dir: str, rank: int, tasks: int, s) -> dict:
    """Phase 2 for task `rank`: the k nearest neighbours of the rows of its groups, written to
    `join/part_{rank}.*` (global rows ascending)."""
    from curate.atomic import write_json_atomic, write_numpy_atomic
    from stages.neighbors import blocks

    release_freed_memory()
    info = read_info(data_dir)
    k = info["k"]
    offsets = np.load(join_path(data_dir, "offsets.npy"))
    probes = np.load(join_path(data_dir, "probes.npy"))
    rows_of = np.load(join_path(data_dir, "rows.npy"))
    groups, owner = plan_groups(offsets, probes, GROUP_LISTS * s.rows_per_list, tasks)
    read = NpyRows(join_path(data_dir, "vectors.npy"))
    device = info["device"]
    chunk_rows = blocks.GPU_CHUNK_ROWS if blocks.torch_device(device) == "cuda" else blocks.CHUNK_ROWS
    rerank = s.rerank or 2
    own = NpyRows(join_path(data_dir, "own_lists.npy")) if info.get("extra_lists") else None
    out_pos, out_nb, out_s, extra_pos, extra_list, compared = [], [], [], [], [], 0
    try:
        for g in np.flatnonzero(owner == rank):
            lst, glo, ghi = groups[g]
            top = blocks.BlockTopK(read(glo, ghi), k, k * rerank, info["precision"], device)
            for chunk, pieces in _candidate_chunks(_merged_ranges(offsets, probes[lst]), read, chunk_rows):
                cols = np.full(ghi - glo, -1, dtype=np.int64)
                ids = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b, _ in pieces])
                for a, b, col in pieces:
                    lo, hi = max(a, glo), min(b, ghi)
                    if lo < hi:
                        cols[lo - glo : hi - glo] = col + np.arange(lo - a, hi - a)
                top.add(chunk, ids, cols)
                compared += (ghi - glo) * len(chunk)
            sims, pos = top.result()
            out_pos.append(np.arange(glo, ghi, dtype=np.int64))
            out_nb.append(pos)
            out_s.append(sims)
            if own is not None:  # the rows' own nearest lists that the list's probes leave out
                probed = np.zeros(len(offsets) - 1, dtype=bool)
                probed[probes[lst]] = True
                lists = own(glo, ghi)
                r, c = np.nonzero(~probed[lists])
                extra_pos.append(glo + r)
                extra_list.append(lists[r, c].astype(np.int64))
            del top
            release_freed_memory(first=False)
        positions = np.concatenate(out_pos) if out_pos else np.zeros(0, np.int64)
        nb = np.concatenate(out_nb) if out_nb else np.zeros((0, k), np.int64)
        sims = np.concatenate(out_s) if out_s else np.zeros((0, k), np.float32)
        if extra_pos and sum(len(e) for e in extra_pos):
            compared += _join_own_lists(data_dir, np.concatenate(extra_pos), np.concatenate(extra_list), positions,
                                        nb, sims, offsets, read, k, k * rerank, info["precision"], device, chunk_rows)
    finally:
        read.close()
        if own is not None:
            own.close()
    rows = rows_of[positions]
    nb = np.where(nb >= 0, rows_of[np.maximum(nb, 0)], -1)
    by_row = np.argsort(rows, kind="stable")
    write_numpy_atomic(np.ascontiguousarray(nb[by_row], dtype=np.int64), join_path(data_dir, f"part_{rank:05d}.neighbors.npy"))
    write_numpy_atomic(np.ascontiguousarray(sims[by_row], dtype=np.float16), join_path(data_dir, f"part_{rank:05d}.similarities.npy"))
    write_numpy_atomic(np.ascontiguousarray(rows[by_row], dtype=np.int64), join_path(data_dir, f"part_{rank:05d}.rows.npy"))
    result = {"rank": rank, "groups": int((owner == rank).sum()), "rows": int(len(rows)), "comparisons": int(compared)}
    write_json_atomic(result, join_path(data_dir, f"part_{rank:05d}.json"))
    return result


# ------------------------------------------------------------------------------------------------
# phase 3: finalize


def finalize_join(embed_dir: str, data_dir: str, s, seed: int = 0) -> dict:
    """Phase 3: ids, the graph shards, measured recall, manifest; `join/` removed."""
    import glob

    import polars as pl

    from curate.atomic import write_json_atomic, write_parquet_atomic
    from stages.embed.store import load_embeddings, read_manifest as read_embed_manifest
    from stages.neighbors import index as knn
    from stages.neighbors.store import IDS, MANIFEST, write_knn_shard

    info = read_info(data_dir)
    n, k = info["n"], info["k"]
    ids, _, labels = load_embeddings(embed_dir, mmap=True, check=False)  # `quantize` checked them
    table = {"id": pl.Series("id", ids, dtype=pl.String)}
    if labels is not None:
        table["label"] = pl.Series("label", labels, dtype=pl.String)
    write_parquet_atomic(pl.DataFrame(table), os.path.join(data_dir, IDS))
    del ids, labels, table
    ranks = sorted(int(os.path.basename(p)[5:10]) for p in glob.glob(join_path(data_dir, "part_*.json")))
    parts = [(np.load(join_path(data_dir, f"part_{r:05d}.rows.npy")),
              NpyRows(join_path(data_dir, f"part_{r:05d}.neighbors.npy")),
              NpyRows(join_path(data_dir, f"part_{r:05d}.similarities.npy"))) for r in ranks]
    sample = np.load(join_path(data_dir, "sample_rows.npy"))
    exact_i = np.load(join_path(data_dir, "sample_exact.npy"))
    sample_i = np.full((len(sample), k), -1, dtype=np.int64)
    covered = 0
    for shard, lo in enumerate(range(0, max(n, 1), s.rows_per_shard)):
        hi = min(n, lo + s.rows_per_shard)
        nb = np.full((hi - lo, k), -1, dtype=np.int64)
        sims = np.full((hi - lo, k), -np.inf, dtype=np.float16)
        seen = np.zeros(hi - lo, dtype=bool)
        for rows, read_nb, read_s in parts:
            a, b = np.searchsorted(rows, [lo, hi])
            if b > a:
                nb[rows[a:b] - lo], sims[rows[a:b] - lo] = read_nb(int(a), int(b)), read_s(int(a), int(b))
                seen[rows[a:b] - lo] = True
        covered += int(seen.sum())
        a, b = np.searchsorted(sample, [lo, hi])
        sample_i[a:b] = nb[sample[a:b] - lo]
        write_knn_shard(data_dir, shard, lo, nb, sims)
    for _, read_nb, read_s in parts:
        read_nb.close()
        read_s.close()
    if covered != n:
        raise RuntimeError(f"neighbors: the join tasks covered {covered} of {n} rows (missing join/part_* files?)")
    embed_manifest = read_embed_manifest(embed_dir)
    manifest = {
        "n": int(n), "k": k, "dim": info["dim"], "metric": "ip", "method": "join",
        "index": "Flat" if info["exact"] else f"join{info['lists']},probes{info['probes']}",
        "device": info["device"], "precision": info["precision"], "exact": info["exact"],
        "lists": info["lists"], "probes": info["probes"], "probe_trace": info.get("probe_trace", []),
        "extra_lists": info.get("extra_lists", 0), "extra_pairs": info.get("extra_pairs", 0),
        "tuned_recall_at_k": info["tuned_recall"], "comparisons": info["comparisons"],
        "comparisons_share": info["comparisons_share"], "rerank": s.rerank or 2,
        "recall_at_k": float(knn.recall_at_k(sample_i, exact_i)), "recall_sample_size": int(len(sample)),
        "recall_sample_rows": sample.tolist(), "target_recall": s.target_recall, "seed": seed,
        "embedding_model": embed_manifest.get("model"),
    }
    write_json_atomic(manifest, os.path.join(data_dir, MANIFEST))
    shutil.rmtree(os.path.join(data_dir, JOIN_DIR), ignore_errors=True)
    return manifest
