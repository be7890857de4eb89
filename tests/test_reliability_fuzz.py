"""Fuzz: random mixes of good and hostile records and files, read by the counting readers, written by the
real document writer, and (a subset) run through the pass-through and a cleaning recipe.

Every generated corpus is checked against an oracle written here from the documented rules
(docs/input_problems.md), not from the reader's code: no crash, no hang (each corpus runs under an
alarm), each file's balance (records in it = documents out + counted drops) with the records the
generator planted, every good record out with its exact text and the id the rules give it, ids unique.

hypothesis generates the corpora (derandomized: CI sees the same ones every run; a failure shrinks to
a small corpus). `CURATE_FUZZ_EXAMPLES` scales the reader-layer run (default 300 corpora; `CURATE_FUZZ_RECIPE_EXAMPLES`, default 20, the recipe runs), and the
figures (corpora, records, crashes, hangs, uncounted losses) are printed as one JSON line and written
to `$CURATE_FUZZ_FIGURES` when that is set:

    CURATE_FUZZ_FIGURES=/tmp/fuzz.json pytest -q -m slow tests/test_reliability_fuzz.py -s
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")  # in the `test` extra; a bare install skips with a reason
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CURATE_FUZZ_EXAMPLES", "300"))
RECIPE_EXAMPLES = int(os.environ.get("CURATE_FUZZ_RECIPE_EXAMPLES", "20"))
CORPUS_TIMEOUT_S = 60  # a corpus of a few hundred records reads in well under a second
MAX_NESTING = 100  # curate/record_rules.py (the documented limit)
FIGURES = {"corpora": 0, "files": 0, "records": 0, "documents": 0, "dropped": 0, "crashes": 0, "hangs": 0,
           "uncounted_losses": 0, "recipe_runs": 0}


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang(f"no result after {CORPUS_TIMEOUT_S}s")


# ---------------------------------------------------------------------------------------------------
# what a record is, and what the documented rules say becomes of it

texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(lambda s: s.strip())
json_scalars = (st.none() | st.booleans() | st.integers(-(2**100), 2**100)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                           max_size=3), max_leaves=6)
ids = st.one_of(st.none(), st.just("missing"), texts, st.integers(-1000, 1000), st.integers(2**64, 2**90),
                st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.sampled_from(["", "  "]),
                st.just(["a"]), st.just({"k": 1}))


@dataclass
class Record:
    """One line of a jsonl file: its bytes, and what the rules say comes out of it."""

    raw: bytes  # without the line end
    text: str | None = None  # a good record: its text
    id_rule: tuple = ()  # ("keep", id) | ("positional",) for good records
    ascii_safe: bool = True  # can be written in UTF-16 (no raw invalid bytes)


def _nested(levels: int):
    value = 0
    for _ in range(levels):
        value = [value]
    return value


@st.composite
def records(draw) -> Record:
    kind = draw(st.sampled_from(["good"] * 8 + ["malformed", "not_object", "no_text", "bad_text", "blank_text",
                                                 "invalid_utf8", "nul", "deep", "bad_id"]))
    if kind == "malformed":
        return Record(draw(st.sampled_from([b"{", b'{"text": "open', b"{not json}", b'{"text": 1,}', b"]"])))
    if kind == "not_object":
        return Record(json.dumps(draw(st.lists(json_scalars, max_size=3) | json_scalars.filter(lambda v: v is not None
                                                                                              ))).encode())
    if kind == "no_text":
        return Record(json.dumps(draw(st.sampled_from([{"id": "x"}, {"text": None}, {"body": "t"}]))).encode())
    if kind == "bad_text":
        return Record(json.dumps({"text": draw(st.integers() | st.lists(st.integers(), max_size=2))}).encode())
    if kind == "blank_text":
        return Record(json.dumps({"text": draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))}).encode())
    if kind == "invalid_utf8":
        return Record(b'{"text": "caf\xe9 \xff"}', ascii_safe=False)
    if kind == "nul":
        return Record(b'{"text": "a\x00b"}', ascii_safe=False)
    if kind == "bad_id":
        return Record(json.dumps({"id": draw(st.sampled_from([["a"], {"k": 1}, []])), "text": "t"}).encode())
    text = draw(texts)
    obj: dict = {"text": text}
    id_value = draw(ids)
    if id_value != "missing":
        obj["id"] = id_value
    for i in range(draw(st.integers(0, 2))):
        obj[f"m{i}"] = draw(json_values)
    if draw(st.booleans()):
        obj["media"] = draw(st.sampled_from(["x", [1], [], {"a": 1}]))
    depth = draw(st.sampled_from([0, 50, 98, 99, 100, 101, 150, 300, 1100])) if kind == "deep" else 0
    if depth:
        obj["deep"] = _nested(depth)
    raw = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()
    if kind == "deep" and depth + 1 > MAX_NESTING:
        return Record(raw)  # dropped: too deep
    if isinstance(id_value, (list, dict)):
        return Record(raw)  # dropped: bad_id
    if id_value in (None, "missing") or isinstance(id_value, (bool, float)) or (
            isinstance(id_value, str) and not id_value.strip()):
        rule = ("positional",)
    else:
        rule = ("keep", str(id_value))
    return Record(raw, text=text, id_rule=rule)


@dataclass
class File:
    name: str
    records: list[Record]
    blanks: list[int]  # positions (before record i) of blank lines
    ending: str
    encoding: str  # utf-8 | utf-16 | utf-16-be-bom
    compression: str  # none | gz | zst | gz-cut | zst-cut
    final_end: bool
    planted: list = field(default_factory=list)  # (line, Record) in file order


@st.composite
def jsonl_files(draw, name: str) -> File:
    recs = draw(st.lists(records(), min_size=0, max_size=40))
    encoding = draw(st.sampled_from(["utf-8"] * 4 + ["utf-16", "utf-16-be-bom"]))
    if encoding != "utf-8":
        recs = [r for r in recs if r.ascii_safe]
    blanks = draw(st.lists(st.integers(0, max(len(recs), 1)), max_size=3))
    return File(name, recs, blanks, draw(st.sampled_from(["\n", "\r\n", "\r"])), encoding,
                draw(st.sampled_from(["none"] * 5 + ["gz", "zst", "gz-cut", "zst-cut"])), draw(st.booleans()))


def _render(f: File) -> bytes:
    end = f.ending.encode()
    lines: list[bytes] = []
    for i, rec in enumerate(f.records):
        lines += [b""] * f.blanks.count(i)
        f.planted.append((len(lines) + 1, rec))
        lines.append(rec.raw)
    lines += [b""] * f.blanks.count(len(f.records))
    data = end.join(lines) + (end if f.final_end and lines else b"")
    if f.encoding == "utf-16":
        data = data.decode("utf-8").encode("utf-16")
    elif f.encoding == "utf-16-be-bom":
        data = b"\xfe\xff" + data.decode("utf-8").encode("utf-16-be")
    if f.compression.startswith("gz"):
        data = gzip.compress(data, mtime=0)
    elif f.compression.startswith("zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    if f.compression.endswith("-cut"):
        data = data[: len(data) // 2]
    return data


def _looks_binary(head: bytes) -> bool:
    """The documented rule (docs/input_problems.md), written independently of the reader."""
    if b"\x00" not in head:
        return False
    complete = head.split(b"\n")[:-1]
    if not complete:
        return False
    for line in complete:
        try:
            if isinstance(json.loads(line), dict):
                return False
        except (ValueError, RecursionError):
            continue
    return True


corpora = st.builds(
    lambda files, specials: (files, specials),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=5, unique=True).flatmap(
        lambda keys: st.tuples(*[jsonl_files(f"f{k:07d}.jsonl") for k in keys])),
    st.lists(st.sampled_from(["empty", "fifo", "dangling", "junk", "subfolder"]), max_size=3, unique=True),
)


def _write_corpus(folder: Path, files, specials) -> dict[str, File]:
    by_path: dict[str, File] = {}
    for f in files:
        suffix = {"none": "", "gz": ".gz", "gz-cut": ".gz", "zst": ".zst", "zst-cut": ".zst"}[f.compression]
        f.name += suffix
        (folder / f.name).write_bytes(_render(f))
        by_path[f.name] = f
    if "empty" in specials:
        (folder / "s_empty.jsonl").write_bytes(b"")
    if "fifo" in specials:
        os.mkfifo(folder / "s_fifo.jsonl")
    if "dangling" in specials:
        (folder / "s_dangling.jsonl").symlink_to(folder / "nowhere.jsonl")
    if "junk" in specials:
        (folder / "s_junk.jsonl").write_bytes(b"\x00" + bytes(range(256)) * 20)
    if "subfolder" in specials:
        (folder / "sub").mkdir()
        (folder / "sub" / "g.jsonl").write_bytes(b'{"id": "in-sub", "text": "from a subfolder"}\n')
    return by_path


def _expected(by_path: dict[str, File], specials) -> tuple[dict[str, tuple], dict[str, str]]:
    """({file: (records, documents, dropped) or None when only the balance can be checked}, {id: text})."""
    balance: dict[str, tuple | None] = {}
    docs: list[tuple[str, str, int, str]] = []  # (path, id, line, text) in reading order
    for path in sorted([*by_path, *(["sub/g.jsonl"] if "subfolder" in specials else [])]):
        if path == "sub/g.jsonl":
            balance[path] = (1, 1, 0)
            docs.append((path, "in-sub", 1, "from a subfolder"))
            continue
        f = by_path[path]
        raw = (f.records and _render_plain(f)) or b""
        if f.compression.endswith("-cut"):
            balance[path] = None
            continue
        if f.encoding == "utf-8" and _looks_binary(raw[:8192]):
            balance[path] = (1, 0, 1)
            continue
        good = [(line, r) for line, r in f.planted if r.text is not None]
        balance[path] = (len(f.planted), len(good), len(f.planted) - len(good))
        for line, r in good:
            doc_id = r.id_rule[1] if r.id_rule[0] == "keep" else f"{path}/{line - 1}"
            docs.append((path, doc_id, line, r.text))
    seen: set[str] = set()
    out: dict[str, str] = {}
    for path, doc_id, line, text in docs:  # the documented rename of a repeated id
        if doc_id in seen:
            doc_id = f"{doc_id}@{path}:{line}"
            while doc_id in seen:
                doc_id += "+"
        seen.add(doc_id)
        out[doc_id] = text
    for name, b in (("s_empty.jsonl", (0, 0, 0)), ("s_fifo.jsonl", (0, 0, 0)), ("s_dangling.jsonl", (1, 0, 1)),
                    ("s_junk.jsonl", (1, 0, 1))):
        if name.split("_")[1].split(".")[0] in specials:
            balance[name] = b
    return balance, out


def _render_plain(f: File) -> bytes:
    """The file's bytes before compression and re-encoding (what the binary rule looks at for UTF-8)."""
    end = f.ending.encode()
    lines: list[bytes] = []
    for i, rec in enumerate(f.records):
        lines += [b""] * f.blanks.count(i)
        lines.append(rec.raw)
    lines += [b""] * f.blanks.count(len(f.records))
    return end.join(lines) + (end if f.final_end and lines else b"")


