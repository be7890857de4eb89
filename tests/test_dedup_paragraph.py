"""paragraph_dedup: a repeated line survives only at its first occurrence in (id, position) order,
documents left under 20 characters are dropped, results do not depend on sharding, and a corpus
with no repeated line passes unchanged."""

from __future__ import annotations

import random

import polars as pl
import pytest

from stage_runs import run_stage, write_documents
from stages.dedup.paragraph import paragraph_pieces

BOILER = "Subscribe to our newsletter for weekly updates."
FOOTER = "Copyright 2024 Example Media, all rights reserved."


def _unique_line(rng: random.Random) -> str:
    return " ".join("".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(8))


def _run(tmp_path, docs, shards, **settings):
    inp = write_documents(docs, str(tmp_path / "in"), shards=shards)
    run = run_stage("paragraph_dedup", settings, inp, str(tmp_path / "out"), tasks=shards)
    return {d["id"]: d["text"] for d in run.documents}, run


def test_pieces_are_lines_with_their_newline():
    text = "first line\n\n  second line  \nlast"
    digests, starts, ends = paragraph_pieces(text)
    assert [text[s:e] for s, e in zip(starts, ends)] == ["first line\n", "  second line  \n", "last"]
    assert len({tuple(d) for d in digests}) == 3
    d2, _, _ = paragraph_pieces("second line\nfirst line")
    assert tuple(d2[0]) == tuple(digests[1]) and tuple(d2[1]) == tuple(digests[0])  # stripped before hashing


@pytest.mark.parametrize("shards", [1, 3])
def test_planted_paragraphs_keep_first_occurrence(tmp_path, shards):
    rng = random.Random(4)
    docs, expected = [], {}
    for i in range(12):
        own = [_unique_line(rng) for _ in range(2)]
        lines = [BOILER, own[0], "", own[1]] + ([FOOTER] if i % 2 else [])
        docs.append({"id": f"doc{i:02d}", "text": "\n".join(lines)})
        keep = lines if i == 0 else [own[0], "", own[1]]
        if i == 1:
            keep = keep + [FOOTER]  # doc01 is the first (smallest id) holding the footer
        expected[f"doc{i:02d}"] = keep
    docs.append({"id": "zz_only_boiler", "text": BOILER + "\n" + FOOTER + "\nok"})  # left with "ok": dropped
    rng.shuffle(docs)
    out, run = _run(tmp_path, docs, shards)
    assert set(out) == set(expected)
    for doc_id, lines in expected.items():
        assert [l for l in out[doc_id].split("\n") if l] == [l for l in lines if l]
    clusters = pl.read_parquet(run.data_dir("first") + "/clusters/*.parquet")
    assert set(clusters["kept_id"]) == {"doc00", "doc01"}
    assert clusters.filter(pl.col("id") == "doc05")["kept_id"].sort().to_list() == ["doc00", "doc01"]
    stats = {k.split("/")[-1]: v for k, v in run.stats("apply").items() if "paragraph" in k}
    assert stats["documents_removed"] == 1 and stats["dropped_paragraph_dedup_too_short"] == 1
    assert stats["lines_removed"] == 11 + 5 + 3  # boilerplate x11, footer x5, the dropped doc's 3 lines


def test_no_repeated_paragraphs_changes_nothing(tmp_path):
    rng = random.Random(9)
    docs = [{"id": f"d{i}", "text": "\n".join(_unique_line(rng) for _ in range(4))} for i in range(20)]
    out, _ = _run(tmp_path, docs, 2)
    assert out == {d["id"]: d["text"] for d in docs}
    files = list((tmp_path / "out").glob("paragraph_dedup.first/data/clusters/*.parquet"))
    assert sum(pl.read_parquet(f).height for f in files) == 0


def test_web_pages_every_line_survives_at_most_once(shared_data, tmp_path):
    import gzip
    import json

    with gzip.open(shared_data / "web_pages.jsonl.gz", "rt") as f:
        docs = [{"id": str(d["id"]), "text": d["text"]} for d in map(json.loads, f)]
    out, run = _run(tmp_path, docs, 2)
    seen: dict[str, str] = {}
    for doc_id, text in out.items():
        for line in filter(None, (l.strip() for l in text.split("\n"))):
            assert line not in seen, f"{line!r} kept in {seen[line]} and {doc_id}"
            seen[line] = doc_id
    # a line is gone only if it was repeated, or its document was dropped as too short
    dropped = {d["id"] for d in docs if d["text"].strip()} - set(out)  # the reader skips empty documents
    counts: dict[str, int] = {}
    for d in docs:
        for line in set(filter(None, (l.strip() for l in d["text"].split("\n")))):
            counts[line] = counts.get(line, 0) + 1
    for d in docs:
        if d["id"] in dropped:
            continue
        for line in filter(None, (l.strip() for l in d["text"].split("\n"))):
            assert line in seen or counts[line] > 1
    stats = {k.split("/")[-1]: v for k, v in run.stats("apply").items() if "paragraph" in k}
    assert stats["lines_removed"] > 0 and stats.get("documents_removed", 0) == len(dropped)
