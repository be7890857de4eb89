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


def _recipe(data: Path, out: Path, stages=("normalize",), tasks: int = 1, workers: int = 1,
            in_process_mb: float = 0) -> dict:
    # in_process_mb 0: worker processes even for small inputs, as the signal and lock tests need
    return {"name": "hostile", "input": {"format": "jsonl", "paths": str(data)}, "output": str(out),
            "executor": {"tasks": tasks, "workers": workers, "in_process_mb": in_process_mb}, "stages": list(stages)}


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
    assert not (out / ".curate.lock").exists()  # a run that ends leaves its output without a lock file
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


# ---------------------------------------------------------------------------------------------------
# signals


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (in a container nobody may reap it)


@pytest.fixture(scope="module")
def slow_corpus(tmp_path_factory) -> Path:
    """Enough documents that the first phase runs for several seconds with two workers."""
    folder = tmp_path_factory.mktemp("slow") / "data"
    docs = synthetic_docs(24_000)
    for i in range(8):
        write_jsonl_gz(folder / f"part{i}.jsonl.gz", docs[i * 3000:(i + 1) * 3000])
    return folder


def _start(recipe: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(recipe), "--no-report"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group, as a shell job would be


def _wait_for_documents(out: Path, phase: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the phase's workers have read documents (they are running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        total = 0
        for f in (out / phase / "progress").glob("0*"):
            try:
                total += int(f.read_text() or 0)
            except (OSError, ValueError):
                pass
        if total > 0:
            return
        time.sleep(0.05)
    raise AssertionError("the phase never started")


@pytest.mark.slow  # two runs of ~15 s each per signal
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_workers_names_the_phase_and_the_rerun_resumes(tmp_path, slow_corpus, sig, code):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", _recipe(slow_corpus, out, stages=("normalize",), tasks=8,
                                                       workers=2))
    proc = _start(recipe)
    _wait_for_documents(out, "normalize", proc)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2  # the pool's workers (and datatrove's manager) are running
    t0 = time.monotonic()
    if sig == signal.SIGTERM:
        proc.send_signal(sig)  # `kill PID`: the launcher alone gets it
    else:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal: the whole foreground group gets it
    _, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == code, stderr[-3000:]
    assert elapsed < 15, f"took {elapsed:.1f}s to stop"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    stopped = [x for x in stderr.splitlines() if "stopped by" in x]
    assert len(stopped) == 1 and f"stopped by {sig.name} in phase 'normalize'" in stopped[0], stderr[-2000:]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "orphaned workers"
    run = json.loads((out / "run.json").read_text())
    assert run["phases"][0]["status"] == "interrupted"

    res = curate_cli("run", str(recipe), "--no-report", timeout=600)  # the rerun resumes and finishes
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(read_docs(out / "normalize" / "documents")) == 24_000


# ---------------------------------------------------------------------------------------------------
# one run per output folder


@pytest.mark.slow  # one real run interrupted, one rerun: ~20 s
def test_second_run_into_a_busy_folder_is_refused_and_a_stale_lock_is_not(tmp_path, slow_corpus):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", _recipe(slow_corpus, out, tasks=8, workers=2))
    first = _start(recipe)
    _wait_for_documents(out, "normalize", first)
    second = curate_cli("run", str(recipe), "--no-report", timeout=120)
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"{out} is in use by another curate run (pid {first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    assert first.poll() is None  # the first run was not disturbed
    os.killpg(first.pid, signal.SIGKILL)  # the machine kills the whole run: its lock file stays behind
    first.communicate(timeout=60)
    if not (out / ".curate.lock").exists():  # the run had just finished: leave what a killed one would
        (out / ".curate.lock").write_text(json.dumps({"pid": first.pid, "host": "x", "started": 0}) + "\n")
    time.sleep(1)  # let the killed workers go
    res = curate_cli("run", str(recipe), "--no-report", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(read_docs(out / "normalize" / "documents")) == 24_000


def test_a_lock_held_by_a_live_process_refuses_and_its_end_frees_it(tmp_path, small_corpus):
    """The same without a long run: another process holds the lock, then exits without a word."""
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", _recipe(small_corpus, out))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from curate.output_lock import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 1 and f"in use by another curate run (pid {holder.pid} on" in res.stderr
    assert not (out / "run.json").exists()  # refused before touching anything
    holder.kill()
    holder.wait()
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (out / ".curate.lock").exists()  # a run that ends leaves its output without a lock file


# ---------------------------------------------------------------------------------------------------
# a stage that leaves nothing


@pytest.mark.parametrize("case", ["all_input_bad", "filter_drops_all"])
def test_a_stage_that_leaves_no_documents_ends_the_run_cleanly_and_so_does_the_rerun(tmp_path, case):
    data = tmp_path / "data"
    data.mkdir()
    if case == "all_input_bad":
        (data / "a.jsonl").write_text('{"id": "a", "text": ""}\n{"id": "b"}\n{broken\n')
        stages, empty_phase = ["normalize", "exact_dedup", "minhash_dedup"], "normalize"
    else:  # English text, and a language filter that keeps only Chinese
        write_jsonl_gz(data / "a.jsonl.gz", synthetic_docs(30))
        stages = ["normalize", "exact_dedup", {"langid": {"expected_languages": ["zh"]}}, "minhash_dedup"]
        empty_phase = "exact_dedup.apply"  # langid runs in the pass that applies exact_dedup
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", {**_recipe(data, out, tasks=2), "stages": stages})
    for attempt in ("first run", "rerun"):
        res = curate_cli("run", str(recipe), timeout=600)
        assert res.returncode == 0, (attempt, res.stderr[-3000:])
        assert "Traceback" not in res.stderr and "RuntimeError" not in res.stderr and "failed" not in res.stderr, attempt
        said = [x for x in res.stderr.splitlines() if "left no documents" in x]
        assert len(said) == 1 and f"phase '{empty_phase}'" in said[0], (attempt, res.stderr[-2000:])
        assert ("langid" in said[0]) == (case == "filter_drops_all")  # the line names the stages of the phase
        assert "stopped early" in res.stdout
        run = json.loads((out / "run.json").read_text())
        statuses = {p["id"]: p["status"] for p in run["phases"]}
        assert statuses[empty_phase] == "done" and run["stopped_early"]["after"] == empty_phase
        assert statuses["minhash_dedup.apply"] == "skipped"
        assert run["status"] == "done"
        final = out / "minhash_dedup.apply" / "documents"
        assert final.is_dir() and read_docs(final) == []