def _read_corpus(folder: Path, work: Path):
    """Counting reader -> the real document writer, in this process, under an alarm."""
    from curate.executors import quiet_datatrove_logs
    from curate.documents import DocumentsWriter
    from curate.readers import CountingJsonlReader

    quiet_datatrove_logs()

    reader = CountingJsonlReader(str(folder), problems_dir=str(work / "problems"), add_file_path=False)
    writer = DocumentsWriter(str(work / "documents"))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CORPUS_TIMEOUT_S)
    try:
        for _ in writer.run(reader.run(rank=0, world_size=1), rank=0, world_size=1):
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    from curate.api import read_documents

    balance = {}
    for line in (work / "input_files" / "00000.jsonl").read_text().splitlines():
        e = json.loads(line)
        balance[os.path.relpath(e["file"], folder)] = e
    problems = []
    if (work / "problems" / "00000.jsonl").exists():
        problems = [json.loads(x) for x in (work / "problems" / "00000.jsonl").read_text().splitlines()]
    return read_documents(str(work / "documents")), balance, problems


def _check(folder: Path, by_path, specials, docs, balance, problems) -> None:
    want_balance, want_docs = _expected(by_path, specials)
    FIGURES["corpora"] += 1
    FIGURES["files"] += len(balance)
    assert set(balance) == set(want_balance), (sorted(balance), sorted(want_balance))
    for path, e in balance.items():
        FIGURES["records"] += e["records"]
        FIGURES["documents"] += e["documents"]
        FIGURES["dropped"] += e["dropped"]
        lost = e["records"] - e["documents"] - e["dropped"]
        FIGURES["uncounted_losses"] += abs(lost)
        assert lost == 0 and e["complete"], (path, e)
        want = want_balance[path]
        if want is not None:
            assert (e["records"], e["documents"], e["dropped"]) == want, (path, e, want)
    assert sum(e["documents"] for e in balance.values()) == len(docs)
    got = {d["id"]: d["text"] for d in docs}
    assert len(got) == len(docs)  # ids unique: no collisions
    cut = [p for p, w in want_balance.items() if w is None]
    if not cut:
        assert got == want_docs
    else:  # a cut file loses an unknown tail: everything out must still be a planted good record
        assert set(got.values()) <= set(want_docs.values()) | {r.text for p in cut for _, r in by_path[p].planted}
        for p in cut:  # and the cut is counted
            assert any(x["reason"] in ("truncated_file", "not_jsonl") and x["dropped"] >= 1
                       for x in problems if x["file"].endswith(p)), (p, problems)
    for x in problems:
        assert x["file"].startswith(str(folder)) and (x["line"] is None or x["line"] >= 1), x


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(corpora)
def test_fuzz_reader_layer(corpus):
    files, specials = corpus
    with tempfile.TemporaryDirectory() as tmp:
        folder, work = Path(tmp) / "data", Path(tmp) / "work"
        folder.mkdir()
        by_path = _write_corpus(folder, files, specials)
        try:
            docs, balance, problems = _read_corpus(folder, work)
        except Hang:
            FIGURES["hangs"] += 1
            raise
        except Exception:
            FIGURES["crashes"] += 1
            raise
        _check(folder, by_path, specials, docs, balance, problems)


