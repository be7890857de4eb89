"""The WARC reader of `input.format: warc`: every record is a document or a counted, reasoned drop.

datatrove's `WarcReader` skips silently whatever it cannot use (a record that does not decode, a
non-HTML payload), and a file that is not a WARC at all (a stray `.jsonl.gz`) makes warcio print one
warning per line of it. This reader counts each case in the phase's stats (`dropped_input_<reason>`,
like the jsonl/parquet readers of `curate/readers.py`) and lists it in `OUT/<phase>/problems/` with
the file and the record's byte offset (for `.warc.gz`, the offset in the compressed file, the number
the Common Crawl index gives; for `.zst`, in the decompressed stream), shown as `file@offset`.

What becomes a document: a `response` (or WET `conversion`) record whose payload is HTML, decoded to
text. Its metadata keeps `url`, `date`, `content_type`, `charset`, `http_status`, `warc_file` and
`warc_offset`, so `url_filter` and the `extract` stage's drop lists work on it. The text is the raw
HTML: add the `extract` stage to turn it into main text.

Counted, not listed (they are not pages): `dropped_input_not_a_response` for request, warcinfo,
metadata, resource and revisit records. Counted and listed, per record: `not_html` (a PDF, an image,
...; the detail names the type), `http_status` (not 2xx: redirects, errors), `bad_http_header`
(no `HTTP/x.y NNN` status line, or a header name that is not an HTTP token), `undecodable_charset`
(the payload decodes under neither the declared charset, UTF-8, nor the detected one),
`unreadable_payload` (a broken Content-Encoding), `record_too_large` (payload over 32 MiB),
`truncated_record` (the file ends inside the record). Per file: `not_warc` (does not start with a
WARC header; a JSON-lines file is named as such), `truncated_file` (the data stops mid-record: the
records before the cut are kept), `corrupt_warc` (bytes that do not parse as a record; reading goes on
from the next record start found after them, a gzip member or a `WARC/1.x` line, else the rest of the
file is lost; warcio's message is the detail), `empty_file` (no bytes; drops nothing).
A `.warc.gz` compressed as one gzip stream (not one member per record) is read decompressed, with
offsets in decompressed bytes from its second record on (`warc_single_gzip_stream` in the stats).
`bad_content_length` (a record not followed by its blank line, so its Content-Length is wrong) is
listed but drops nothing: warcio reads on from there.

Every record is accounted for: `warc_records` = `documents` + `dropped_input` (all reasons above),
where a file that is not a WARC, and the unreadable tail of a truncated or corrupt one, count as one
record each (what they held cannot be counted).

With fewer files than tasks, every task reads its own byte span of each file (`curate/warc_spans.py`),
so one big WARC keeps all the tasks of its phase busy; the documents and drops are the same whatever
the task count. A problem with a whole file (`not_warc`, `empty_file`) is reported once, by task 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import zlib

from datatrove.pipeline.readers.base import BaseDiskReader

from curate.input_files import SNIFF_BYTES
from curate.readers import BadInputError, _Prepend, _ProblemLog
from curate.warc_payload import declared_charset, decode_payload, mime_type
from curate.warc_spans import record_start_from, task_span

MAX_PAYLOAD_BYTES = 32 << 20
HTML_TYPES = ("text/html", "application/xhtml+xml")
PAGE_RECORDS = ("response", "conversion")
FILE_PROBLEMS = ("not_warc", "truncated_file", "corrupt_warc")
_STATUS_LINE = re.compile(r"^\d{3}(\s|$)")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def sniff_warc(head: bytes) -> str | None:
    """None when `head` (a file's first bytes) starts a WARC (or ARC) file; else what it looks like."""
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(31).decompress(head)
        except zlib.error as e:
            return f"gzip data that does not decompress ({e})"
        what = sniff_warc(inner) if inner else None
        return None if what is None else f"gzip data holding {what}"
    stripped = head.lstrip()
    if stripped.startswith((b"WARC/", b"filedesc://")):
        return None
    if stripped.startswith((b"{", b"[")):
        return "JSON lines, not WARC (use input.format: jsonl)"
    if head.startswith(b"PAR1"):
        return "a parquet file, not WARC (use input.format: parquet)"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd data (name the file *.warc.zst)"
    if stripped.startswith((b"<!", b"<html", b"<HTML")):
        return "a bare HTML file, not WARC"
    return f"not a WARC file (starts with {head[:24]!r})"


def http_header_problem(record) -> str | None:
    """Why the record's HTTP header block is broken, or None when it is a sane HTTP response header."""
    hh = record.http_headers
    if hh is None:
        return "no HTTP header block"
    if not str(hh.protocol or "").upper().startswith("HTTP/") or not _STATUS_LINE.match(hh.statusline or ""):
        return f"status line {(str(hh.protocol or '') + ' ' + str(hh.statusline or '')).strip()[:80]!r}"
    for name, _ in hh.headers:
        if not _TOKEN.match(name or ""):
            return f"header name {name[:60]!r}"
    return None


class _CountedPrepend(_Prepend):
    """`_Prepend` that counts the bytes it hands out, to compare with where warcio stopped."""

    def __init__(self, head: bytes, f):
        super().__init__(head, f)
        self.consumed = 0

    def readinto(self, b) -> int:
        n = super().readinto(b)
        self.consumed += n
        return n


class CountingWarcReader(_ProblemLog, BaseDiskReader):
    """Reads WARC files (`.warc`, `.warc.gz` with one gzip member per record, `.warc.zst`); HTML
    responses become documents, every other record is counted by reason (see the module docstring)."""

    name = "🕷 Warc (counted)"
    _requires_dependencies = ["warcio", ("cchardet", "faust-cchardet")]

    def __init__(self, data_folder, *args, problems_dir: str | None = None, strict: bool = False, **kwargs):
        kwargs["add_file_path"] = False  # `warc_file` + `warc_offset` say where a document came from
        kwargs["text_key"], kwargs["id_key"] = "text", "id"  # the reader builds these records itself
        super().__init__(data_folder, *args, **kwargs)
        self._init_problems(problems_dir, strict)
        self._by_index = False  # tasks share the file being read record by record (a `.zst`)

    # A WARC problem is at a byte offset, not a line: the record carries it as `offset`.
    def _problem(self, filepath: str, line: int | None, reason: str, detail: str = "", dropped: int = 1,
                 fatal: bool = True, offset: int | None = None, whole_file: bool = False) -> None:
        if whole_file and not self._file_problem_is_mine():  # tasks share the file: task 0 reports it
            return
        where = self._where(filepath)
        if self.strict and fatal:
            at = f"{where}@{offset}" if offset is not None else where
            raise BadInputError(f"{at}: {reason.replace('_', ' ')}" + (f" ({detail[:300]})" if detail else "")) from None
        if dropped:
            if reason in FILE_PROBLEMS:  # no record was read: the file (or its unreadable tail) counts as one
                self.stat_update("warc_records", value=dropped)
            self.stat_update("dropped_input", value=dropped)
            self.stat_update(f"dropped_input_{reason}", value=dropped)
        if self.problems_dir is None:
            return
        if self._problems is None:
            from curate.atomic import partial_name

            os.makedirs(self.problems_dir, exist_ok=True)
            self._problems_tmp = partial_name(os.path.join(self.problems_dir, f"{self._rank:05d}.jsonl"))
            self._problems = open(self._problems_tmp, "w", encoding="utf-8")
        rec = {"file": where, "line": line, "offset": offset, "reason": reason, "detail": detail[:300],
               "dropped": dropped}
        self._problems.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def _skip(self, reason: str) -> None:
        """A record that is not a page (request, warcinfo, ...): counted, not listed."""
        self.stat_update("dropped_input")
        self.stat_update(f"dropped_input_{reason}")

    def read_file(self, filepath: str):
        # warcio decompresses per-record gzip itself, which keeps record offsets in compressed bytes
        compression = "zstd" if filepath.endswith(".zst") else None
        rank, tasks = self._stride
        with contextlib.ExitStack() as handles:
            f = handles.enter_context(self.data_folder.open(filepath, "rb", compression=compression))
            try:
                head = f.read(SNIFF_BYTES)
            except (EOFError, OSError, zlib.error) as e:
                self._problem(filepath, None, "truncated_file", str(e), offset=0, whole_file=True)
                return
            if not head:
                self._problem(filepath, None, "empty_file", "no records", dropped=0, fatal=False, whole_file=True)
                return
            what = sniff_warc(head)
            if what is not None:
                self._problem(filepath, None, "not_warc", f"{what}; file skipped", offset=0, whole_file=True)
                return
            gzip_members, seekable = head.startswith(b"\x1f\x8b"), compression is None
            raw, base, skip = _CountedPrepend(head, f), 0, 0
            # this task's byte span of a file the phase's tasks share (curate/warc_spans.py); a `.zst`
            # cannot be cut by bytes: its tasks share it record by record (`self._take()`)
            self._by_index = tasks > 1 and not seekable
            stop = None
            if tasks > 1 and seekable:
                size = self.data_folder.size(filepath)
                with self.data_folder.open(filepath, "rb") as probe:
                    base, stop = task_span(probe, size, rank, tasks, gzip_members)
                if base >= stop:
                    return
                if base > 0:
                    f.seek(base)
                    raw = _CountedPrepend(b"", f)
            while raw is not None:
                outcome = yield from self._read_segment(filepath, raw, base, skip, stop)
                raw = None
                if outcome[0] == "single_gzip" and seekable and (stop is None or (base == 0 and stop >= size)):
                    # one gzip stream around the whole file: read it decompressed from the start, skipping the
                    # records already read; offsets from here on are in the decompressed data. (When tasks
                    # share the file, no other task finds a record start in it: task 0's span is all of it.)
                    self.stat_update("warc_single_gzip_stream")
                    f = handles.enter_context(self.data_folder.open(filepath, "rb", compression="gzip"))
                    raw, base, skip, seekable, stop = _CountedPrepend(b"", f), 0, outcome[1], False, None
                elif outcome[0] == "single_gzip":
                    # a gzip member holding several records in the middle of a file that tasks share:
                    # the member's records cannot be cut at record starts. Listed, not lost silently.
                    self._problem(filepath, None, "corrupt_warc", "a gzip member holding several records, in a "
                                  "file read by several tasks (rerun with executor.tasks: 1 to read it whole); "
                                  f"bytes {base}-{stop} of this task skipped", offset=outcome[2])
                elif outcome[0] == "broken":
                    _, at, reason, message = outcome
                    resume = self._next_record_start(filepath, at, gzip_members) if (
                        seekable and reason == "corrupt_warc") else None
                    if resume is None:
                        self._problem(filepath, None, reason, f"{message}; the rest of the file is lost", offset=at,
                                      whole_file=self._by_index)
                        return
                    self._problem(filepath, None, reason, f"{message}; bytes {at}-{resume} skipped, read on from "
                                  f"the next record", offset=at)
                    if stop is not None and resume >= stop:
                        return  # the next record is the next task's
                    f = handles.enter_context(self.data_folder.open(filepath, "rb"))
                    f.seek(resume)
                    raw, base, skip = _CountedPrepend(b"", f), resume, 0

    def _read_segment(self, filepath: str, raw: _CountedPrepend, base: int, skip: int, stop: int | None):
        """Documents of the records from `raw` (which starts at byte `base` of the file) up to the record
        that starts at byte `stop` (the next task's; None: to the end); returns how it ended: ("end",),
        ("single_gzip", records read, offset) or ("broken", offset, reason, message)."""
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        stream = io.BufferedReader(raw, buffer_size=1 << 16)
        records = ArchiveIterator(stream)
        seen = 0
        while True:
            warned = io.StringIO()
            try:
                with contextlib.redirect_stderr(warned):  # warcio prints a bad length instead of raising
                    record = next(records)
            except StopIteration:
                break
            except (ArchiveLoadFailed, EOFError, OSError, zlib.error, ValueError) as e:
                at = base + max(records.offset or 0, 0)
                if stop is not None and at >= stop:
                    return ("end",)  # the next task's span starts there: it meets the same bytes
                message = " ".join(str(e).split())[:240] or type(e).__name__
                if "non-chunked gzip" in message:
                    return ("single_gzip", seen, at)
                reason = "truncated_file" if isinstance(e, (EOFError, zlib.error)) else "corrupt_warc"
                return ("broken", at, reason, message)
            seen += 1
            if seen <= skip:
                continue
            # where this record starts: warcio's end of the previous one (get_record_offset() would
            # read the record to its end before we have its payload)
            offset = base + (records.offset or 0)
            if warned.getvalue():  # about the end of the previous record, which was this task's
                self._problem(filepath, None, "bad_content_length",
                              "the previous record is not followed by a blank line (wrong Content-Length?)",
                              dropped=0, fatal=False, offset=offset, whole_file=self._by_index)
            if stop is not None and offset >= stop:
                return ("end",)
            if self._by_index and not self._take():
                continue
            self.stat_update("warc_records")
            with self.track_time():
                try:
                    document = self._record_document(record, filepath, offset)
                except (OSError, EOFError, zlib.error, ValueError) as e:  # reading the payload failed
                    self._problem(filepath, None, "unreadable_payload", f"{type(e).__name__}: {e}", offset=offset)
                    document = None
            if document is not None:
                yield document
        # warcio stops quietly at a gzip member cut short: whatever is left was not a whole record
        try:
            while stream.read(1 << 16):
                pass
        except (EOFError, OSError, zlib.error):
            pass
        end = records.offset or 0
        if end < raw.consumed and (stop is None or base + end < stop):
            self._problem(filepath, None, "truncated_file",
                          f"the data stops inside the record at byte {base + end}; the records before it are kept",
                          offset=base + end, whole_file=self._by_index)
        return ("end",)

    def _next_record_start(self, filepath: str, after: int, gzip_members: bool) -> int | None:
        """Byte offset of the first record start after `after` (see `curate/warc_spans.py`), None when
        there is none (or the file cannot be searched)."""
        try:
            size = self.data_folder.size(filepath)
            with self.data_folder.open(filepath, "rb") as f:
                return record_start_from(f, after + 1, size, gzip_members)
        except (OSError, ValueError):
            return None

    def _record_document(self, record, filepath: str, offset: int):
        if record.rec_type not in PAGE_RECORDS:
            self._skip("not_a_response")
            return None
        rh = record.rec_headers
        http_type = None
        status = None
        if record.rec_type == "response" and "application/http" in (rh.get_header("Content-Type") or ""):
            broken = http_header_problem(record)
            if broken:
                self._problem(filepath, None, "bad_http_header", broken, offset=offset)
                return None
            status = int(record.http_headers.statusline[:3])
            if not 200 <= status < 300:
                self._problem(filepath, None, "http_status", f"HTTP {status}", fatal=False, offset=offset)
                return None
            http_type = record.http_headers.get_header("Content-Type")
        elif record.rec_type == "conversion":
            http_type = rh.get_header("Content-Type")
        identified = mime_type(rh.get_header("WARC-Identified-Payload-Type"))
        stream = record.content_stream()
        body = stream.read(MAX_PAYLOAD_BYTES + 1)
        if len(body) > MAX_PAYLOAD_BYTES:
            self._problem(filepath, None, "record_too_large", f"payload over {MAX_PAYLOAD_BYTES >> 20} MiB",
                          offset=offset)
            return None
        if getattr(record.raw_stream, "limit", 0) > 0:  # Content-Length promised more than the file holds
            self._problem(filepath, None, "truncated_record",
                          f"{record.raw_stream.limit} bytes of the record missing", offset=offset)
            return None
        encoding = (record.http_headers.get_header("Content-Encoding") or "").lower() if record.http_headers else ""
        # warcio hands back nothing, or the compressed bytes, when the declared encoding does not decode
        if encoding in ("gzip", "x-gzip", "deflate", "br") and (not body or body[:2] == b"\x1f\x8b"):
            self._problem(filepath, None, "unreadable_payload", f"Content-Encoding {encoding} does not decompress",
                          offset=offset)
            return None
        kind = identified or mime_type(http_type)
        if kind is None:  # no type anywhere: HTML if it looks like markup
            kind = "text/html" if body[:1024].lstrip()[:1] == b"<" else "application/octet-stream"
        is_page = kind in HTML_TYPES or (record.rec_type == "conversion" and kind == "text/plain")
        if not is_page:
            self._problem(filepath, None, "not_html", f"content type {kind}", fatal=False, offset=offset)
            return None
        text, charset, note = decode_payload(body, declared_charset(http_type))
        if text is None:
            self._problem(filepath, None, "undecodable_charset", note, offset=offset)
            return None
        if note:
            self.stat_update(f"charset_{note}")
        if not text.strip():
            self._problem(filepath, None, "empty_text", "empty payload", offset=offset)
            return None
        url = rh.get_header("WARC-Target-URI") or rh.get_header("uri")
        data = {
            "text": text,
            "id": rh.get_header("WARC-Record-ID") or f"{filepath}@{offset}",
            "metadata": {
                "url": url, "date": rh.get_header("WARC-Date") or rh.get_header("archive-date"),
                "content_type": kind, "charset": charset, "http_status": status,
                "warc_file": self._where(filepath), "warc_offset": offset,
            },
        }
        return self._document(data, filepath, offset)
