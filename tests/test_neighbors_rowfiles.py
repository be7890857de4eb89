"""The join's corpus rewrite by list (`rowfiles.write_sorted_by_list`, an external bucket sort) and its
windowed gather give exactly what the in-memory numpy gather gives, over memory-mapped multi-shard
corpora, with buckets of several lists, a list bigger than a bucket, and empty lists."""

from __future__ import annotations

import numpy as np

from stages.embed.store import load_embeddings
from stages.neighbors import rowfiles
from tests.test_neighbors_graph import _embed_dir


def _corpus(tmp_path, n=5000, d=8, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16)


def test_sorted_by_list_matches_numpy_with_small_big_and_empty_lists(tmp_path, monkeypatch):
    x = _corpus(tmp_path)
    n = len(x)
    rng = np.random.default_rng(5)
    nlist = 60
    list_of_row = rng.integers(0, nlist, n)
    list_of_row[rng.random(n) < 0.4] = 17  # one list far bigger than a bucket
    list_of_row[list_of_row == 30] = 31  # an empty list
    order = np.argsort(list_of_row, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(list_of_row, minlength=nlist))])
    monkeypatch.setattr(rowfiles, "WINDOW", 333)  # windows and the big list's copy cut mid-way
    embed_dir = _embed_dir(tmp_path, x.astype(np.float32), shards=3, dtype="float16")
    _, vectors, _ = load_embeddings(embed_dir, mmap=True, check=False)
    assert len(getattr(vectors, "parts", [vectors])) > 1
    edges = rowfiles.bucket_edges(offsets, bucket_rows=400)
    sizes = np.diff(offsets[edges])
    assert len(edges) > 5 and sizes.max() > 1500 and (np.diff(edges) > 1).any()
    out = str(tmp_path / "sorted.npy")
    rowfiles.write_sorted_by_list(vectors, list_of_row, order, offsets, out, str(tmp_path / "work"), bucket_rows=400)
    got = np.load(out)
    assert got.dtype == np.float16 and got.shape == x.shape
    np.testing.assert_array_equal(got, x[order])
    assert not (tmp_path / "work").exists()


def test_gather_rows_reads_windows_and_matches_fancy_indexing(tmp_path):
    x = _corpus(tmp_path, n=3000)
    embed_dir = _embed_dir(tmp_path, x.astype(np.float32), shards=3, dtype="float16")
    _, vectors, _ = load_embeddings(embed_dir, mmap=True, check=False)
    rows = np.sort(np.random.default_rng(1).choice(len(x), 700, replace=False))
    got = rowfiles.gather_rows(vectors, rows, dtype=np.float32, window=256)  # rows of one window and across shard ends
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x[rows].astype(np.float32))
    assert rowfiles.gather_rows(vectors, rows[:0]).shape == (0, x.shape[1])


def test_read_rows_and_row_subset_match_numpy_for_any_rows(tmp_path):
    x = _corpus(tmp_path, n=2000)
    embed_dir = _embed_dir(tmp_path, x.astype(np.float32), shards=3, dtype="float16")
    _, vectors, _ = load_embeddings(embed_dir, mmap=True, check=False)
    rows = np.random.default_rng(2).integers(0, len(x), 900)  # unsorted, repeated
    np.testing.assert_array_equal(rowfiles.read_rows(vectors, rows), x[rows])
    subset_rows = np.sort(np.random.default_rng(3).choice(len(x), 1200, replace=False))
    sub = rowfiles.RowSubset(vectors, subset_rows)
    assert sub.shape == (1200, x.shape[1]) and len(sub) == 1200
    np.testing.assert_array_equal(sub[100:400], x[subset_rows[100:400]])
    np.testing.assert_array_equal(sub[np.array([5, 3, 5])], x[subset_rows[[5, 3, 5]]])
    np.testing.assert_array_equal(sub[7], x[subset_rows[7]])


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_scattered_reads_of_a_mapped_corpus_do_not_keep_its_pages(tmp_path):
    """A fancy index of rows spread over a memory map keeps (nearly) the whole file resident; the
    windowed read keeps at most a window. 96 MB file, 12,000 rows spread over it."""
    n, d = 125_000, 384
    path = str(tmp_path / "x.npy")
    np.save(path, np.ones((n, d), dtype=np.float16))
    rows = np.sort(np.random.default_rng(0).choice(n, 12_000, replace=False))
    size_kib = n * d * 2 // 1024

    plain = np.load(path, mmap_mode="r")
    before = _rss_file_kib()
    assert plain[rows].shape == (len(rows), d)
    plain_growth = _rss_file_kib() - before
    rowfiles.drop_pages(plain)
    del plain

    mapped = np.load(path, mmap_mode="r")
    before = _rss_file_kib()
    assert rowfiles.read_rows(mapped, rows[::-1]).shape == (len(rows), d)
    windowed_growth = _rss_file_kib() - before
    assert plain_growth > size_kib // 2  # the effect being guarded against is real here
    assert windowed_growth < size_kib // 4, (windowed_growth, plain_growth, size_kib)