@settings(max_examples=RECIPE_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(corpora, st.sampled_from(["pass_through", "cleaning"]))
def test_fuzz_full_recipes(corpus, recipe):
    """A subset through real recipes (datatrove's local executor): the run ends, each file
    balances, and every stage's documents in = documents out + counted drops."""
    from curate.api import read_documents, run_recipe
    from curate.report import build_report

    files, specials = corpus
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        by_path = _write_corpus(folder, files, specials)
        stages = [] if recipe == "pass_through" else ["normalize", "english_rules", "exact_dedup"]
        rd = {"name": f"fuzz_{recipe}", "input": {"format": "jsonl", "paths": str(folder)},
              "output": str(Path(tmp) / "out"), "executor": {"tasks": 1, "workers": 1}, "stages": stages}
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CORPUS_TIMEOUT_S * 3)
        try:
            res = run_recipe(rd)
        except Hang:
            FIGURES["hangs"] += 1
            raise
        except Exception:
            FIGURES["crashes"] += 1
            raise
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        FIGURES["recipe_runs"] += 1
        rep = build_report(res.output_dir)
        bal = rep.input_balance()
        assert bal is not None and bal.balanced
        want_balance, want_docs = _expected(by_path, specials)
        if all(w is not None for w in want_balance.values()):
            assert bal.documents == len(want_docs)
            assert bal.records == sum(w[0] for w in want_balance.values())
        rows = rep.stage_rows()
        for row in rows:
            assert row.docs_in == row.docs_out + sum(row.drops.values()), row
        final = read_documents(res.final_documents) if os.path.isdir(res.final_documents) else []
        assert len(final) == rows[-1].docs_out if rows[-1].stage == "output" else not final
        if recipe == "pass_through" and all(w is not None for w in want_balance.values()):
            assert {d["id"]: d["text"] for d in final} == want_docs


def teardown_module(_module):
    line = json.dumps({"fuzz": FIGURES, "examples": EXAMPLES, "recipe_examples": RECIPE_EXAMPLES})
    print("\n" + line)
    if os.environ.get("CURATE_FUZZ_FIGURES"):
        Path(os.environ["CURATE_FUZZ_FIGURES"]).write_text(line + "\n")
