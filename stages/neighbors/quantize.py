"""Phase 1 of the join (`quantize`, one task): k-means lists, the probe count tuned on the recall
sample, the corpus rewritten by list. `join.py`'s docstring describes the three phases together."""

from __future__ import annotations

import os

import numpy as np

from stages.neighbors.join import INFO, JOIN_DIR, join_path
from stages.neighbors.rowfiles import drop_pages, gather_rows, release_freed_memory, write_sorted_by_list

VOTE_LISTS = 3  # nearest lists each row votes for (measured: 3 beat 2 and 4 on the 1M benchmark corpus)
MAX_PROBES = 512
TRAIN_PER_LIST = 120  # k-means sample per list (measured at 2M rows: 40 -> 41 probes, 120 -> 16 at equal recall)
EXTRA_COST = 2.0  # an own-list comparison against a list-wide one (small padded blocks; measured ~2x)
BLOCK = 65536


def checked_vectors(embed_dir: str):
    """The embedding shards memory-mapped, each refused if it has NaN/inf/zero rows or the wrong
    dimension (naming the shard), with the pages read by the check dropped."""
    from stages.embed.store import check_shard, list_shards, load_embeddings, shard_paths

    _, vectors, _ = load_embeddings(embed_dir, mmap=True, check=False)
    parts = getattr(vectors, "parts", [vectors])
    for rank, part in zip(list_shards(embed_dir), parts):
        check_shard(part, shard_paths(embed_dir, rank)[0])
        drop_pages(part)
    return vectors


def vote_probes(top: np.ndarray, centroids: np.ndarray, max_probes: int) -> np.ndarray:
    """Per list, the lists its rows voted for most (each row votes for its nearest `top.shape[1]`
    lists), ties and unvoted lists by centroid similarity; own list first. int32 [nlist, max_probes]."""
    import torch

    nlist = len(centroids)
    own = top[:, 0].astype(np.int64)
    keys = np.concatenate([own * nlist + top[:, j] for j in range(top.shape[1])])
    keys, counts = np.unique(keys, return_counts=True)
    voter, voted = keys // nlist, keys % nlist
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    out = np.empty((nlist, max_probes), dtype=np.int32)
    for lo in range(0, nlist, 256):
        hi = min(nlist, lo + 256)
        score = 0.49 * (c[lo:hi] @ c.T).clamp(-1, 1)  # < 0.5: orders lists of equal votes only
        a, b = np.searchsorted(voter, [lo, hi])
        score[voter[a:b] - lo, voted[a:b]] += torch.from_numpy(counts[a:b].astype(np.float32))
        score[torch.arange(hi - lo), torch.arange(lo, hi)] = float("inf")
        out[lo:hi] = torch.topk(score, max_probes, dim=1).indices.numpy()
    return out


def probe_recall(sample_lists: np.ndarray, exact_lists: np.ndarray, valid: np.ndarray,
                 probes: np.ndarray, own_lists: np.ndarray | None = None) -> np.ndarray:
    """recall[P-1]: the share of the sample's exact neighbours that lie in the first P probes of the
    sample row's list, or in one of the row's own nearest lists (`own_lists[i]`, searched for that row
    whatever P), for P = 1..probes.shape[1] (what a join over those candidates finds)."""
    width = probes.shape[1]
    rank = np.full(exact_lists.shape, width, dtype=np.int64)
    for i, lst in enumerate(sample_lists):
        pos = np.full(int(probes.max()) + 1 if probes.size else 1, width, dtype=np.int64)
        pos[probes[lst]] = np.arange(width)
        e = exact_lists[i]
        ok = valid[i] & (e < len(pos))
        rank[i, ok] = pos[e[ok]]
    if own_lists is not None and own_lists.size:
        rank[(exact_lists[:, :, None] == own_lists[:, None, :]).any(axis=2)] = 0
    total = max(1, int(valid.sum()))
    hist = np.bincount(rank[valid], minlength=width + 1)[:width]
    return np.cumsum(hist) / total


