"""Readers for a recipe's `input:` (the documents that flow between phases are `curate/documents.py`).

Local jsonl and parquet input go through the counting readers of `curate/readers.py`: every record
they cannot use is counted (`dropped_input_<reason>` in the phase's stats) and listed with its file
and line in `OUT/<phase>/problems/<rank>.jsonl`, so nothing leaves the run silently. `python_docs`
is the generated quickstart corpus (`curate/python_docs.py`).
"""

from __future__ import annotations

import glob
import os

from datatrove.pipeline.readers import HuggingFaceDatasetReader

from curate.atomic import atomic_path
from curate.paths import check_output_tree
from curate.python_docs import PythonDocsReader, ensure_python_docs
from curate.readers import CountingJsonlReader, CountingParquetReader
from curate.recipe import InputConfig
from curate.warc_input import CountingWarcReader


def input_bytes(inp: InputConfig, output_dir: str) -> int | None:
    """Bytes on disk of a local input (after `prepare_input`), None when not known (remote, a dataset)."""
    if inp.format == "python_docs":
        paths: list[str] = [os.path.join(output_dir, "_corpus", "python_docs")]
    elif inp.format in ("jsonl", "parquet", "warc") and inp.paths is not None:
        paths = [inp.paths] if isinstance(inp.paths, str) else list(inp.paths)
    else:
        return None
    files: list[str] = []
    for p in paths:
        if "://" in p:
            return None
        if glob.has_magic(p):
            files += glob.glob(p, recursive=True)
        elif os.path.isdir(p):
            files += [os.path.join(d, f) for d, _, names in os.walk(p) for f in names]
        else:
            files.append(p)
    return sum(os.path.getsize(f) for f in files if os.path.isfile(f))


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
        return PythonDocsReader(os.path.join(output_dir, "_corpus", "python_docs"), inp.shards, limit=inp.limit)
    if inp.format == "huggingface":
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
        return CountingWarcReader(folder, problems_dir=problems, strict=inp.strict, **common)
    raise ValueError(f"unknown input format {inp.format!r}")


def prepare_input(inp: InputConfig, output_dir: str) -> None:
    """Work done once in the launching process before any task starts: check that nothing under the
    output folder leads outside it (see `curate/paths.py`), build generated corpora."""
    check_output_tree(output_dir)
    if inp.format == "python_docs":
        ensure_python_docs(os.path.join(output_dir, "_corpus", "python_docs"), inp.shards)
