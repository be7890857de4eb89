"""The order stage reads the kNN graph by rows (memory-mapped shards), never as a whole table: the
streamed reads and figures must equal the in-memory ones."""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pytest

from stages.neighbors.store import KnnTable, load_knn_graph, write_knn_shard
from stages.order.graph import RestrictedKnnTable, restrict_knn
from stages.order.partition import refine_partitions_by_graph
from stages.order.quality import knn_edge_fraction, knn_quality_streamed, top2_from_knn


def _graph_dir(tmp_path, n=1_000, k=7, rows_per_shard=300, seed=0):
    rng = np.random.default_rng(seed)
    nb = rng.integers(-1, n, (n, k))
    sims = np.sort(rng.random((n, k)).astype(np.float16), axis=1)[:, ::-1]
    d = str(tmp_path / "graph")
    os.makedirs(d)
    for shard, start in enumerate(range(0, n, rows_per_shard)):
        write_knn_shard(d, shard, start, nb[start : start + rows_per_shard], sims[start : start + rows_per_shard])
    pl.DataFrame({"id": [f"d{i}" for i in range(n)]}).write_parquet(os.path.join(d, "ids.parquet"))
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump({"n": n, "k": k}, f)
    return d, nb, sims


def test_knn_table_reads_any_rows_across_shards(tmp_path):
    d, nb, sims = _graph_dir(tmp_path)
    table = KnnTable(d)
    rows = np.random.default_rng(1).permutation(len(nb))[:437]
    got_nb, got_sims = table.rows(rows)
    assert np.array_equal(got_nb, nb[rows]) and np.array_equal(got_sims, sims[rows])
    whole = load_knn_graph(d)
    assert np.array_equal(np.concatenate([c[1] for c in table.chunks(128)]), whole.neighbors)
    assert isinstance(table.shards[0][1], np.memmap)  # mapped, not loaded
    with pytest.raises(IndexError):
        table.rows(np.array([len(nb)]))


def test_restricted_table_equals_restrict_knn(tmp_path):
    d, nb, sims = _graph_dir(tmp_path)
    keep = np.sort(np.random.default_rng(2).choice(len(nb), 600, replace=False))
    want_nb, want_s = restrict_knn(nb, sims, keep)
    view = RestrictedKnnTable(KnnTable(d), keep)
    got_nb, got_s = view.rows(0, len(keep))
    assert np.array_equal(got_nb, want_nb) and np.array_equal(got_s, want_s)
    assert np.array_equal(view[100:250], want_nb[100:250])
    labels = np.random.default_rng(3).integers(0, 4, len(keep))
    assert np.array_equal(refine_partitions_by_graph(labels, view, chunk=64),
                          refine_partitions_by_graph(labels, want_nb, chunk=64))


def test_streamed_quality_equals_in_memory(tmp_path):
    d, nb, sims = _graph_dir(tmp_path)
    keep = np.sort(np.random.default_rng(4).choice(len(nb), 700, replace=False))
    sub_nb, sub_s = restrict_knn(nb, sims, keep)
    # a path that follows kNN edges for a while, then random: a fraction strictly between 0 and 1
    order = np.random.default_rng(5).permutation(len(keep))
    s1, s2, frac = knn_quality_streamed(order, RestrictedKnnTable(KnnTable(d), keep).chunks(100))
    w1, w2 = top2_from_knn(sub_nb, sub_s)
    known1, known2 = np.isfinite(w1), np.isfinite(w2)
    assert np.array_equal(s1[known1], w1[known1]) and np.array_equal(s2[known2], w2[known2])
    # a value the restriction removed is bounded by the full list's smallest similarity, when full
    full = (nb[keep] >= 0).all(axis=1)
    floor = np.asarray(sims[keep], dtype=np.float64).min(axis=1)
    assert np.array_equal(s2[~known2 & full], floor[~known2 & full])
    assert np.isneginf(s2[~known2 & ~full]).all() and (~known2 & full).any()
    assert frac == pytest.approx(knn_edge_fraction(order, sub_nb))
    walk = [0]
    seen = {0}
    for _ in range(len(keep) - 1):
        nxt = next((int(v) for v in sub_nb[walk[-1]] if v >= 0 and v not in seen), None)
        if nxt is None:
            nxt = next(i for i in range(len(keep)) if i not in seen)
        walk.append(nxt)
        seen.add(nxt)
    walk = np.array(walk)
    _, _, walk_frac = knn_quality_streamed(walk, RestrictedKnnTable(KnnTable(d), keep).chunks(77))
    assert walk_frac == pytest.approx(knn_edge_fraction(walk, sub_nb)) and walk_frac > frac


def test_sharded_vectors_read_rows_across_embed_shards_without_concatenating(tmp_path):
    from stages.embed.store import ShardedVectors, load_embeddings, write_shard

    x = np.random.default_rng(6).standard_normal((1000, 8)).astype(np.float16)
    for rank, lo in enumerate(range(0, 1000, 300)):
        write_shard(str(tmp_path), rank, x[lo : lo + 300], [str(i) for i in range(lo, min(1000, lo + 300))], None,
                    {"model": "m", "dim": 8, "dtype": "float16", "normalized": True})
    _, v, _ = load_embeddings(str(tmp_path), mmap=True)
    assert isinstance(v, ShardedVectors) and v.shape == (1000, 8)
    rows = np.random.default_rng(7).permutation(1000)[:300]
    assert np.array_equal(v[rows], x[rows]) and np.array_equal(v[5:905], x[5:905])
    assert np.array_equal(v[-1], x[-1]) and np.array_equal(np.asarray(v), x)
    assert v[np.array([], dtype=np.int64)].shape == (0, 8)
    with pytest.raises(IndexError):
        v[np.array([1000])]
