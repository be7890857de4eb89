"""Readers of a recipe's local input that count and explain every record they cannot use.

datatrove's own readers log and skip a malformed line, a record without text or an unreadable file;
here every such record is counted in the phase's stats (`dropped_input_<reason>`, and the total in
`dropped_input`) and listed with its file and line (parquet: row) in `OUT/<phase>/problems/<rank>.jsonl`,
which `curate report` shows. With `input.strict: true` the first problem stops the run instead
(`BadInputError`, naming `file:line`).

Reasons: `malformed_json`, `not_an_object`, `missing_text`, `non_string_text`, `empty_text` (empty or
whitespace only), `invalid_utf8`, `bad_id` (an id that is a list or mapping), `not_jsonl` (a binary
file: NUL bytes or another format's signature in its first 8 KiB; one problem for the whole file),
`truncated_file` (compressed data ends early: the rest of the file is lost), `unreadable_file`
(not gzip/zstd/parquet although named so), `wrong_schema` (parquet without a string text column;
every row of the file counts as dropped). `empty_file` (no bytes at all) is listed but drops nothing
and is not fatal in strict mode.

Duplicate ids are not dropped (the texts may differ): the later document is renamed to
`<id>@<file>:<line>`, keeps its original id in `metadata.original_id`, and is listed as a
`duplicate_id` problem (counted as `input_duplicate_id_renamed`). Ids are compared within one input
task (each task reads whole files), so with `tasks > 1` a repeat in a file read by another task is
not seen here.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib

import orjson
from datatrove.pipeline.readers import JsonlReader, ParquetReader

from curate.atomic import partial_name

SNIFF_BYTES = 8192
NUL = b"\x00"
_SIGNATURES = {  # first bytes of formats that are not JSONL text
    b"\x1f\x8b": "gzip data (name the file *.gz)",
    b"\x28\xb5\x2f\xfd": "zstd data (name the file *.zst)",
    b"PAR1": "a parquet file (use input.format: parquet)",
    b"PK\x03\x04": "a zip archive",
    b"BZh": "bzip2 data",
    b"\xfd7zXZ": "xz data",
}


class BadInputError(ValueError):
    """A bad input record in strict mode: the message names the file and line."""


class _ProblemLog:
    """The counting/recording half shared by the readers (mixed into a datatrove disk reader)."""

    problems_dir: str | None = None
    strict: bool = False

    def _init_problems(self, problems_dir: str | None, strict: bool) -> None:
        self.problems_dir, self.strict = problems_dir, strict
        self._problems = None
        self._problems_tmp = None
        self._seen_ids: set[str] = set()
        self._rank = 0

    def _where(self, filepath: str) -> str:
        return self.data_folder.resolve_paths(filepath)

    def _problem(self, filepath: str, line: int | None, reason: str, detail: str = "", dropped: int = 1,
                 fatal: bool = True) -> None:
        where = self._where(filepath)
        if self.strict and fatal:
            at = f"{where}:{line}" if line is not None else where
            raise BadInputError(f"{at}: {reason.replace('_', ' ')}" + (f" ({detail[:300]})" if detail else "")) from None
        if dropped:
            self.stat_update("dropped_input", value=dropped)
            self.stat_update(f"dropped_input_{reason}", value=dropped)
        if self.problems_dir is None:
            return
        if self._problems is None:
            os.makedirs(self.problems_dir, exist_ok=True)
            self._problems_tmp = partial_name(os.path.join(self.problems_dir, f"{self._rank:05d}.jsonl"))
            self._problems = open(self._problems_tmp, "w", encoding="utf-8")
        rec = {"file": where, "line": line, "reason": reason, "detail": detail[:300], "dropped": dropped}
        self._problems.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def _finish_problems(self, ok: bool) -> None:
        """Publish the problems file when the task read everything; a failed task leaves none."""
        if self._problems is None:
            return
        self._problems.close()
        self._problems = None
        final = self._problems_tmp[: -len(".partial")]
        if ok:
            os.replace(self._problems_tmp, final)
        else:
            os.remove(self._problems_tmp)

    def _document(self, record: dict, filepath: str, line: int):
        """A Document from a record whose text was checked; ids made strings and unique in this task."""
        raw_id = record.get(self.id_key)
        if isinstance(raw_id, (dict, list)):
            self._problem(filepath, line, "bad_id", f"id is a {type(raw_id).__name__}")
            return None
        if raw_id is None:
            record.pop(self.id_key, None)  # datatrove's default: <file>/<line index>
        else:
            record[self.id_key] = str(raw_id)
        document = self.get_document_from_dict(record, filepath, line - 1)
        if document is None:
            return None
        doc_id = str(document.id)
        if doc_id in self._seen_ids:
            new_id = f"{doc_id}@{filepath}:{line}"
            while new_id in self._seen_ids:
                new_id += "+"
            self._problem(filepath, line, "duplicate_id", f"id {doc_id!r} seen before; renamed to {new_id!r}",
                          dropped=0)
            self.stat_update("input_duplicate_id_renamed")
            document.metadata["original_id"] = doc_id
            doc_id = new_id
        document.id = doc_id
        self._seen_ids.add(doc_id)
        return document

    def _text_problem(self, record: dict, filepath: str, line: int) -> bool:
        """Record why the record's text is not usable; False when it is fine."""
        value = record.get(self.text_key)
        if value is None:
            what = "is null" if self.text_key in record else "is missing"
            self._problem(filepath, line, "missing_text", f"field '{self.text_key}' {what}")
        elif not isinstance(value, str):
            self._problem(filepath, line, "non_string_text", f"'{self.text_key}' is a {type(value).__name__}")
        elif not value.strip():
            self._problem(filepath, line, "empty_text", "whitespace only" if value else "empty string")
        else:
            return False
        return True

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._rank = rank
        self._seen_ids = set()
        ok = False
        try:
            yield from super().run(data, rank, world_size)
            ok = True
        finally:
            self._finish_problems(ok)


