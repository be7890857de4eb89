"""exact_dedup: planted identical texts across shards are reduced to their smallest id; distinct texts
all survive; removal statistics and the cluster table match what was planted."""

from __future__ import annotations

import random

import polars as pl
import pytest

from stages.dedup.exact import find_exact_duplicates, text_digest
from stage_runs import run_stage, write_documents


def _random_text(rng: random.Random, words: int = 60) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(words))


def _run(tmp_path, docs, shards=3, **settings):
    inp = write_documents(docs, str(tmp_path / "in"), shards=shards)
    run = run_stage("exact_dedup", settings, inp, str(tmp_path / "out"), tasks=shards)
    return run.documents, run


def test_digest_ignores_outer_whitespace_only_when_asked():
    assert text_digest("  same text\n") == text_digest("same text")
    assert text_digest("  same text\n", strip=False) != text_digest("same text", strip=False)
    assert text_digest("same text") != text_digest("same  text")


def test_find_exact_duplicates_keeps_smallest_id():
    ids = ["d3", "d1", "d2", "d9"]
    h1 = [5, 5, 7, 5]
    h2 = [1, 1, 1, 2]  # d9 shares h1 but not h2: not a duplicate
    dups = find_exact_duplicates(h1, h2, ids)
    assert dups.to_dicts() == [{"id": "d3", "kept_id": "d1"}]


def test_planted_exact_duplicates_across_shards(tmp_path):
    rng = random.Random(7)
    originals = [{"id": f"doc{i:03d}", "text": _random_text(rng)} for i in range(40)]
    planted = {}  # copy id -> id that must survive
    docs = list(originals)
    for k, src in enumerate(rng.sample(originals, 10)):
        for c in range(rng.randint(1, 3)):
            cid = f"x_copy{k:02d}_{c}"
            docs.append({"id": cid, "text": "\n " + src["text"] + "  "})
            planted[cid] = src["id"]  # "x_copy..." > "doc..." in string order, so the original is kept
    rng.shuffle(docs)
    out, run = _run(tmp_path, docs)
    assert sorted(d["id"] for d in out) == sorted(d["id"] for d in originals)
    clusters = pl.read_parquet(run.data_dir("duplicates") + "/*.parquet")
    assert dict(zip(clusters["id"], clusters["kept_id"])) == planted
    stats = run.stats("apply")
    removed = {k.split("/")[-1]: v for k, v in stats.items() if "exact-dedup" in k}
    assert removed["documents_removed"] == len(planted)
    assert removed["dropped_exact_duplicate"] == len(planted)
    texts = {d["id"]: d["text"] for d in docs}
    assert removed["chars_removed"] == sum(len(texts[i]) for i in planted)
    # lines = non-blank lines: each planted copy is a blank line then one line of text
    assert removed["lines_removed"] == sum(sum(1 for l in texts[i].split("\n") if l.strip()) for i in planted)


def test_no_duplicates_keeps_everything(tmp_path):
    rng = random.Random(3)
    docs = [{"id": f"d{i}", "text": _random_text(rng)} for i in range(30)]
    out, run = _run(tmp_path, docs, shards=2)
    assert sorted(d["id"] for d in out) == sorted(d["id"] for d in docs)
    assert pl.read_parquet(run.data_dir("duplicates") + "/*.parquet").height == 0


@pytest.mark.parametrize("shards", [1, 4])
def test_survivors_do_not_depend_on_sharding(tmp_path, shards):
    docs = [{"id": f"z{i}", "text": "alpha beta"} for i in range(5)] + [{"id": "a0", "text": "alpha beta"}]
    out, _ = _run(tmp_path, docs, shards=shards)
    assert [d["id"] for d in out] == ["a0"]
