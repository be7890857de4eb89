"""Bad input: every planted problem is counted with its file and line, listed by `curate report`, and
good records come out byte-equal; `input.strict: true` stops at the first problem instead.

Decisions these tests pin down (see curate/readers.py):
- duplicate ids: the later record is kept under `<id>@<file>:<line>` (original in metadata.original_id),
  listed as `duplicate_id`, not dropped;
- whitespace-only or empty text: dropped as `empty_text`;
- a 50 MB document: kept, read line by line (peak memory bounded by a small multiple of its size);
- parquet without a string text column: the file is skipped as `wrong_schema`, the message names the
  columns it has and the one it needs, and its rows count as dropped;
- one recipe has one input format: a parquet file in a jsonl input is one `not_jsonl` problem.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import zlib
from pathlib import Path

import polars as pl
import pytest

from curate.api import run_recipe
from curate.report import build_report
from curate.runner import RunError
from helpers import curate_cli, curate_cli_peak, read_docs, write_recipe

BIG_CHARS = 50 * 2**20
WORDS = "data model train corpus token window order graph cluster search index vector".split()


def _text(rng: random.Random, tag: str) -> str:
    # already NFKC, one space between words, no trailing space: `normalize` leaves it as it is
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + f" café {tag}."


def _line(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


@pytest.fixture(scope="module")
def bad_jsonl(tmp_path_factory) -> tuple[Path, dict, list[tuple[str, int | None, str]], dict]:
    """A folder of jsonl inputs with planted problems.

    Returns (folder, {id: text} of every good record expected in the output, planted problems as
    (file name, line, reason), expected output ids renamed from duplicates {new id: original id}).
    """
    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("bad_input") / "data"
    folder.mkdir()
    good: dict[str, str] = {}
    planted: list[tuple[str, int | None, str]] = []
    renamed: dict[str, str] = {}

    def ok(doc_id: str) -> dict:
        good[doc_id] = _text(rng, doc_id)
        return {"id": doc_id, "text": good[doc_id], "source": "test"}

    a = [
        _line(ok("a1")),                                            # 1
        b"{not json\n",                                             # 2
        _line({"id": "nt", "body": "no text field"}),               # 3
        _line({"id": "num", "text": 42}),                           # 4
        _line({"id": "e", "text": ""}),                             # 5
        _line({"id": "ws", "text": " \t\n  "}),                     # 6
        _line([1, 2]),                                              # 7
        b'{"id": "bad8", "text": "caf\xe9 latin-1"}\n',             # 8
        _line(ok("a2")),                                            # 9
        _line({"id": "a1", "text": "same id as line one, other text"}),  # 10
        _line({"id": {"x": 1}, "text": "an id that is a mapping"}),  # 11
        b"\n",                                                      # 12: blank, skipped silently
        _line({"text": "a record without an id"}),                  # 13
        _line({"id": "nulltext", "text": None}),                    # 14
        _line({"id": 77, "text": "a numeric id becomes a string"}),  # 15
    ]
    planted += [("a.jsonl", 2, "malformed_json"), ("a.jsonl", 3, "missing_text"), ("a.jsonl", 4, "non_string_text"),
                ("a.jsonl", 5, "empty_text"), ("a.jsonl", 6, "empty_text"), ("a.jsonl", 7, "not_an_object"),
                ("a.jsonl", 8, "invalid_utf8"), ("a.jsonl", 10, "duplicate_id"), ("a.jsonl", 11, "bad_id"),
                ("a.jsonl", 14, "missing_text")]
    good["a1@a.jsonl:10"] = "same id as line one, other text"
    renamed["a1@a.jsonl:10"] = "a1"
    good["a.jsonl/12"] = "a record without an id"
    good["77"] = "a numeric id becomes a string"
    (folder / "a.jsonl").write_bytes(b"".join(a))

    # a 50 MB document between two small ones
    big_text = (" ".join(WORDS) + " ") * (BIG_CHARS // (len(" ".join(WORDS)) + 1)) + "end"
    good["big"] = big_text
    with open(folder / "b_big.jsonl", "wb") as f:
        f.write(_line(ok("b1")) + _line({"id": "big", "text": big_text}) + _line(ok("b2")))

    # the same id as in a.jsonl, in another file read by the same task
    (folder / "c_dup.jsonl").write_bytes(_line({"id": "a2", "text": "a second a2 from another file"}))
    planted.append(("c_dup.jsonl", 1, "duplicate_id"))
    good["a2@c_dup.jsonl:1"] = "a second a2 from another file"
    renamed["a2@c_dup.jsonl:1"] = "a2"

    (folder / "d_empty.jsonl").write_bytes(b"")
    planted.append(("d_empty.jsonl", None, "empty_file"))

    # gzip cut in the middle: the complete lines before the cut are kept, the rest is one problem
    lines = [_line(ok(f"g{i}")) for i in range(300)]
    payload = gzip.compress(b"".join(lines), mtime=0)
    (folder / "e_cut.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    # everything zlib can decompress from the cut file: the reader must lose no more than that
    readable = zlib.decompressobj(wbits=31).decompress(payload[: len(payload) // 2])
    complete = readable.count(b"\n")
    for i in range(complete, 300):
        del good[f"g{i}"]
    planted.append(("e_cut.jsonl.gz", complete + 1, "truncated_file"))

    (folder / "f_fake.jsonl.gz").write_bytes(_line({"id": "plain", "text": "plain text named .gz"}))
    planted.append(("f_fake.jsonl.gz", 1, "unreadable_file"))

    junk = bytearray(random.Random(3).randbytes(20000))
    junk[100] = 0
    (folder / "g_junk.jsonl").write_bytes(bytes(junk))
    planted.append(("g_junk.jsonl", 1, "not_jsonl"))

    pl.DataFrame({"id": ["p1"], "text": ["a parquet record in a jsonl input"]}).write_parquet(folder / "h_stray.parquet")
    planted.append(("h_stray.parquet", 1, "not_jsonl"))
    return folder, good, planted, renamed


def _recipe(data: Path, out: Path, **input_extra) -> dict:
    return {"name": "bad_input", "input": {"format": "jsonl", "paths": str(data), **input_extra},
            "output": str(out), "executor": {"tasks": 1, "workers": 1},
            "stages": ["normalize", "exact_dedup"]}


def test_every_planted_problem_is_counted_listed_and_good_records_are_untouched(tmp_path, bad_jsonl):
    folder, good, planted, renamed = bad_jsonl
    recipe = write_recipe(tmp_path / "bad.yaml", _recipe(folder, tmp_path / "out"))
    run, peak = curate_cli_peak("run", str(recipe), "--no-report")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr

    # good records: all there, text byte-equal, nothing else
    out_dir = tmp_path / "out"
    docs = {d["id"]: d for d in read_docs(out_dir / "exact_dedup.apply" / "documents")}
    assert set(docs) == set(good)
    for doc_id, text in good.items():
        assert docs[doc_id]["text"].encode() == text.encode(), doc_id
    for new_id, old_id in renamed.items():
        assert docs[new_id]["metadata"]["original_id"] == old_id
    assert docs["a1"]["metadata"]["source"] == "test"
    # the 50 MB document was streamed, not multiplied: the whole run's peak stays a few times its size
    assert 0 < peak < 6 * BIG_CHARS + 400 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"

    # stats: each reason counted as often as it was planted; duplicates renamed, not dropped
    rep = build_report(str(out_dir))
    reader = rep.phases[0].steps[0].counters
    expected: dict[str, int] = {}
    for _, _, reason in planted:
        expected[reason] = expected.get(reason, 0) + 1
    for reason, n in expected.items():
        if reason in ("duplicate_id", "empty_file"):
            assert f"dropped_input_{reason}" not in reader
        else:
            assert reader[f"dropped_input_{reason}"] == n, reason
    assert reader["input_duplicate_id_renamed"] == expected["duplicate_id"]
    dropped = sum(n for r, n in expected.items() if r not in ("duplicate_id", "empty_file"))
    assert reader["dropped_input"] == dropped
    row = next(r for r in rep.stage_rows() if r.stage == "input")
    assert (row.docs_in, row.docs_out) == (len(good) + dropped, len(good))

    # problems files: exactly the planted ones, each with file and line
    n, problems = rep.problems()
    got = sorted((Path(p["file"]).name, p["line"], p["reason"]) for p in problems)
    assert n == len(planted) and got == sorted(planted, key=lambda t: (t[0], t[1] or 0, t[2]))
    assert all(Path(p["file"]).parent == folder for p in problems)

    # `curate report`: the terminal and the HTML list every planted problem as file:line
    shown = curate_cli("report", str(out_dir))
    assert shown.returncode == 0, shown.stderr
    html = (out_dir / "report.html").read_text()
    for name, line, reason in planted:
        where = str(folder / name) + (f":{line}" if line is not None else "")
        assert f"{where}: {reason}" in shown.stdout, (where, reason)
        assert f"<td>{where}</td><td>{reason}</td>" in html, (where, reason)
    assert f"{len(planted)} input problems" in shown.stdout
    assert f"Input problems ({len(planted)})" in html


def test_strict_mode_stops_at_the_first_problem_with_file_and_line(tmp_path, bad_jsonl):
    folder = bad_jsonl[0]
    recipe = write_recipe(tmp_path / "strict.yaml", _recipe(folder, tmp_path / "out"))
    res = curate_cli("run", str(recipe), "input.strict=true", "--no-report")
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]  # the CLI's one-line error (see test_reliability_faults for the log)
    assert last.startswith("error: phase 'normalize' failed (BadInputError: ")
    assert f"{folder / 'a.jsonl'}:2: malformed json" in last
    assert not list((tmp_path / "out" / "normalize").glob("documents/*.jsonl.gz"))  # nothing published


def test_duplicate_id_is_fatal_in_strict_mode(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(_line({"id": "x", "text": "one"}) + _line({"id": "x", "text": "two"}))
    with pytest.raises(RunError, match=r"d\.jsonl:2: duplicate id"):
        run_recipe(_recipe(tmp_path / "d.jsonl", tmp_path / "out", strict=True))


@pytest.fixture(scope="module")
def bad_parquet(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("bad_parquet") / "pq"
    folder.mkdir()
    pl.DataFrame({"id": ["p1", "p2", "p3", "p4"], "text": ["first parquet text", None, "   ", "fourth text"],
                  "lang": ["en", "en", "en", "de"]}).write_parquet(folder / "a_good.parquet")
    pl.DataFrame({"id": ["n1", "n2"], "body": ["text under", "another key"]}).write_parquet(folder / "b_no_text.parquet")
    pl.DataFrame({"id": ["i1", "i2", "i3"], "text": [1, 2, 3]}).write_parquet(folder / "c_int_text.parquet")
    (folder / "d_junk.parquet").write_bytes(random.Random(1).randbytes(5000))
    return folder, {"p1": "first parquet text", "p4": "fourth text"}


def test_parquet_with_a_wrong_schema_is_named_counted_and_skipped(tmp_path, bad_parquet):
    folder, good = bad_parquet
    rd = _recipe(folder, tmp_path / "out")
    rd["input"]["format"] = "parquet"
    res = run_recipe(rd)
    docs = {d["id"]: d for d in read_docs(res.final_documents)}
    assert {k: d["text"] for k, d in docs.items()} == good
    assert docs["p4"]["metadata"]["lang"] == "de"
    rep = build_report(res.output_dir)
    n, problems = rep.problems()
    got = {(Path(p["file"]).name, p["line"], p["reason"]): p for p in problems}
    assert set(got) == {("a_good.parquet", 2, "missing_text"), ("a_good.parquet", 3, "empty_text"),
                        ("b_no_text.parquet", None, "wrong_schema"), ("c_int_text.parquet", None, "wrong_schema"),
                        ("d_junk.parquet", None, "unreadable_file")}
    no_text = got[("b_no_text.parquet", None, "wrong_schema")]
    assert "expects a string column 'text', which has no such column" in no_text["detail"]
    assert "columns: id (large_string), body (large_string)" in no_text["detail"]  # polars writes large_string
    assert "which is int64" in got[("c_int_text.parquet", None, "wrong_schema")]["detail"]
    reader = rep.phases[0].steps[0].counters
    assert reader["dropped_input_wrong_schema"] == 5  # every row of both files
    assert reader["dropped_input"] == 5 + 1 + 1 + 1
    html = Path(rep.write_html()).read_text()
    assert f"<td>{folder / 'b_no_text.parquet'}</td><td>wrong_schema</td>" in html


def test_parquet_wrong_schema_is_fatal_in_strict_mode(tmp_path, bad_parquet):
    folder, _ = bad_parquet
    rd = _recipe(folder / "b_no_text.parquet", tmp_path / "out", strict=True)
    rd["input"]["format"] = "parquet"
    with pytest.raises(RunError) as e:
        run_recipe(rd)
    msg = str(e.value)
    assert f"{folder / 'b_no_text.parquet'}: wrong schema" in msg and "columns: id (large_string), body (large_string)" in msg


def test_a_killed_or_failed_task_publishes_no_problems_file(tmp_path):
    """The problems list is written as `.partial` and renamed only when the task read everything."""
    from curate.readers import CountingJsonlReader

    (tmp_path / "x.jsonl").write_bytes(b"{bad\n" + _line({"id": "a", "text": "fine"}) + b"{bad again\n")
    reader = CountingJsonlReader(str(tmp_path), glob_pattern="x.jsonl", problems_dir=str(tmp_path / "problems"))
    stream = reader.run(rank=0, world_size=1)
    assert next(stream).id == "a"
    stream.close()  # the task stops half-way (a failing later step)
    assert os.listdir(tmp_path / "problems") == []
    reader = CountingJsonlReader(str(tmp_path), glob_pattern="x.jsonl", problems_dir=str(tmp_path / "problems"))
    assert [d.id for d in reader.run(rank=0, world_size=1)] == ["a"]
    assert os.listdir(tmp_path / "problems") == ["00000.jsonl"]
    assert [json.loads(x)["line"] for x in (tmp_path / "problems" / "00000.jsonl").read_text().splitlines()] == [1, 3]