def join_costs(offsets: np.ndarray, probes: np.ndarray, own_lists: np.ndarray | None):
    """For every probe count P = 1..probes.shape[1]: (comparisons of the list-wide blocks, comparisons
    of the rows' own lists left out by the first P probes, the number of such (row, list) pairs).
    own_lists: [n, V] by position in the sorted file, or None."""
    nlist, width = len(offsets) - 1, probes.shape[1]
    sizes = np.diff(offsets)
    main = np.zeros(width, dtype=np.float64)
    extra_at = np.zeros(width + 1, dtype=np.float64)  # by the own list's rank among the probes
    pairs_at = np.zeros(width + 1, dtype=np.float64)
    rank = np.empty(nlist, dtype=np.int64)
    for lst in range(nlist):
        main += float(sizes[lst]) * np.cumsum(sizes[probes[lst]])
        if own_lists is not None and sizes[lst]:
            rank.fill(width)
            rank[probes[lst]] = np.arange(width)
            own = own_lists[offsets[lst] : offsets[lst + 1]].ravel()
            extra_at += np.bincount(rank[own], weights=sizes[own], minlength=width + 1)
            pairs_at += np.bincount(rank[own], minlength=width + 1)
    # a pair whose list ranks r among the probes is an extra for P <= r
    extra = np.cumsum(extra_at[::-1])[::-1][1:]
    pairs = np.cumsum(pairs_at[::-1])[::-1][1:]
    return main, extra, pairs


