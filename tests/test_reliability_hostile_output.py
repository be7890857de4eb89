"""Hostile output folders and runs: `--overwrite` deletes only what curate wrote inside OUT; a lock keeps
two runs out of one folder; SIGTERM/SIGINT stop the workers and the rerun resumes; a stage that leaves
no documents ends the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, curate_cli, read_docs, synthetic_docs, write_jsonl_gz, write_recipe


def _recipe(data: Path, out: Path, stages=("normalize",), tasks: int = 1, workers: int = 1) -> dict:
    return {"name": "hostile", "input": {"format": "jsonl", "paths": str(data)}, "output": str(out),
            "executor": {"tasks": tasks, "workers": workers}, "stages": list(stages)}


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (target) under `root`, to show nothing there changed."""
    out: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            if p.is_symlink():
                out[str(p.relative_to(root))] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    return write_jsonl_gz(tmp_path / "data" / "a.jsonl.gz", synthetic_docs(20))


def test_overwrite_never_deletes_outside_the_output_folder(tmp_path, small_corpus):
    """A planted run.json names `../..`, an absolute path, a phase linked outside and a nested path:
    `--overwrite` removes only the phase folders curate wrote inside OUT."""
    victim = tmp_path / "victim"  # what a hostile run.json points at
    (victim / "deep").mkdir(parents=True)
    (victim / "deep" / "keep.txt").write_text("precious")
    (victim / "top.txt").write_text("precious too")
    before = _tree(victim)

    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    own = out / "old_phase"  # a phase folder curate wrote: this one may go
    (own / "documents").mkdir(parents=True)
    (own / "documents" / "0.jsonl.gz").write_bytes(b"x")
    (own / "link_out").symlink_to(victim)  # a link inside a deletable phase: removed, target untouched
    (out / "linked_phase").symlink_to(victim / "deep")  # a phase that is a link leading outside
    hostile = {"fingerprint_hash": "not this plan", "phases": [
        {"id": "../.."}, {"id": str(victim)}, {"id": "linked_phase"}, {"id": "old_phase/../../.."},
        {"id": ".."}, {"id": "old_phase"}, {"id": None}, "victim", {"id": ["x"]}]}
    (out / "run.json").write_text(json.dumps(hostile))

    recipe = write_recipe(tmp_path / "r.yaml", _recipe(small_corpus, out))
    res = curate_cli("run", str(recipe), "--overwrite", "--no-report")
    assert "Traceback" not in res.stderr
    assert _tree(victim) == before  # nothing outside OUT touched
    assert (tmp_path / "work").is_dir() and small_corpus.is_file()
    assert not own.exists()  # curate's own phase folder was deleted
    assert (out / "linked_phase").is_symlink()  # the link was neither followed nor removed...
    assert res.returncode == 1  # ...and the run refuses a link leading outside OUT, naming it
    assert "linked_phase is a symbolic link" in res.stderr and "outside the output folder" in res.stderr
    assert "not deleted" in res.stderr  # the refused entries are reported

    (out / "linked_phase").unlink()
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(read_docs(out / "normalize" / "documents")) == 20
    assert _tree(victim) == before


def test_overwrite_with_a_run_json_that_is_not_json_deletes_nothing_else(tmp_path, small_corpus):
    out = tmp_path / "out"
    (out / "keep_me").mkdir(parents=True)
    (out / "run.json").write_text("{not json" + "[" * 5000)
    recipe = write_recipe(tmp_path / "r.yaml", _recipe(small_corpus, out))
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1 and "different recipe or settings" in res.stderr
    res = curate_cli("run", str(recipe), "--overwrite", "--no-report")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "keep_me").is_dir()
