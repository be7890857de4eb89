"""One WARC file spread over the tasks of its phase (`curate/warc_spans.py`): whatever the task count,
the same documents and the same counted drops (each named file@offset), no record read twice or lost
where a task's byte range ends inside a record, inside junk between records, or inside a truncated tail.

Files: the real samples of `../shared/data/warc/` (when present), the planted problems of
`test_crawl_warc_input.py`, and files built here with many records, junk and a cut end, so that the
range boundaries of 2..23 tasks fall everywhere.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_crawl_warc_input import PAGE, _raw_response, _writer_records, warc_folder  # noqa: F401 (fixture)

from curate.warc_input import CountingWarcReader
from curate.warc_spans import record_start_from

TASK_COUNTS = (1, 2, 3, 4, 5, 7, 11, 23)


def read_with_tasks(folder: Path, pattern: str, tasks: int, problems: Path) -> tuple[list, list, dict]:
    """(documents, problems, summed stats) of `tasks` readers sharing the files `pattern` names, the way
    the runner's tasks do (rank r of world size `tasks`)."""
    docs, stats = [], {}
    for rank in range(tasks):
        reader = CountingWarcReader(str(folder), glob_pattern=pattern, problems_dir=str(problems))
        docs += [(d.id, d.metadata["warc_file"], d.metadata["warc_offset"], d.text)
                 for d in reader.run(rank=rank, world_size=tasks)]
        for k, v in reader.stats.stats.items():
            stats[k] = stats.get(k, 0) + (v.total if hasattr(v, "total") else v)
    listed = [json.loads(line) for p in sorted(problems.glob("*.jsonl")) for line in p.open()]
    found = sorted((Path(p["file"]).name, p["offset"], p["reason"], p["dropped"], p["detail"]) for p in listed)
    stats.pop("input_files", None)  # datatrove's count of files each task opened: every task opens them
    return sorted(docs), found, {k: v for k, v in stats.items() if not isinstance(v, float)}


def assert_same_for_every_task_count(folder: Path, pattern: str, tmp_path: Path, counts=TASK_COUNTS) -> tuple:
    one = read_with_tasks(folder, pattern, 1, tmp_path / f"{pattern}-1")
    docs, problems, stats = one
    assert stats.get("warc_records", 0) == stats.get("documents", 0) + stats.get("dropped_input", 0)
    assert len({d[0] for d in docs}) == len(docs)  # no record read twice
    for tasks in counts[1:]:
        many = read_with_tasks(folder, pattern, tasks, tmp_path / f"{pattern}-{tasks}")
        assert many[0] == docs, f"{pattern}, {tasks} tasks: documents differ"
        assert many[1] == problems, f"{pattern}, {tasks} tasks: problems differ"
        assert many[2] == stats, f"{pattern}, {tasks} tasks: stats differ"
    return one


def test_real_warc_samples_same_for_every_task_count(shared_data, tmp_path):
    files = sorted((shared_data / "warc").glob("*.warc.gz"))
    if not files:
        pytest.skip("no WARC samples in the shared data")
    for path in files:
        docs, _, stats = assert_same_for_every_task_count(path.parent, path.name, tmp_path, (1, 3, 4))
        assert len(docs) > 5 and stats["warc_records"] > len(docs)
    # both files at once with more tasks than files: each task reads a span of each
    assert_same_for_every_task_count(files[0].parent, "*.warc.gz", tmp_path, (1, 3, 5))


def test_planted_problems_same_for_every_task_count(warc_folder, tmp_path):  # noqa: F811 (fixture)
    folder, _, _ = warc_folder
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) >= 9
    for name in names:  # one file at a time, so that every task count below shares it
        assert_same_for_every_task_count(folder, name, tmp_path, (1, 2, 3, 4))


def _pages(prefix: str, n: int) -> list[tuple]:
    recs = []
    for i in range(n):
        if i % 9 == 4:  # records that are no page sit between the pages
            recs.append(("request", f"http://{prefix}.org/{i}", b"", None, None))
        elif i % 9 == 7:
            recs.append(("response", f"http://{prefix}.org/{i}.pdf", b"%PDF " * (40 + i), "application/pdf", "200 OK"))
        else:  # pages of different lengths, so that record sizes vary
            words = " ".join(f"{prefix}{i}w{j}" for j in range(5 + 37 * (i % 5)))
            recs.append(("response", f"http://{prefix}.org/{i}", PAGE.format(words).encode(), "text/html", "200 OK"))
    return recs


