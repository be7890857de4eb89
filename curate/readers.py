"""Readers of a recipe's local input that count and explain every record they cannot use.

datatrove's own readers log and skip a malformed line, a record without text or an unreadable file;
here every such record is counted in the phase's stats (`dropped_input_<reason>`, and the total in
`dropped_input`) and listed with its file and line (parquet: row) in `OUT/<phase>/problems/<rank>.jsonl`,
which `curate report` shows. With `input.strict: true` the first problem stops the run instead
(`BadInputError`, naming `file:line`).

Reasons (dropped): `malformed_json`, `not_an_object`, `missing_text`, `non_string_text`, `empty_text`
(empty or whitespace only), `invalid_utf8`, `bad_id` (an id that is a list or mapping), `too_deep`
(nested past `record_rules.MAX_NESTING`), `not_jsonl` (another format's signature, or NUL bytes and no
JSON line, in the first 8 KiB: one problem for the whole file), `truncated_file` (compressed data ends
early: the records before the cut are kept, the one cut counts as dropped; how many followed it cannot
be known), `unreadable_file` (not gzip/zstd/parquet although named so, a dangling link, no permission),
`wrong_schema` (parquet without a string text column; every row of the file counts as dropped).
Listed but not dropped (and not fatal... except in strict mode, where every listed problem is):
`duplicate_id`, `id_replaced`, `big_int_as_string`, `media_as_metadata`, `utf16_decoded`,
`converted_values` (see `curate/record_rules.py` and `curate/input_files.py`); `not_a_file` (a FIFO,
socket or device, skipped unopened) and `empty_file` (no bytes) are never fatal.

Every file's balance (records in it = documents read + records dropped) is written to
`OUT/<phase>/input_files/<rank>.jsonl`; `curate report` sums it and names any file that does not balance.

Duplicate ids are not dropped (the texts may differ): the later document is renamed to
`<id>@<file>:<line>`, keeps its original id in `metadata.original_id`, and is listed as a
`duplicate_id` problem (counted as `input_duplicate_id_renamed`). Ids are compared within one input
task, so with `tasks > 1` a repeat that another task reads is not seen here.

Sharding: with at least as many files as tasks, each task reads whole files (datatrove's file
shards). With fewer files than tasks (one big file, say), every task reads every file and keeps every
`tasks`-th record (task r: records r, r + tasks, ...; blank lines do not count), so all tasks share
the work of the first pass; each task still decompresses and splits the whole input, but parses
(and cleans, filters, ...) only its own records. A problem with a whole file is reported once (task 0).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib

import orjson
from datatrove.io import get_shard_from_paths_file
from datatrove.pipeline.readers import JsonlReader, ParquetReader

from curate.atomic import partial_name
from curate.input_files import (NUL, SNIFF_BYTES, Utf16Lines, ZstdStream, binary_verdict, file_problem, split_records,
                                utf16_encoding)
from curate.record_rules import RecordTooDeep, id_verdict, jsonable_original, parse_json_record, valid_media

# problems that drop nothing and never stop a strict run
_NEVER_FATAL = {"empty_file", "not_a_file"}


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
        self._balance = None
        self._balance_tmp = None
        self._seen_ids: set[str] = set()
        self._rank = 0
        self._stride = (0, 1)  # (this task, tasks) when tasks share files record by record; see the module doc
        self._record = 0

        self._file = None  # [records, documents, dropped] of the file being read

    def _take(self) -> bool:
        """Whether the next record of the input belongs to this task (always, with whole-file shards)."""
        mine, every = self._stride
        index, self._record = self._record, self._record + 1
        return every == 1 or index % every == mine

    def _file_problem_is_mine(self) -> bool:
        """A problem with a whole file is seen by every task that shares the file: task 0 reports it."""
        return self._stride[1] == 1 or self._stride[0] == 0

    def _all_files(self) -> list[str]:
        if self.paths_file:
            return list(get_shard_from_paths_file(self.paths_file, 0, 1))
        return self.data_folder.get_shard(0, 1, recursive=self.recursive, glob_pattern=self.glob_pattern) or []

    def _where(self, filepath: str) -> str:
        return self.data_folder.resolve_paths(filepath)

    def _open_log(self, kind: str):
        folder = self.problems_dir if kind == "problems" else os.path.join(os.path.dirname(self.problems_dir), kind)
        os.makedirs(folder, exist_ok=True)
        tmp = partial_name(os.path.join(folder, f"{self._rank:05d}.jsonl"))
        return tmp, open(tmp, "w", encoding="utf-8")

    def _problem(self, filepath: str, line: int | None, reason: str, detail: str = "", dropped: int = 1,
                 fatal: bool = True, whole_file: bool = False) -> None:
        if whole_file and not self._file_problem_is_mine():
            return
        where = self._where(filepath)
        if self.strict and fatal and reason not in _NEVER_FATAL:
            at = f"{where}:{line}" if line is not None else where
            raise BadInputError(f"{at}: {reason.replace('_', ' ')}" + (f" ({detail[:300]})" if detail else "")) from None
        if dropped:
            self.stat_update("dropped_input", value=dropped)
            self.stat_update(f"dropped_input_{reason}", value=dropped)
            if self._file is not None:
                self._file[2] += dropped
        if self.problems_dir is None:
            return
        if self._problems is None:
            self._problems_tmp, self._problems = self._open_log("problems")
        rec = {"file": where, "line": line, "reason": reason, "detail": detail[:300], "dropped": dropped}
        self._problems.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def _note(self, filepath: str, line: int | None, reason: str, detail: str) -> None:
        """A record kept after a conversion: listed and counted (`input_<reason>`), not dropped."""
        self._problem(filepath, line, reason, detail, dropped=0)
        self.stat_update(f"input_{reason}")

    def _read_counted(self, filepath: str, records):
        """Wrap one file's document stream with its balance: records seen = documents + dropped."""
        self._file = [0, 0, 0]
        complete = False
        try:
            for document in records:
                self._file[1] += 1
                yield document
            complete = True
        finally:
            records_seen, docs, dropped = self._file
            self._file = None
            if self.problems_dir is not None:
                if self._balance is None:
                    self._balance_tmp, self._balance = self._open_log("input_files")
                entry = {"file": self._where(filepath), "records": records_seen, "documents": docs,
                         "dropped": dropped, "complete": complete}
                self._balance.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _whole_file_problem(self, filepath: str, line: int | None, reason: str, detail: str = "",
                            dropped: int = 1) -> None:
        """A problem with a whole file (or the unreadable rest of it), its records counted as seen and
        dropped. When tasks share a file record by record, task 0 alone reports it."""
        if not self._file_problem_is_mine():
            return
        self._record_seen(dropped or 0)
        self._problem(filepath, line, reason, detail, dropped=dropped)

    def _record_seen(self, n: int = 1) -> None:
        if self._file is not None:
            self._file[0] += n

    def _finish_logs(self, ok: bool) -> None:
        """Publish the problems and balance files when the task read everything; a failed task leaves none."""
        for handle, tmp in ((self._problems, self._problems_tmp), (self._balance, self._balance_tmp)):
            if handle is None:
                continue
            handle.close()
            if ok:
                os.replace(tmp, tmp[: -len(".partial")])
            else:
                os.remove(tmp)
        self._problems = self._balance = None

    def _file_level_problem(self, filepath: str) -> bool:
        """A path that must not be opened (FIFO, dangling link): recorded; True to skip it."""
        found = file_problem(self.data_folder, filepath)
        if found is None:
            return False
        reason, detail, dropped = found
        self._whole_file_problem(filepath, None, reason, detail, dropped=dropped)
        if reason == "not_a_file" and self._file_problem_is_mine():
            self.stat_update("input_skipped_not_a_file")
        return True

    def _document(self, record: dict, filepath: str, line: int):
        """A Document from a record whose text was checked; ids made strings and unique in this task."""
        verdict, value = id_verdict(record.get(self.id_key))
        if verdict == "drop":
            self._problem(filepath, line, "bad_id", value)
            return None
        original = None
        if verdict == "keep":
            record[self.id_key] = value
        else:
            if verdict == "replace":
                original = jsonable_original(record[self.id_key])
                self._note(filepath, line, "id_replaced", f"{value}; the positional id is used instead")
            record.pop(self.id_key, None)  # datatrove's default: <file>/<line index>
        if "media" in record and not valid_media(record["media"]):
            self._note(filepath, line, "media_as_metadata", f"'media' is a {type(record['media']).__name__}, "
                       "not a list of media objects; kept as metadata.media")
            media = record.pop("media")
        else:
            media = None
        document = self.get_document_from_dict(record, filepath, line - 1)
        if document is None:  # cannot happen after _text_problem; counted rather than lost if it does
            self._problem(filepath, line, "missing_text", "the reader made no document of this record")
            return None
        if media is not None:
            document.metadata["media"] = media
        if original is not None:
            document.metadata["original_id"] = original
        doc_id = str(document.id)
        if doc_id in self._seen_ids:
            new_id = f"{doc_id}@{filepath}:{line}"
            while new_id in self._seen_ids:
                new_id += "+"
            self._problem(filepath, line, "duplicate_id", f"id {doc_id!r} seen before; renamed to {new_id!r}",
                          dropped=0)
            self.stat_update("input_duplicate_id_renamed")
            document.metadata.setdefault("original_id", doc_id)
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
        self._record = 0
        self._stride = (0, 1)
        ok = False
        try:
            if world_size > 1 and len(self._all_files()) < world_size:
                # fewer files than tasks: every task reads them all and keeps its share of the records
                self._stride = (rank, world_size)
                yield from super().run(data, 0, 1)
            else:
                yield from super().run(data, rank, world_size)
            ok = True
        finally:
            self._finish_logs(ok)


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