class _Prepend(io.RawIOBase):
    """`head` followed by the rest of `f`: lets the reader sniff a file without seeking back."""

    def __init__(self, head: bytes, f):
        self.head, self.f = head, f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        # read1: one decompression step at a time, so a file cut short loses only its unreadable tail
        # (a plain read(n) on a truncated gzip drops whatever it had gathered for that call).
        data = self.f.read1(len(b)) if hasattr(self.f, "read1") else self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


def _read_error(e: Exception) -> str:
    """`truncated_file` when compressed data ends early, `unreadable_file` when it is not compressed data."""
    if isinstance(e, EOFError):
        return "truncated_file"
    if isinstance(e, gzip.BadGzipFile) or "not a gzip file" in str(e).lower():
        return "unreadable_file"
    return "truncated_file" if isinstance(e, zlib.error) else "unreadable_file"


class CountingJsonlReader(_ProblemLog, JsonlReader):
    """JsonlReader that counts and records every record it cannot turn into a document.

    Lines are read one at a time (a 50 MB document costs its own size, not the file's).
    """

    name = "🐿 Jsonl (counted)"

    def __init__(self, *args, problems_dir: str | None = None, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_problems(problems_dir, strict)

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            try:
                head = f.read1(SNIFF_BYTES) if hasattr(f, "read1") else f.read(SNIFF_BYTES)
            except (EOFError, OSError, zlib.error) as e:
                self._problem(filepath, 1, _read_error(e), str(e))
                return
            if not head:
                self._problem(filepath, None, "empty_file", "no records", dropped=0, fatal=False)
                return
            binary = next((what for sig, what in _SIGNATURES.items() if head.startswith(sig)), None)
            if binary is None and NUL in head:
                binary = f"binary data (NUL byte at offset {head.index(NUL)})"
            if binary is not None:
                self._problem(filepath, 1, "not_jsonl", f"{binary}; file skipped")
                return
            stream = io.BufferedReader(_Prepend(head, f), buffer_size=1 << 16)
            line_no = 0
            while True:
                try:
                    raw = stream.readline()
                except (EOFError, OSError, zlib.error) as e:  # truncated gzip and friends: the rest is lost
                    self._problem(filepath, line_no + 1, _read_error(e), str(e))
                    return
                if not raw:
                    return
                line_no += 1
                if not raw.strip():
                    continue
                with self.track_time():
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self._problem(filepath, line_no, "invalid_utf8", str(e))
                        continue
                    try:
                        record = orjson.loads(text)
                    except orjson.JSONDecodeError as e:
                        self._problem(filepath, line_no, "malformed_json", str(e))
                        continue
                    del raw, text  # a 50 MB line: keep one copy of it, not three
                    if not isinstance(record, dict):
                        self._problem(filepath, line_no, "not_an_object", type(record).__name__)
                        continue
                    if self._text_problem(record, filepath, line_no):
                        continue
                    document = self._document(record, filepath, line_no)
                if document is not None:
                    yield document


def _is_string_type(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t)


class CountingParquetReader(_ProblemLog, ParquetReader):
    """ParquetReader that checks each file's schema and counts unusable rows (`line` = row, from 1).

    A file whose text column is missing or not a string is skipped whole, with one `wrong_schema`
    problem naming the columns it has and the column it needs.
    """

    name = "📒 Parquet (counted)"

    def __init__(self, *args, problems_dir: str | None = None, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_problems(problems_dir, strict)

    def read_file(self, filepath: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self.data_folder.open(filepath, "rb") as f:
            try:
                pqf = pq.ParquetFile(f)
            except (pa.ArrowException, OSError) as e:
                self._problem(filepath, None, "unreadable_file", f"not a parquet file: {e}")
                return
            with pqf:
                schema = pqf.schema_arrow
                has = ", ".join(f"{fld.name} ({fld.type})" for fld in schema) or "none"
                idx = schema.get_field_index(self.text_key)
                if idx < 0 or not _is_string_type(schema.field(idx).type):
                    got = "has no such column" if idx < 0 else f"is {schema.field(idx).type}"
                    self._problem(filepath, None, "wrong_schema",
                                  f"expects a string column '{self.text_key}', which {got}; columns: {has}",
                                  dropped=pqf.metadata.num_rows)
                    return
                row = 0
                try:
                    for batch in pqf.iter_batches(batch_size=self.batch_size):
                        for record in batch.to_pylist():
                            row += 1
                            with self.track_time():
                                if self._text_problem(record, filepath, row):
                                    continue
                                document = self._document(record, filepath, row)
                            if document is not None:
                                yield document
                except (pa.ArrowException, OSError) as e:
                    self._problem(filepath, row + 1, "truncated_file", f"unreadable from row {row + 1}: {e}")
