"""Packing puts every token of every document in exactly one window (concat), never splits a document
that fits (whole), and writes datatrove's tokenized format that datatrove's own reader loads."""

from __future__ import annotations

import numpy as np
import pytest

from stages.pack.packing import pack_concat, pack_whole, random_windows_like, window_coherence


def docs(seed=0, n=40, max_len=90):
    rng = np.random.default_rng(seed)
    toks = [rng.integers(5, 1000, rng.integers(0, max_len)).tolist() for _ in range(n)]
    return toks, [f"d{i}" for i in range(n)]


def rebuild(windows, toks_by_id, sep):
    """Reassemble each document from the pieces recorded in the windows."""
    got = {}
    for w in windows:
        bounds = list(w.doc_offsets) + [len(w.tokens) - w.pad]
        for d, lo, hi, start in zip(w.doc_ids, bounds[:-1], bounds[1:], w.doc_token_starts):
            got.setdefault(d, []).append((start, w.tokens[lo:hi].tolist()))
    out = {}
    for d, parts in got.items():
        parts.sort()
        flat = [t for _, p in parts for t in p]
        assert [s for s, _ in parts] == list(np.cumsum([0] + [len(p) for _, p in parts[:-1]])), d
        out[d] = flat
    return out


@pytest.mark.parametrize("length", [16, 64, 1000])
def test_concat_writes_every_token_exactly_once(length):
    toks, ids = docs()
    sep, pad = 2, 0
    windows, stats = pack_concat(toks, ids, length, sep, pad)
    assert all(len(w.tokens) == length for w in windows)
    total = sum(len(t) + 1 for t in toks)
    assert sum(length - w.pad for w in windows) == total == stats["tokens"]
    assert stats["pad_tokens"] == len(windows) * length - total < length  # only the last window pads
    rebuilt = rebuild(windows, dict(zip(ids, toks)), sep)
    for d, t in zip(ids, toks):
        assert rebuilt[d] == t + [sep]
    # path order is kept: the first document of each window follows the last of the previous one
    seen = [d for w in windows for d in w.doc_ids]
    dedup = [d for i, d in enumerate(seen) if i == 0 or seen[i - 1] != d]
    assert dedup == ids


def test_whole_never_splits_a_document_that_fits_and_splits_or_drops_long_ones():
    toks, ids = docs(1, n=60, max_len=40)
    toks[7] = list(range(5, 200))  # longer than a window
    windows, stats = pack_whole(toks, ids, 64, 2, 0, too_long="split")
    rebuilt = rebuild(windows, dict(zip(ids, toks)), 2)
    for d, t in zip(ids, toks):
        assert rebuilt[d] == t + [2]
    for w in windows:
        for d in w.doc_ids:
            if d != "d7":
                assert sum(1 for x in windows if d in x.doc_ids) == 1
    assert stats["split_documents"] == 1
    dropped, st2 = pack_whole(toks, ids, 64, 2, 0, too_long="drop")
    assert st2["dropped_too_long"] == 1 and all("d7" not in w.doc_ids for w in dropped)


def test_no_separator_and_empty_documents():
    toks, ids = [[1, 2, 3], [], [4, 5]], ["a", "b", "c"]
    windows, stats = pack_concat(toks, ids, 4, None, 0)
    assert [w.tokens.tolist() for w in windows] == [[1, 2, 3, 4], [5, 0, 0, 0]]
    assert stats["tokens"] == 5 and "b" not in [d for w in windows for d in w.doc_ids]


def test_coherence_of_related_windows_beats_random():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, 16))
    rows = np.repeat(np.arange(10), 8)
    v = centers[rows] + 0.3 * rng.standard_normal((80, 16))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    windows = [np.arange(i * 8, i * 8 + 8) for i in range(10)]
    coh = window_coherence(v, windows)
    rand = window_coherence(v, random_windows_like(windows, rng))
    assert coh > 0.8 and rand < 0.5 * coh


def test_datatrove_reader_loads_the_windows(tmp_path):
    torch = pytest.importorskip("torch")
    from datatrove.utils.dataset import DatatroveFileDataset

    from stages.pack.writers import write_datatrove_windows

    toks, ids = docs(2)
    windows, _ = pack_concat(toks, ids, 32, 2, 0)
    path = write_datatrove_windows(windows, str(tmp_path), 0, token_size=2, tokenizer_name="t")
    ds = DatatroveFileDataset(path, seq_len=31, token_size=2, return_positions=True)
    assert len(ds) == len(windows)
    for i, w in enumerate(windows):
        item = ds[i]
        assert item["input_ids"].tolist() == w.tokens.tolist()
        pos = item["positions"].tolist()
        for off in w.doc_offsets[1:]:
            assert pos[off] == 0  # positions restart where a document starts
    assert isinstance(item["input_ids"], torch.Tensor)


def _pack_in_steps(tmp_path, shuffle: bool, tasks: int = 3, n_docs: int = 120):
    """The `slices` and `windows` phases' steps run rank by rank on a small order and store."""
    import polars as pl

    from stages.pack.stage import PackSettings, PackShuffleWindows, PackSlices
    from stages.pack.writers import read_window_table

    rng = np.random.default_rng(5)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    ids = [f"d{i:04d}" for i in range(n_docs)]
    texts = [" ".join(rng.choice(words, rng.integers(5, 40))) for _ in ids]
    order, store = tmp_path / "order.parquet", tmp_path / "store"
    store.mkdir(parents=True)
    pl.DataFrame({"id": ids, "position": np.arange(n_docs)}).write_parquet(order)
    pl.DataFrame({"id": ids, "text": texts}).write_parquet(store / "00000.parquet")
    settings = PackSettings(context_length=32, shuffle_windows=shuffle, formats=["parquet"])
    slices, windows = tmp_path / "slices", tmp_path / "windows"
    for rank in range(tasks):
        list(PackSlices(str(order), str(store), str(slices), settings, seed=1, buckets=tasks).run([], rank, tasks))
    for rank in range(tasks):
        list(PackShuffleWindows(str(slices), str(windows), settings, seed=1).run([], rank, tasks))
    per_slice = {r: read_window_table(str(p)) for r in range(tasks)
                 for p in sorted(slices.glob(f"buckets/*/{r:05d}.parquet"))}
    out = [read_window_table(str(p)) for p in sorted(windows.glob("*.parquet"))]
    position = {d: i for i, d in enumerate(ids)}
    # each window's place in the path: the position of its first document piece
    return [[position[w.doc_ids[0]] for w in f] for f in out], per_slice


def test_windows_are_shuffled_across_slices_and_unshuffled_keep_the_path(tmp_path):
    shuffled, _ = _pack_in_steps(tmp_path / "on", shuffle=True)
    plain, _ = _pack_in_steps(tmp_path / "off", shuffle=False)
    flat_plain = [p for f in plain for p in f]
    # unshuffled: the files, read in order, follow the path
    assert flat_plain == sorted(flat_plain) and len(plain) == 3
    # shuffled: the same windows, and every output file mixes windows from every third of the path
    assert sorted(p for f in shuffled for p in f) == flat_plain
    cut = [flat_plain[len(flat_plain) * k // 3] for k in (1, 2)]
    for f in shuffled:
        thirds = {int(p >= cut[0]) + int(p >= cut[1]) for p in f}
        assert thirds == {0, 1, 2}, f
    flat = [p for f in shuffled for p in f]
    assert flat != sorted(flat)
    # seeded: the same seed gives the same files
    again, _ = _pack_in_steps(tmp_path / "again", shuffle=True)
    assert again == shuffled