_READ_ERRORS = (EOFError, OSError, zlib.error, UnicodeDecodeError)


class CountingJsonlReader(_ProblemLog, JsonlReader):
    """JsonlReader that counts and records every record it cannot turn into a document.

    Lines are read one at a time (a 50 MB document costs its own size, not the file's).
    """

    name = "🐿 Jsonl (counted)"

    def __init__(self, *args, problems_dir: str | None = None, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_problems(problems_dir, strict)

    def read_file(self, filepath: str):
        return self._read_counted(filepath, self._read_jsonl(filepath))

    def _open(self, filepath: str):
        if filepath.endswith(".zst") and self.compression == "infer":
            return ZstdStream(self.data_folder.open(filepath, "rb"))
        return self.data_folder.open(filepath, "rb", compression=self.compression)

    def _read_jsonl(self, filepath: str):
        if self._file_level_problem(filepath):
            return
        try:
            f = self._open(filepath)
        except OSError as e:  # no read permission, a folder in a file's place, ...
            self._whole_file_problem(filepath, None, "unreadable_file", f"cannot open: {e.strerror or e}")
            return
        with f:
            try:
                head = f.read1(SNIFF_BYTES) if hasattr(f, "read1") else f.read(SNIFF_BYTES)
            except (EOFError, OSError, zlib.error) as e:
                self._whole_file_problem(filepath, 1, _read_error(e), str(e))
                return
            if not head:
                self._problem(filepath, None, "empty_file", "no records", dropped=0, fatal=False, whole_file=True)
                return
            encoding = utf16_encoding(head)
            binary = None if encoding else binary_verdict(head)
            if binary is not None:
                self._whole_file_problem(filepath, 1, "not_jsonl", f"{binary}; file skipped")
                return
            stream = io.BufferedReader(_Prepend(head, f), buffer_size=1 << 16)
            if encoding:
                self._note(filepath, None, "utf16_decoded", f"{encoding} text, not UTF-8; decoded record by record")
                stream = Utf16Lines(stream, encoding)
            line_no = 0
            while True:
                try:
                    raw = stream.readline()
                except _READ_ERRORS as e:  # truncated gzip/zstd and friends: the rest is lost
                    reason = "invalid_utf8" if isinstance(e, UnicodeDecodeError) else _read_error(e)
                    self._whole_file_problem(filepath, line_no + 1, reason,
                                             f"{e}; the rest of the file cannot be read (how many records it held is unknown)")
                    return
                if not raw:
                    return
                for piece in split_records(raw):
                    line_no += 1
                    if not piece.strip() or not self._take():
                        continue
                    self._file[0] += 1  # a record seen (the file's balance)
                    with self.track_time():
                        document = self._parse_line(piece, filepath, line_no)
                    if document is not None:
                        yield document
                del raw

    def _parse_line(self, raw: bytes, filepath: str, line_no: int):
        try:
            record, big_ints = parse_json_record(raw)  # orjson checks the UTF-8 too
        except orjson.JSONDecodeError as e:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:  # say why: the bytes, not the JSON
                self._problem(filepath, line_no, "invalid_utf8", str(bad))
                return None
            # orjson itself stops at 1024 levels
            self._problem(filepath, line_no, "too_deep" if "depth limit" in str(e) else "malformed_json", str(e))
            return None
        except RecordTooDeep as e:
            self._problem(filepath, line_no, "too_deep", str(e))
            return None
        if not isinstance(record, dict):
            self._problem(filepath, line_no, "not_an_object", type(record).__name__)
            return None
        if self._text_problem(record, filepath, line_no):
            return None
        if big_ints:
            self._note(filepath, line_no, "big_int_as_string",
                       f"{big_ints} integer(s) beyond 64 bits kept exactly, as decimal strings")
        return self._document(record, filepath, line_no)


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
        return self._read_counted(filepath, self._read_parquet(filepath))

    def _read_parquet(self, filepath: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from curate.record_rules import arrow_needs_conversion, to_json_value

        if self._file_level_problem(filepath):
            return
        try:
            f = self.data_folder.open(filepath, "rb")
        except OSError as e:
            self._whole_file_problem(filepath, None, "unreadable_file", f"cannot open: {e.strerror or e}")
            return
        with f:
            try:
                pqf = pq.ParquetFile(f)
            except (pa.ArrowException, OSError) as e:
                self._whole_file_problem(filepath, None, "unreadable_file", f"not a parquet file: {e}")
                return
            with pqf:
                schema = pqf.schema_arrow
                n_rows = pqf.metadata.num_rows
                has = ", ".join(f"{fld.name} ({fld.type})" for fld in schema) or "none"
                idx = schema.get_field_index(self.text_key)
                if idx < 0 or not _is_string_type(schema.field(idx).type):
                    got = "has no such column" if idx < 0 else f"is {schema.field(idx).type}"
                    self._whole_file_problem(filepath, None, "wrong_schema",
                                  f"expects a string column '{self.text_key}', which {got}; columns: {has}",
                                  dropped=n_rows)
                    return
                convert = [fld.name for fld in schema if fld.name != self.text_key and arrow_needs_conversion(fld.type)]
                if convert:
                    self._note(filepath, None, "converted_values",
                               f"columns with no JSON form written as strings: {', '.join(convert)}")
                row = 0
                try:
                    for batch in pqf.iter_batches(batch_size=self.batch_size):
                        for record in batch.to_pylist():
                            row += 1
                            if not self._take():
                                continue
                            self._record_seen()
                            with self.track_time():
                                for name in convert:
                                    record[name] = to_json_value(record[name])
                                if self._text_problem(record, filepath, row):
                                    continue
                                document = self._document(record, filepath, row)
                            if document is not None:
                                yield document
                except (pa.ArrowException, OSError) as e:
                    lost = max(n_rows - row, 1)  # the footer says how many rows the file holds
                    self._whole_file_problem(filepath, row + 1, "truncated_file",
                                             f"unreadable from row {row + 1} ({lost} rows lost): {e}", dropped=lost)
