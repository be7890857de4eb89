"""substring_dedup: a repeated 50-character (or 50-token) span is cut from every document but the
first in (id, offset) order, overlapping cuts merge, short leftovers are dropped, and text without
repeated windows is untouched."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stage_runs import run_stage, write_documents
from stages.dedup.spans import cut_spans
from stages.dedup.substring import substring_pieces

SHARED = "The quick brown fox jumps over the lazy dog while the cat watches from a sunny windowsill."


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice("klmnopqrstu") for _ in range(5)) for _ in range(n))


def _run(tmp_path, docs, shards=2, **settings):
    inp = write_documents(docs, str(tmp_path / "in"), shards=shards)
    run = run_stage("substring_dedup", settings, inp, str(tmp_path / "out"), tasks=shards)
    out = run.documents
    return {d["id"]: d["text"] for d in out}, run


def test_cut_spans_merges_overlaps():
    text = "0123456789abcdef"
    kept, removed = cut_spans(text, np.array([2, 4, 12]), np.array([6, 8, 14]))
    assert kept == "01" + "89ab" + "ef" and removed == ["234567", "cd"]


def test_windows_cover_every_offset_and_tokens_map_to_char_spans():
    h, s, e = substring_pieces("x" * 60, 50)
    assert len(h) == 11 and len(set(h[:, 0].tolist())) == 1 and (e - s == 50).all()
    assert len(substring_pieces("short text", 50)[0]) == 0
    text = "aa bb  cc dd"
    h, s, e = substring_pieces(text, 2, unit="token")
    assert [text[a:b] for a, b in zip(s, e)] == ["aa bb", "bb  cc", "cc dd"]


@pytest.mark.parametrize("shards", [1, 3])
def test_planted_substring_is_cut_after_first_occurrence(tmp_path, shards):
    rng = random.Random(1)
    docs, heads = [], {}
    for i in range(8):
        head, tail = _words(rng, 10), _words(rng, 10)
        heads[f"d{i}"] = (head, tail)
        docs.append({"id": f"d{i}", "text": f"{head} {SHARED} {tail}"})
    docs.append({"id": "e_copy", "text": SHARED + " tiny"})  # left with under 20 characters: dropped
    out, run = _run(tmp_path, docs, shards)
    assert set(out) == {f"d{i}" for i in range(8)}
    assert SHARED in out["d0"] and out["d0"] == docs[0]["text"]
    for i in range(1, 8):
        head, tail = heads[f"d{i}"]
        assert SHARED not in out[f"d{i}"]
        assert out[f"d{i}"].startswith(head[:-1]) and out[f"d{i}"].endswith(tail[1:])
        assert len(out[f"d{i}"]) < len(docs[i]["text"]) - len(SHARED) + 5
    stats = {k.split("/")[-1]: v for k, v in run.stats("apply").items() if "substring dedup" in k}
    assert stats["documents_removed"] == 1 and stats["documents_modified"] == 8
    assert stats["chars_removed"] >= 7 * len(SHARED) + len(docs[-1]["text"])


def test_token_windows(tmp_path):
    rng = random.Random(2)
    shared = _words(rng, 12)
    docs = [{"id": f"t{i}", "text": f"{_words(rng, 6)} {shared} {_words(rng, 6)}"} for i in range(4)]
    out, _ = _run(tmp_path, docs, unit="token", window=10)
    assert shared in out["t0"] and all(shared not in out[f"t{i}"] for i in range(1, 4))


def test_no_repeated_windows_changes_nothing(tmp_path):
    rng = random.Random(3)
    docs = [{"id": f"n{i}", "text": _words(rng, 40)} for i in range(15)]
    out, _ = _run(tmp_path, docs)
    assert out == {d["id"]: d["text"] for d in docs}
