"""Readers for a recipe's `input:` and for the documents that flow between phases.

Local jsonl and parquet input go through the counting readers of `curate/readers.py`: every record
they cannot use is counted (`dropped_input_<reason>` in the phase's stats) and listed with its file
and line in `OUT/<phase>/problems/<rank>.jsonl`, so nothing leaves the run silently.
Document sets are written under temporary names and renamed when complete, so a killed or failed
task never leaves a file that looks finished.
"""

from __future__ import annotations

import glob
import os

from datatrove.io import OutputFileManager
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from curate.atomic import atomic_path, partial_name, with_path
from curate.plan import DOCUMENTS_GLOB
from curate.readers import BadInputError, CountingJsonlReader, CountingParquetReader  # noqa: F401 (re-exported)
from curate.recipe import InputConfig


_GZIP_FIXED = "gzip_mtime0"


def _register_fixed_gzip() -> None:
    """A gzip codec for fsspec that writes mtime 0, so the same documents give the same bytes."""
    import gzip

    import fsspec.compression as compression

    if _GZIP_FIXED not in compression.compr:
        compression.register_compression(
            _GZIP_FIXED, lambda f, mode="rb", **kw: gzip.GzipFile(fileobj=f, mode=mode, mtime=0), extensions=[]
        )


def _raise_named(e: OSError, path: str):
    named = with_path(e, path)
    if named is e:
        raise e
    raise named from e


class _PartialFileManager(OutputFileManager):
    """Opens every output file under its `.partial` name; `publish` renames them, `discard` deletes them."""

    def get_file(self, filename):
        if filename not in self._output_files:
            self._output_files[filename] = self.fs.open(partial_name(filename), mode=self.mode,
                                                        compression=self.compression)
        return self._output_files[filename]

    def publish(self) -> None:
        names = list(self._output_files)
        try:
            super().close()
        except Exception:
            self.discard(names)
            raise
        for name in names:
            if self.fs.isdir(name):  # `mv` would move the file *into* it and report success
                self.discard(names)
                raise IsADirectoryError(f"cannot write documents to {self.fs.path.rstrip('/')}/{name}: a folder is in the way")
            self.fs.mv(partial_name(name), name)

    def discard(self, names=None) -> None:
        names = list(self._output_files) if names is None else names
        for f in self._output_files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - already failing; the partial file is deleted below
                pass
        self._output_files.clear()
        for name in names:
            if self.fs.exists(partial_name(name)):
                self.fs.rm(partial_name(name))

    def close(self) -> None:  # datatrove's own close paths (e.g. __exit__) publish
        self.publish()


class DocumentsWriter(JsonlWriter):
    """The writer of every document set between phases, byte-identical across reruns.

    datatrove's gzip output embeds the time of writing in each file's header; this one does not.
    `parts > 1` splits each task's output round-robin into that many files (`<rank>_<part>.jsonl.gz`):
    the input pass uses it when the input has fewer files than tasks, so that every later phase has
    work for all its tasks (datatrove shards by file, and one big file would leave all but one idle).
    Files are written as `<name>.partial` and renamed when the task has written its last document; a
    task that fails deletes them, a killed one leaves only `.partial` names, which no reader lists.
    """

    name = "🐿 Jsonl (documents)"

    def __init__(self, output_folder: str, parts: int = 1):
        filename = "${rank}.jsonl.gz" if parts <= 1 else "${rank}_${part}.jsonl.gz"
        super().__init__(output_folder, output_filename=filename, compression="gzip")
        self.parts = max(1, parts)
        _register_fixed_gzip()
        self.output_mg = _PartialFileManager(self.output_folder, mode="wb", compression=_GZIP_FIXED)

    def run(self, data, rank: int = 0, world_size: int = 1):
        _register_fixed_gzip()  # pool processes import this module afresh
        done = False
        try:
            for i, document in enumerate(data):
                with self.track_time():
                    if self.parts > 1:
                        self.write(document, rank, part=f"{i % self.parts:05d}")
                    else:
                        self.write(document, rank)
                yield document
            done = True
        except OSError as e:  # ENOSPC from a write names no file: say which folder
            _raise_named(e, self.output_folder.path)
        finally:
            if done:
                try:
                    self.output_mg.publish()
                except OSError as e:
                    _raise_named(e, self.output_folder.path)
            else:
                self.output_mg.discard()


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
        with atomic_path(paths_file) as tmp, open(tmp, "w") as f:
            f.write("\n".join(files) + "\n")
    common = dict(limit=inp.limit, text_key=inp.text_key, id_key=inp.id_key, glob_pattern=pattern,
                  paths_file=paths_file)
    if inp.format == "jsonl":
        return CountingJsonlReader(folder, problems_dir=problems, strict=inp.strict, add_file_path=False, **common)
    if inp.format == "parquet":
        return CountingParquetReader(folder, problems_dir=problems, strict=inp.strict, **common)
    if inp.format == "warc":
        from curate.warc_input import CountingWarcReader

        return CountingWarcReader(folder, problems_dir=problems, strict=inp.strict, **common)
    raise ValueError(f"unknown input format {inp.format!r}")


def prepare_input(inp: InputConfig, output_dir: str) -> None:
    """Work done once in the launching process before any task starts: check that nothing under the
    output folder leads outside it (see `curate/paths.py`), build generated corpora."""
    from curate.paths import check_output_tree

    check_output_tree(output_dir)
    if inp.format == "python_docs":
        from stages.io.python_docs import ensure_python_docs

        ensure_python_docs(os.path.join(output_dir, "_corpus", "python_docs"), inp.shards)
