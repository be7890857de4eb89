"""WARC input: every record is a document or a counted drop with its file and byte offset.

Planted in WARC files written with warcio (the library the reader uses): a PDF and an image (not
HTML), a 404, a broken HTTP status line, a header name with a space, a payload that decodes under no
charset, a latin-1 page declared as such (kept, decoded right), an unknown declared charset over
UTF-8 bytes (kept), request/warcinfo records (counted as not pages, not listed), a stray `.jsonl.gz`
(one `not_warc` problem, and warcio's per-line warnings never printed), a `.warc.gz` cut inside its
last record (the records before the cut are kept), an uncompressed WARC whose last record is short,
junk between two records (counted, and the record after it is read), a WARC gzipped as one stream,
a payload whose Content-Encoding does not decompress, and an empty file.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from curate.readers import BadInputError
from curate.warc_input import CountingWarcReader, sniff_warc
from curate.warc_payload import decode_payload

PAGE = "<html><head><title>t</title></head><body><p>{}</p></body></html>"


def _writer_records(path: Path, records: list[tuple], gzip_members: bool = True) -> list[int]:
    """Write (kind, url, body, content_type, status) records; returns each record's start offset."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=gzip_members)
    offsets = []
    w.write_record(w.create_warcinfo_record(path.name, {"software": "test"}))
    for kind, url, body, ctype, status in records:
        offsets.append(buf.tell())
        if kind == "request":
            hh = StatusAndHeaders(f"GET {url} HTTP/1.1", [("Host", "example.org")], is_http_request=True)
            w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=hh))
            continue
        headers = [("Content-Type", ctype)] + ([("Content-Encoding", "gzip")] if body[:2] == b"\x1f\x8b" else [])
        hh = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=hh))
    path.write_bytes(buf.getvalue())
    return offsets


def _raw_response(url: str, http_block: bytes) -> bytes:
    """A WARC response record written by hand, so its HTTP block can be as broken as we like."""
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{abs(hash(url))}>\r\n"
            f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http_block)}\r\n\r\n").encode()
    return head + http_block + b"\r\n\r\n"


