"""Readers for a recipe's `input:` and for the documents that flow between phases.

datatrove's JSONL reader logs and skips a malformed line or a record without text; here every such
record is counted (`dropped_input_<reason>` in the phase's stats) and listed with its file and line
in `OUT/<phase>/problems/<rank>.jsonl`, so nothing leaves the run silently.
"""

from __future__ import annotations

import glob
import json
import os

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from curate.plan import DOCUMENTS_GLOB
from curate.recipe import InputConfig


class BadInputError(ValueError):
    """A bad input record in strict mode: the message names the file and line."""


class CountingJsonlReader(JsonlReader):
    """JsonlReader that counts and records every record it cannot turn into a document."""

    name = "🐿 Jsonl (counted)"

    def __init__(self, *args, problems_dir: str | None = None, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.problems_dir, self.strict = problems_dir, strict
        self._problems = None

    def _problem(self, filepath: str, line: int, reason: str, detail: str = "") -> None:
        if self.strict:
            where = self.data_folder.resolve_paths(filepath)
            raise BadInputError(f"{where}:{line}: {reason.replace('_', ' ')}" + (f" ({detail[:200]})" if detail else ""))
        self.stat_update("dropped_input", f"dropped_input_{reason}")
        if self.problems_dir is None:
            return
        if self._problems is None:
            os.makedirs(self.problems_dir, exist_ok=True)
            self._problems = open(os.path.join(self.problems_dir, f"{self._rank:05d}.jsonl"), "w", encoding="utf-8")
        rec = {"file": self.data_folder.resolve_paths(filepath), "line": line, "reason": reason, "detail": detail[:200]}
        self._problems.write(json.dumps(rec) + "\n")
        self._problems.flush()

    def read_file(self, filepath: str):
        import orjson

        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            line_no = 0
            while True:
                try:
                    raw = f.readline()
                except (EOFError, OSError) as e:  # truncated gzip and friends: the rest is unreadable
                    self._problem(filepath, line_no + 1, "truncated_file", str(e))
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
                    if not isinstance(record, dict):
                        self._problem(filepath, line_no, "not_an_object", type(record).__name__)
                        continue
                    value = record.get(self.text_key)
                    if value is None:
                        self._problem(filepath, line_no, "missing_text", f"no '{self.text_key}' field")
                        continue
                    if not isinstance(value, str):
                        self._problem(filepath, line_no, "non_string_text", type(value).__name__)
                        continue
                    if not value.strip():
                        self._problem(filepath, line_no, "empty_text")
                        continue
                    document = self.get_document_from_dict(record, filepath, line_no - 1)
                if document is not None:
                    yield document

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._rank = rank
        try:
            yield from super().run(data, rank, world_size)
        finally:
            if self._problems is not None:
                self._problems.close()
                self._problems = None


_GZIP_FIXED = "gzip_mtime0"


def _register_fixed_gzip() -> None:
    """A gzip codec for fsspec that writes mtime 0, so the same documents give the same bytes."""
    import gzip

    import fsspec.compression as compression

    if _GZIP_FIXED not in compression.compr:
        compression.register_compression(
            _GZIP_FIXED, lambda f, mode="rb", **kw: gzip.GzipFile(fileobj=f, mode=mode, mtime=0), extensions=[]
        )


class DocumentsWriter(JsonlWriter):
    """The writer of every document set between phases, byte-identical across reruns.

    datatrove's gzip output embeds the time of writing in each file's header; this one does not.
    `parts > 1` splits each task's output round-robin into that many files (`<rank>_<part>.jsonl.gz`):
    the input pass uses it when the input has fewer files than tasks, so that every later phase has
    work for all its tasks (datatrove shards by file, and one big file would leave all but one idle).
    """

    name = "🐿 Jsonl (documents)"

    def __init__(self, output_folder: str, parts: int = 1):
        filename = "${rank}.jsonl.gz" if parts <= 1 else "${rank}_${part}.jsonl.gz"
        super().__init__(output_folder, output_filename=filename, compression="gzip")
        self.parts = max(1, parts)
        _register_fixed_gzip()
        self.output_mg = self.output_folder.get_output_file_manager(mode="wb", compression=_GZIP_FIXED)

    def run(self, data, rank: int = 0, world_size: int = 1):
        _register_fixed_gzip()  # pool processes import this module afresh
        with self:
            for i, document in enumerate(data):
                with self.track_time():
                    if self.parts > 1:
                        self.write(document, rank, part=f"{i % self.parts:05d}")
                    else:
                        self.write(document, rank)
                yield document


def count_input_files(inp: InputConfig) -> int | None:
    """How many files a local input names (None when it cannot be known before reading)."""
    if inp.format not in ("jsonl", "parquet", "warc") or inp.paths is None:
        return None
    paths = [inp.paths] if isinstance(inp.paths, str) else inp.paths
    n = 0
    for p in paths:
        if "://" in p:
            return None
        if glob.has_magic(p):
            n += len(glob.glob(p, recursive=True))
        elif os.path.isdir(p):
            n += sum(len(files) for _, _, files in os.walk(p))
        else:
            n += 1
    return n


def documents_reader(folder: str) -> JsonlReader:
    """Reader of a document set written by a previous phase."""
    return JsonlReader(folder, glob_pattern=DOCUMENTS_GLOB, add_file_path=False)


def _split_paths(paths: str | list[str]) -> tuple[str, str | None, list[str] | None]:
    """Map `paths` onto datatrove's (data_folder, glob_pattern) or a list of files under one folder."""
    if isinstance(paths, list) and len(paths) == 1:
        paths = paths[0]
    if isinstance(paths, str):
        if "://" in paths:
            return paths, None, None
        if glob.has_magic(paths):
            parts = paths.split(os.sep)
            i = next(i for i, p in enumerate(parts) if glob.has_magic(p))
            folder = os.sep.join(parts[:i]) or "."
            return folder, os.sep.join(parts[i:]), None
        if os.path.isdir(paths):
            return paths, None, None
        return os.path.dirname(paths) or ".", os.path.basename(paths), None
    files: list[str] = []
    for p in paths:
        files.extend(sorted(glob.glob(p, recursive=True)) if glob.has_magic(p) else [p])
    files = [os.path.abspath(f) for f in files]
    folder = os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0])
    if os.path.isfile(folder):
        folder = os.path.dirname(folder)
    return folder, None, [os.path.relpath(f, folder) for f in files]


