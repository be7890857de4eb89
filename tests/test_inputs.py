"""Every input format the recipe model names, read through the runner."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.api import run_recipe
from helpers import read_docs, write_jsonl_gz


def run_input(tmp_path: Path, inp: dict, tasks: int = 1):
    return run_recipe({"name": "in", "input": inp, "output": str(tmp_path / "out"),
                       "executor": {"tasks": tasks}, "stages": ["normalize"]})


def test_parquet_input_with_custom_keys(tmp_path):
    pl.DataFrame({"doc": ["x1", "x2"], "body": ["first text", "second text"], "lang": ["en", "de"]}).write_parquet(
        tmp_path / "p.parquet")
    res = run_input(tmp_path, {"format": "parquet", "paths": str(tmp_path / "p.parquet"), "text_key": "body",
                               "id_key": "doc"})
    docs = read_docs(res.final_documents)
    assert [(d["id"], d["text"], d["metadata"]["lang"]) for d in docs] == [("x1", "first text", "en"),
                                                                            ("x2", "second text", "de")]


def test_glob_and_list_of_paths(tmp_path):
    for i in range(3):
        write_jsonl_gz(tmp_path / "d" / f"s{i}.jsonl.gz", [{"id": f"{i}-{j}", "text": f"doc {i} {j}"} for j in range(5)])
    write_jsonl_gz(tmp_path / "d" / "other.jsonl.gz", [{"id": "zz", "text": "not matched"}])
    res = run_input(tmp_path, {"paths": str(tmp_path / "d" / "s*.jsonl.gz")}, tasks=2)
    assert len(read_docs(res.final_documents)) == 15
    res2 = run_recipe({"name": "in2", "input": {"paths": [str(tmp_path / "d" / "s0.jsonl.gz"),
                                                          str(tmp_path / "d" / "other.jsonl.gz")]},
                       "output": str(tmp_path / "out2"), "stages": ["normalize"]})
    assert sorted(d["id"] for d in read_docs(res2.final_documents)) == ["0-0", "0-1", "0-2", "0-3", "0-4", "zz"]


def test_folder_input_reads_every_file(tmp_path):
    for i in range(2):
        write_jsonl_gz(tmp_path / "d" / f"s{i}.jsonl.gz", [{"id": f"{i}", "text": f"doc {i}"}])
    res = run_input(tmp_path, {"paths": str(tmp_path / "d")})
    assert len(read_docs(res.final_documents)) == 2


def test_warc_input(tmp_path, shared_data):
    res = run_input(tmp_path, {"format": "warc", "paths": str(shared_data / "warc")})
    docs = read_docs(res.final_documents)
    assert 10 <= len(docs) <= 44  # HTTP responses with a body; datatrove skips other record types
    assert all(d["text"].strip() for d in docs)


def test_huggingface_input_from_local_files(tmp_path):
    pytest.importorskip("datasets")
    write_jsonl_gz(tmp_path / "hf" / "train.jsonl.gz", [{"id": str(i), "text": f"hugging {i}"} for i in range(4)])
    res = run_input(tmp_path, {"format": "huggingface", "dataset": "json",
                               "dataset_options": {"data_files": str(tmp_path / "hf" / "train.jsonl.gz")}})
    assert sorted(d["text"] for d in read_docs(res.final_documents)) == [f"hugging {i}" for i in range(4)]