@pytest.fixture(scope="module")
def warc_folder(tmp_path_factory) -> tuple[Path, dict, list[tuple[str, int | None, str]]]:
    """(folder, {url: text expected in the document}, planted problems as (file, offset, reason))."""
    folder = tmp_path_factory.mktemp("warc") / "in"
    folder.mkdir()
    good: dict[str, str] = {}
    planted: list[tuple[str, int | None, str]] = []

    def page(url: str, words: str) -> tuple:
        good[url] = words
        return ("response", url, PAGE.format(words).encode(), "text/html; charset=utf-8", "200 OK")

    recs = [
        ("request", "http://a.org/1", b"", None, None),
        page("http://a.org/1", "the first page says hello"),
        ("response", "http://a.org/paper.pdf", b"%PDF-1.7 binary", "application/pdf", "200 OK"),
        ("response", "http://a.org/logo.png", b"\x89PNG\r\n\x1a\n....", "image/png", "200 OK"),
        ("response", "http://a.org/missing", b"<html>not found</html>", "text/html", "404 Not Found"),
        ("response", "http://a.org/junk", b"<html><body>" + bytes(range(128, 256)) * 40 + b"</body></html>",
         "text/html; charset=utf-8", "200 OK"),
        ("response", "http://a.org/latin", PAGE.format("caf\u00e9 cr\u00e8me").encode("latin-1"),
         "text/html; charset=ISO-8859-1", "200 OK"),
        ("response", "http://a.org/klingon", PAGE.format("na\u00efve utf8").encode(), "text/html; charset=klingon-8",
         "200 OK"),
    ]
    good["http://a.org/latin"] = "caf\u00e9 cr\u00e8me"
    good["http://a.org/klingon"] = "na\u00efve utf8"
    offs = _writer_records(folder / "a.warc.gz", recs)
    planted += [("a.warc.gz", offs[2], "not_html"), ("a.warc.gz", offs[3], "not_html"),
                ("a.warc.gz", offs[4], "http_status"), ("a.warc.gz", offs[5], "undecodable_charset")]

    # uncompressed, hand-written: a broken status line, a header name with a space, then a good page
    body_ok = PAGE.format("the third page is fine").encode()
    b_recs = [
        _raw_response("http://b.org/garbage", b"GARBAGE NOT HTTP\r\n\r\n<html>x</html>"),
        _raw_response("http://b.org/badname", b"HTTP/1.1 200 OK\r\nContent Type: text/html\r\n\r\n<html>x</html>"),
        _raw_response("http://b.org/ok", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + body_ok),
    ]
    good["http://b.org/ok"] = "the third page is fine"
    (folder / "b.warc").write_bytes(b"".join(b_recs))
    planted += [("b.warc", 0, "bad_http_header"), ("b.warc", len(b_recs[0]), "bad_http_header")]

    # a .warc.gz cut inside its last record: the first two pages are kept
    offs = _writer_records(folder / "c.warc.gz", [page("http://c.org/1", "kept before the cut one"),
                                                  page("http://c.org/2", "kept before the cut two"),
                                                  ("response", "http://c.org/3", PAGE.format("lost " * 200).encode(),
                                                   "text/html", "200 OK")])
    data = (folder / "c.warc.gz").read_bytes()
    (folder / "c.warc.gz").write_bytes(data[: offs[2] + (len(data) - offs[2]) // 2])
    planted.append(("c.warc.gz", offs[2], "truncated_file"))

    # an uncompressed WARC whose last record is shorter than its Content-Length says
    _writer_records(folder / "d.warc", [page("http://d.org/1", "whole record before a short one")], gzip_members=False)
    short = _raw_response("http://d.org/2", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + b"<p>x</p>" * 50)
    start = (folder / "d.warc").stat().st_size
    with open(folder / "d.warc", "ab") as f:
        f.write(short[:-150])
    planted.append(("d.warc", start, "truncated_record"))

    # junk between two gzip members: reading goes on from the next record
    offs = _writer_records(folder / "e.warc.gz", [page("http://e.org/1", "before the junk"),
                                                  page("http://e.org/2", "after the junk")])
    data = (folder / "e.warc.gz").read_bytes()
    (folder / "e.warc.gz").write_bytes(data[: offs[1]] + b"JUNK THAT IS NO RECORD\r\n\r\n" + data[offs[1]:])
    planted.append(("e.warc.gz", offs[1], "corrupt_warc"))
    # a whole WARC in one gzip stream (not one member per record): read decompressed, nothing lost
    _writer_records(folder / "f.warc", [page(f"http://f.org/{i}", f"single stream page {i}") for i in range(3)],
                    gzip_members=False)
    (folder / "f.warc.gz").write_bytes(gzip.compress((folder / "f.warc").read_bytes()))
    (folder / "f.warc").unlink()
    # a payload whose Content-Encoding does not decompress
    offs = _writer_records(folder / "g.warc.gz", [("response", "http://g.org/", b"\x1f\x8b\x08\x00not gzip",
                                                   "text/html", "200 OK")])
    planted.append(("g.warc.gz", offs[0], "unreadable_payload"))
    with gzip.open(folder / "stray.jsonl.gz", "wt") as f:  # 300 lines: warcio would warn about each
        for i in range(300):
            f.write(json.dumps({"id": i, "text": "a line of a JSON file " * 5}) + "\n")
    planted.append(("stray.jsonl.gz", 0, "not_warc"))
    (folder / "empty.warc.gz").write_bytes(b"")
    return folder, good, planted


def _stats(step) -> dict:
    return {k: (v.total if hasattr(v, "total") else v) for k, v in step.stats.stats.items()}


def test_every_record_is_a_document_or_a_counted_drop(warc_folder, tmp_path, capfd):
    folder, good, planted = warc_folder
    reader = CountingWarcReader(str(folder), problems_dir=str(tmp_path / "problems"))
    docs = list(reader.run())
    stats = _stats(reader)

    got = {d.metadata["url"]: d.text for d in docs}
    assert set(got) == set(good)
    for url, words in good.items():
        assert words in got[url] and got[url].lstrip().startswith("<html>")
    for d in docs:
        md = d.metadata
        assert md["date"] == md["date"] and md["content_type"] == "text/html" and md["warc_offset"] is not None

    # records in = documents + counted drops (two warcinfo + one request are counted as not pages)
    assert stats["warc_records"] == stats["documents"] + stats["dropped_input"]
    assert stats["documents"] == len(good)
    assert stats["dropped_input_not_a_response"] >= 4

    problems = [json.loads(line) for p in sorted((tmp_path / "problems").glob("*.jsonl")) for line in p.open()]
    found = {(Path(p["file"]).name, p["offset"], p["reason"]) for p in problems}
    for item in planted:
        assert item in found, f"{item} not listed; listed: {sorted(found)}"
    assert ("empty.warc.gz", None, "empty_file") in {(Path(p["file"]).name, p["offset"], p["reason"]) for p in problems}
    by_reason = {}
    for p in problems:
        by_reason[p["reason"]] = by_reason.get(p["reason"], 0) + p["dropped"]
    for reason, n in by_reason.items():
        if n:
            assert stats[f"dropped_input_{reason}"] == n
    assert next(p for p in problems if p["reason"] == "not_warc")["detail"].startswith("gzip data holding JSON lines")
    assert "application/pdf" in " ".join(p["detail"] for p in problems if p["reason"] == "not_html")

    latin = got["http://a.org/latin"]
    assert "caf\u00e9 cr\u00e8me" in latin
    err = capfd.readouterr().err
    assert "WARNING: Record not followed by newline" not in err and "a line of a JSON file" not in err


def test_strict_mode_names_file_and_offset(warc_folder):
    folder, _, _ = warc_folder
    reader = CountingWarcReader(str(folder), strict=True, glob_pattern="b.warc")
    with pytest.raises(BadInputError, match=r"b\.warc@0: bad http header"):
        list(reader.run())
    # routine skips (a PDF, a 404) do not stop a strict run; the undecodable page does
    reader = CountingWarcReader(str(folder), strict=True, glob_pattern="a.warc.gz")
    with pytest.raises(BadInputError, match=r"a\.warc\.gz@\d+: undecodable charset"):
        list(reader.run())


def test_decode_payload_order():
    assert decode_payload("caf\u00e9".encode("cp1252"), "windows-1252")[:2] == ("caf\u00e9", "cp1252")
    text, charset, note = decode_payload(b"<meta charset='utf-8'>" + "\u00e9".encode() * 3000 + b"\xff", None)
    assert charset == "utf-8" and note == "replaced" and text.count("\ufffd") == 1
    assert decode_payload(bytes(range(128, 256)) * 40, "utf-8")[0] is None


def test_sniff_names_what_a_file_is():
    assert sniff_warc(b"WARC/1.1\r\n") is None
    assert sniff_warc(gzip.compress(b"WARC/1.0\r\nWARC-Type: warcinfo")) is None
    assert "JSON lines" in sniff_warc(gzip.compress(b'{"id": 1}\n'))
    assert "parquet" in sniff_warc(b"PAR1....")
    assert "HTML" in sniff_warc(b"<!doctype html><html>")


def test_report_lists_warc_problems_with_file_and_offset(warc_folder, tmp_path):
    """A run on the planted folder: `curate report` counts each reason and names file@offset."""
    from helpers import curate_cli, write_recipe

    folder, good, planted = warc_folder
    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "warc_problems", "input": {"format": "warc", "paths": str(folder)},
        "output": str(tmp_path / "out"), "executor": {"tasks": 1, "workers": 1},
        "stages": [{"extract": {"timeout_s": 30}}],
    })
    res = curate_cli("run", str(recipe))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "WARNING: Record not followed by newline" not in res.stderr and "a line of a JSON file" not in res.stderr
    rep = curate_cli("report", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr[-2000:]
    text = " ".join(rep.stdout.split())
    for name, offset, reason in planted:
        assert f"{name}@{offset}: {reason}" in text, (name, offset, reason)
    assert "WARC funnel:" in text
    from curate.api import read_documents
    from curate.report import build_report

    report = build_report(str(tmp_path / "out"))
    docs = read_documents(report.run.final_documents)
    assert {d["metadata"]["url"] for d in docs} == set(good)
    assert all("<" not in d["text"] for d in docs)