def input_reader(inp: InputConfig, output_dir: str, phase_dir: str):
    """Build the datatrove reader for a recipe's `input:` section."""
    problems = os.path.join(phase_dir, "problems")
    if inp.format == "python_docs":
        from stages.io.python_docs import PythonDocsReader

        return PythonDocsReader(os.path.join(output_dir, "_corpus", "python_docs"), inp.shards, limit=inp.limit)
    if inp.format == "huggingface":
        from datatrove.pipeline.readers import HuggingFaceDatasetReader

        options = {"split": inp.split, **inp.dataset_options}
        if inp.dataset_config:
            options["name"] = inp.dataset_config
        return HuggingFaceDatasetReader(
            inp.dataset, dataset_options=options, streaming=inp.streaming, limit=inp.limit,
            text_key=inp.text_key, id_key=inp.id_key,
        )
    folder, pattern, files = _split_paths(inp.paths)
    paths_file = None
    if files is not None:
        paths_file = os.path.join(phase_dir, "input_paths.txt")
        os.makedirs(phase_dir, exist_ok=True)
        with open(paths_file, "w") as f:
            f.write("\n".join(files) + "\n")
    common = dict(limit=inp.limit, text_key=inp.text_key, id_key=inp.id_key, glob_pattern=pattern,
                  paths_file=paths_file)
    if inp.format == "jsonl":
        return CountingJsonlReader(folder, problems_dir=problems, strict=inp.strict, add_file_path=False, **common)
    if inp.format == "parquet":
        from datatrove.pipeline.readers import ParquetReader

        return ParquetReader(folder, **common)
    if inp.format == "warc":
        from datatrove.pipeline.readers import WarcReader

        return WarcReader(folder, **common)
    raise ValueError(f"unknown input format {inp.format!r}")


def prepare_input(inp: InputConfig, output_dir: str) -> None:
    """Work done once in the launching process before any task starts (building generated corpora)."""
    if inp.format == "python_docs":
        from stages.io.python_docs import ensure_python_docs

        ensure_python_docs(os.path.join(output_dir, "_corpus", "python_docs"), inp.shards)