def _build(path: Path, gzip_members: bool) -> tuple[bytes, list[tuple[int, int]], int]:
    """A file of 41 records with junk between some of them and a cut end; (data, junk byte ranges,
    where the cut record starts)."""
    import random

    rng = random.Random(0)  # a last page of words that do not compress: a tail the last task boundaries cut into
    tail = " ".join(f"{rng.getrandbits(40):x}" for _ in range(2000))
    # a page that quotes a WARC header (no record starts there), then the tail
    quoted = PAGE.format("a WARC file starts with\nWARC/1.0\r\nWARC-Type: response\r\n and more").encode()
    recs = _pages(path.stem.replace(".", ""), 40) + [
        ("response", "http://quote.org/", quoted, "text/html", "200 OK"),
        ("response", "http://tail.org/", PAGE.format(tail).encode(), "text/html", "200 OK")]
    offsets = _writer_records(path, recs, gzip_members=gzip_members)
    data = path.read_bytes()
    junk_at = {offsets[5]: b"JUNK THAT IS NO RECORD\r\n\r\n",
               offsets[17]: b"more junk\r\nover\r\nlines\r\n" * 30 + b"\r\n",
               offsets[30]: bytes(range(256)) * 8}
    out, junk, last = io.BytesIO(), [], 0
    for at in sorted(junk_at):
        out.write(data[last:at])
        junk.append((out.tell(), out.tell() + len(junk_at[at])))
        out.write(junk_at[at])
        last = at
    out.write(data[last:])
    last_start = offsets[-1] + sum(hi - lo for lo, hi in junk)
    full = out.getvalue()
    cut = full[: (last_start + len(full)) // 2]  # inside the last record
    path.write_bytes(cut)
    return cut, junk, last_start


@pytest.mark.parametrize("gzip_members", [True, False], ids=["warc.gz", "warc"])
def test_built_file_same_for_every_task_count(tmp_path, gzip_members):
    folder = tmp_path / "in"
    folder.mkdir()
    name = "many.warc.gz" if gzip_members else "many.warc"
    data, junk, cut_record = _build(folder / name, gzip_members)
    # the range boundaries of these task counts fall inside junk, inside records and inside the cut tail
    bounds = {len(data) * k // n for n in range(2, 24) for k in range(1, n)}
    assert any(lo < b < hi for b in bounds for lo, hi in junk)
    assert any(cut_record < b for b in bounds)
    assert any(b < lo < b + 2000 for b in bounds for lo, _ in junk)  # ... and just before junk
    docs, problems, stats = assert_same_for_every_task_count(folder, name, tmp_path, tuple(range(1, 24)))
    reasons = [p[2] for p in problems]
    assert "truncated_file" in reasons or "truncated_record" in reasons
    assert "corrupt_warc" in reasons or "bad_content_length" in reasons
    assert len(docs) >= 25 and stats["dropped_input_not_a_response"] >= 4


def test_record_start_search_skips_what_only_looks_like_a_record(tmp_path):
    path = tmp_path / "q.warc"
    quoted = PAGE.format("quoting\nWARC/1.0\r\nWARC-Type: response\r\n\r\nno length").encode()
    first = _raw_response("http://q.org/1", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + quoted)
    second = _raw_response("http://q.org/2", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>x</p>")
    path.write_bytes(first + second)
    with open(path, "rb") as f:
        assert record_start_from(f, 0, len(first + second), False) == 0
        assert record_start_from(f, 1, len(first + second), False) == len(first)
        assert record_start_from(f, len(first) + 1, len(first + second), False) is None


def test_zstd_warc_is_shared_record_by_record(tmp_path):
    import zstandard

    folder = tmp_path / "z"
    folder.mkdir()
    _writer_records(folder / "p.warc", _pages("z", 30), gzip_members=False)
    (folder / "p.warc.zst").write_bytes(zstandard.ZstdCompressor().compress((folder / "p.warc").read_bytes()))
    (folder / "p.warc").unlink()
    docs, _, _ = assert_same_for_every_task_count(folder, "p.warc.zst", tmp_path, (1, 2, 3, 7))
    assert len(docs) >= 20


def test_a_run_spreads_one_warc_file_over_every_task(shared_data, tmp_path):
    """Through the runner: one WARC file, three tasks: each task of the input pass reads documents, the
    later phase's tasks all have work, and the documents are those of a one-task run."""
    from helpers import read_docs

    from curate.api import run_recipe

    files = sorted((shared_data / "warc").glob("*.warc.gz"))
    if not files:
        pytest.skip("no WARC samples in the shared data")

    def run(tasks: int):
        return run_recipe({"name": "one_warc", "input": {"format": "warc", "paths": str(files[0])},
                           "output": str(tmp_path / f"t{tasks}"), "executor": {"tasks": tasks, "workers": 1},
                           "stages": ["normalize", "exact_dedup"]})

    three, one = run(3), run(1)
    per_task = []
    for rank in range(3):
        stats = json.loads((Path(three.output_dir) / "normalize" / "stats" / f"{rank:05d}.json").read_text())
        per_task.append(next(s for s in stats if "READER" in s["name"])["stats"]["documents"]["total"])
    assert len(per_task) == 3 and min(per_task) > 0, per_task
    same = [sorted(json.dumps(d, sort_keys=True) for d in read_docs(r.final_documents)) for r in (three, one)]
    assert same[0] == same[1] and len(same[0]) > 5