def quantize(embed_dir: str, data_dir: str, s, seed: int = 0) -> dict:
    """Phase 1 (see the module docstring); writes `join/` and returns its info."""
    import faiss
    import torch

    from curate.atomic import write_json_atomic, write_numpy_atomic
    from stages.neighbors import blocks
    from stages.neighbors import index as knn

    release_freed_memory()
    os.makedirs(os.path.join(data_dir, JOIN_DIR), exist_ok=True)
    vectors = checked_vectors(embed_dir)
    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    k = s.k
    flat_max = s.flat_max_rows or 50_000
    nlist = max(1, int(round(n / s.rows_per_list)))
    exact = n <= flat_max or nlist == 1
    device = "gpu" if s.device != "cpu" and blocks.gpu_available() else "cpu"
    info = {"n": n, "dim": d, "k": k, "exact": bool(exact), "device": device, "seed": seed,
            "precision": "float32" if exact else blocks.resolve_precision(s.precision, device)}
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, s.recall_sample), replace=False)) if n else np.zeros(0, np.int64)
    if exact:
        nlist, centroids = 1, np.zeros((1, d), np.float32)
        list_of_row = np.zeros(n, dtype=np.int64)
        probes, chosen, trace = np.zeros((1, 1), np.int32), 1, []
    else:
        per_list = s.train_per_list or TRAIN_PER_LIST
        train_rows = np.sort(rng.choice(n, size=min(n, max(per_list * nlist, 10_000)), replace=False))
        train = gather_rows(vectors, train_rows, dtype=np.float32)
        kmeans = faiss.Kmeans(d, nlist, niter=10, seed=seed, spherical=True, verbose=False,
                              gpu=knn.select_faiss_device() == "gpu" and device == "gpu")
        kmeans.train(train)
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        del train, kmeans
        top = np.empty((n, min(max(VOTE_LISTS, s.extra_lists), nlist)), dtype=np.int32)
        dev = blocks.torch_device(device)
        # the product in the join's precision: a list is a coarse region, and ties are broken the same way each run
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[info["precision"]]
        c = torch.from_numpy(centroids).to(dev).to(dtype)
        step = max(256, min(BLOCK, 2**24 // nlist))  # similarity block <= 16M entries, whatever the list count
        for lo in range(0, n, step):
            x = torch.from_numpy(np.ascontiguousarray(vectors[lo : lo + step], dtype=np.float32)).to(dev).to(dtype)
            top[lo : lo + len(x)] = torch.topk(x @ c.T, top.shape[1], dim=1).indices.cpu().numpy()
            drop_pages(vectors)
        list_of_row = top[:, 0].astype(np.int64)
        probes = vote_probes(top[:, :VOTE_LISTS], centroids, min(nlist, MAX_PROBES))
    order = np.argsort(list_of_row, kind="stable")
    own_lists = top[:, : min(s.extra_lists, top.shape[1])] if not exact and s.extra_lists else None
    top = None  # own_lists (a view) keeps what is still needed
    offsets = np.concatenate([[0], np.cumsum(np.bincount(list_of_row, minlength=nlist))]).astype(np.int64)
    # exact neighbours of the sample: the tuning's reference and, in `finalize`, the stated recall's
    exact_s, exact_i = blocks.exact_topk(gather_rows(vectors, sample, np.float32), sample, vectors, k, device,
                                         chunk_rows=16384, after_chunk=lambda: drop_pages(vectors)) \
        if n else (np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
    drop_pages(vectors)
    sizes = np.diff(offsets)
    comparisons, extra_pairs, used_extra, trace, tuned = n * n, 0, 0, [], 1.0
    if not exact:
        valid = exact_i >= 0
        goal = min(1.0, s.target_recall + s.recall_margin)
        own_sorted = None if own_lists is None else np.ascontiguousarray(own_lists[order])  # by file position
        full = 0 if own_sorted is None else own_sorted.shape[1]
        # each row's own nearest lists, 0..extra_lists of them, with the probe count: the cheapest pair
        # that reaches the goal (own-list comparisons weighted EXTRA_COST), else the best recall
        options = []
        for width in ([full] if s.probes else sorted({0, min(2, full), min(4, full), full})):
            curve = probe_recall(list_of_row[sample], list_of_row[np.maximum(exact_i, 0)], valid, probes,
                                 own_lists[sample, :width] if width else None)
            main, extra, pairs = join_costs(offsets, probes, own_sorted[:, :width] if width else None)
            cost = main + EXTRA_COST * extra
            reached = np.flatnonzero(curve >= goal - 1e-12)
            if s.probes:
                p = min(s.probes, probes.shape[1])
            else:
                p = int(reached[np.argmin(cost[reached])]) + 1 if len(reached) else probes.shape[1]
            rank = (1, -cost[p - 1]) if curve[p - 1] >= goal - 1e-12 else (0, curve[p - 1])
            options.append((rank, width, p, curve, (main, extra, pairs)))
        best = max(options, key=lambda o: o[0])
        _, used_extra, chosen, curve, (main, extra, pairs) = best
        trace = [[p, round(float(curve[p - 1]), 6)] for p in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, chosen})
                 if p <= probes.shape[1]]
        probes = np.ascontiguousarray(probes[:, :chosen])
        comparisons, extra_pairs = int(main[chosen - 1] + extra[chosen - 1]), int(pairs[chosen - 1])
        tuned = float(curve[chosen - 1])
        if used_extra:
            write_numpy_atomic(own_sorted[:, :used_extra].astype(np.int32), join_path(data_dir, "own_lists.npy"))
        del own_sorted, own_lists
    write_sorted_by_list(vectors, list_of_row, order, offsets, join_path(data_dir, "vectors.npy"),
                         join_path(data_dir, "buckets"))
    write_numpy_atomic(order.astype(np.int64), join_path(data_dir, "rows.npy"))
    write_numpy_atomic(offsets, join_path(data_dir, "offsets.npy"))
    write_numpy_atomic(probes.astype(np.int32), join_path(data_dir, "probes.npy"))
    write_numpy_atomic(np.asarray(sample, dtype=np.int64), join_path(data_dir, "sample_rows.npy"))
    write_numpy_atomic(exact_i.astype(np.int64), join_path(data_dir, "sample_exact.npy"))
    info.update(lists=int(nlist), probes=int(chosen), probe_trace=trace, comparisons=comparisons,
                extra_lists=int(used_extra), extra_pairs=int(extra_pairs),
                comparisons_share=comparisons / max(1, n * n), list_rows_max=int(sizes.max()) if n else 0,
                tuned_recall=tuned)
    write_json_atomic(info, join_path(data_dir, INFO))  # last: its presence means `join/` is complete
    return info


