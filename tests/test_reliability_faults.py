"""Faults: a run killed at random points and resumed gives byte-identical output; a full disk or an
unwritable output folder fails with a message naming the path and leaves no file a rerun would trust.

Kill points: each seed draws how many tasks (over all phases) must have finished, then a delay of up
to 0.3 s; the seeds are listed in KILL_SEEDS (the first runs by default, the others with the slow tests).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, curate_cli, synthetic_docs, write_jsonl_gz, write_recipe

KILL_SEEDS = [16, 2, 3, 5, 23]  # kill after 11, 1, 7, 19, 24 of the 28 tasks
BOOKKEEPING = {"logs", "stats", "completions", "progress"}  # datatrove's per-task records, timing-dependent
VOLATILE_FILES = {"run.json", "executor.json", "stats.json", "report.html"}


def data_files(out: Path) -> dict[str, str]:
    """sha256 of every data file of a run (documents, artifacts, problems, report figures), by path."""
    digests = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if not path.is_file() or BOOKKEEPING & set(rel.parts) or path.name in VOLATILE_FILES:
            continue
        digests[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def temp_names(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial"))


def trusted_files_are_whole(out: Path) -> None:
    """Every file a reader would pick up (the names the stages glob for) reads to its end."""
    import polars as pl

    for path in out.rglob("*.jsonl.gz"):
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    for path in out.rglob("*.parquet"):
        pl.read_parquet(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "data"
    docs = synthetic_docs(1200, dup_every=7)
    for i in range(4):
        write_jsonl_gz(folder / f"part{i}.jsonl.gz", docs[i * 300:(i + 1) * 300])
    (folder / "part4.jsonl").write_text('{"id": "bad", "text": 3}\n{not json\n')  # problems files too
    return folder


def recipe_dict(data: Path, out: Path) -> dict:
    return {"name": "faults", "input": {"paths": str(data)}, "output": str(out),
            "executor": {"tasks": 3, "workers": 1},  # one process: ~8 s a run on a busy 2-core machine
            "stages": ["normalize", "exact_dedup", "minhash_dedup", {"normalize": {"form": "NFC"}}]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> tuple[dict[str, str], float, int]:
    """An uninterrupted run: its data-file digests, its wall time and its number of tasks (all phases)."""
    base = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(base / "r.yaml", recipe_dict(corpus, base / "out"))
    t0 = time.monotonic()
    res = curate_cli("run", str(recipe), "--no-report")
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    return data_files(base / "out"), wall, _completions(base / "out")


def _completions(out: Path) -> int:
    return sum(len(os.listdir(d)) for d in out.glob("*/completions") if d.is_dir())


@pytest.mark.parametrize("seed", [KILL_SEEDS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in KILL_SEEDS[1:])])
def test_run_killed_at_a_random_point_resumes_to_byte_identical_output(tmp_path, corpus, reference, seed):
    """The seed picks how many tasks (over all phases) finish before the kill, and a delay after that,
    so kills land inside any phase, mid-task included."""
    expected, _, total_tasks = reference
    rng = random.Random(seed)
    after_tasks, delay = rng.randrange(0, total_tasks - 1), rng.uniform(0.0, 0.3)
    recipe = write_recipe(tmp_path / "r.yaml", recipe_dict(corpus, tmp_path / "out"))
    cmd = [sys.executable, "-m", "curate.cli", "run", str(recipe), "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "out"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and _completions(out) < after_tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every task process at once
    proc.wait()
    done = _completions(out)
    print(f"seed {seed}: kill after {after_tasks} tasks + {delay:.2f}s; killed={killed} with {done}/{total_tasks} done")
    assert killed, "the run finished before its kill point"
    trusted_files_are_whole(out)
    resumed = curate_cli("run", str(recipe), "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert data_files(out) == expected, f"seed {seed}: killed after {after_tasks} tasks + {delay:.2f}s"
    # what a killed task left under temporary names is never read: no reader globs those names
    assert all(not n.endswith((".jsonl.gz", ".parquet", ".npy", ".json")) for n in temp_names(out))


# ---------------------------------------------------------------------------------------------------
# full disk / unwritable output


def _mounted_tmpfs(folder: Path, options: str):
    """A tmpfs mounted at `folder` (we are root in CI's container); skipped where mounting is not allowed."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB disk, to fill."""
    yield from _mounted_tmpfs(tmp_path / "mnt", "size=256k")


def test_atomic_writers_on_a_full_disk_name_the_file_and_leave_nothing(tiny_disk):
    import numpy as np
    import polars as pl

    from curate.atomic import write_json_atomic, write_numpy_atomic, write_parquet_atomic

    big = np.random.default_rng(0).random(200_000)
    cases = [(write_parquet_atomic, pl.DataFrame({"x": big}), "t.parquet"), (write_numpy_atomic, big, "v.npy"),
             (write_json_atomic, {"x": big.tolist()}, "m.json")]
    for write, obj, name in cases:
        target = tiny_disk / "art" / name
        with pytest.raises(OSError) as e:
            write(obj, str(target))
        assert "No space left on device" in str(e.value) and str(target) in str(e.value), (name, str(e.value))
        assert os.listdir(tiny_disk / "art") == [], name


def test_documents_writer_on_a_full_disk_names_the_folder_and_publishes_nothing(tiny_disk):
    from datatrove.data import Document

    from curate.documents import DocumentsWriter

    docs = [Document(text=random.Random(i).randbytes(20000).hex(), id=str(i)) for i in range(30)]
    folder = tiny_disk / "documents"
    with pytest.raises(OSError) as e:
        for _ in DocumentsWriter(str(folder)).run(iter(docs), rank=0):
            pass
    assert "No space left on device" in str(e.value) and str(folder) in str(e.value)
    assert os.listdir(folder) == []  # no complete-looking file, and no partial one either


def test_full_disk_fails_the_run_and_a_rerun_with_space_completes_identically(tmp_path, corpus, reference, tiny_disk):
    recipe = write_recipe(tmp_path / "r.yaml", recipe_dict(corpus, tiny_disk / "out"))
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1
    assert "No space left on device" in res.stderr
    assert str(tiny_disk / "out") in res.stderr
    trusted_files_are_whole(tiny_disk / "out")
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = curate_cli("run", str(recipe), "--no-report")
    assert again.returncode == 0, again.stderr[-3000:]
    assert data_files(tiny_disk / "out") == reference[0]


def test_full_disk_error_is_one_clear_message_without_tracebacks(tmp_path, corpus, tiny_disk):
    recipe = write_recipe(tmp_path / "r.yaml", recipe_dict(corpus, tiny_disk / "out"))
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "Logging error" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.fixture
def read_only_dir(tmp_path):
    yield from _mounted_tmpfs(tmp_path / "ro", "ro,size=64k")


def test_unwritable_output_folder_fails_with_the_path_and_writes_nothing(tmp_path, corpus, read_only_dir):
    recipe = write_recipe(tmp_path / "r.yaml", recipe_dict(corpus, read_only_dir / "out"))
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1
    assert "Read-only file system" in res.stderr and str(read_only_dir / "out") in res.stderr
    assert os.listdir(read_only_dir) == []


def test_unwritable_output_folder_error_is_one_line(tmp_path, corpus, read_only_dir):
    recipe = write_recipe(tmp_path / "r.yaml", recipe_dict(corpus, read_only_dir / "out"))
    res = curate_cli("run", str(recipe), "--no-report")
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_failing_task_prints_no_traceback_on_the_console(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n')
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "strict", "input": {"paths": str(bad), "strict": True},
                                               "output": str(tmp_path / "out"), "stages": ["normalize"]})
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1 and f"{bad}:2: missing text" in res.stderr
    assert "Traceback" not in res.stderr, res.stderr[-2000:]


def test_documents_writer_refuses_a_folder_in_the_way(tmp_path):
    """fsspec's `mv` would move the finished file *into* a folder at its path and report success."""
    from datatrove.data import Document

    from curate.documents import DocumentsWriter

    blocked = tmp_path / "docs"
    (blocked / "00000.jsonl.gz").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=r"docs/00000\.jsonl\.gz: a folder is in the way"):
        with DocumentsWriter(str(blocked)) as w:
            w.write(Document(text="a", id="1"), rank=0)
    assert os.listdir(blocked / "00000.jsonl.gz") == [] and sorted(os.listdir(blocked)) == ["00000.jsonl.gz"]
