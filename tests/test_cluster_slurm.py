"""A recipe through a real Slurm cluster (`.ci/slurm/setup.sh` starts a single-node one): every phase
an sbatch job array chained with afterok dependencies; the output is byte-identical to the local
executor's, also after one array task is cancelled mid-way and the run resumed.

Skips when `sbatch`/`sinfo` are missing or no node is up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from curate.api import read_documents, run_recipe
from curate.runner import RunError

# executor bookkeeping that differs between executors and runs by design; everything else must match
NOT_COMPARED_DIRS = {"logs", "stats", "completions", "slurm_logs", "progress"}
NOT_COMPARED_FILES = {"run.json", "slurm_jobs.json", "report.html", "stats.json", "executor.json", "executor.pik",
                      "launch_script.slurm", "ranks_to_run.json"}


@pytest.fixture(scope="module")
def slurm_cluster():
    if not (shutil.which("sbatch") and shutil.which("sinfo") and shutil.which("squeue")):
        pytest.skip("Slurm client commands not installed (run .ci/slurm/setup.sh as root)")
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    states = {s.strip().rstrip("*~#$@^-") for s in res.stdout.split()}
    if res.returncode != 0 or not states & {"idle", "mixed", "allocated", "completing"}:
        pytest.skip(f"no Slurm node is up (sinfo: {res.stdout.strip() or res.stderr.strip()})")


def recipe(data: Path, out: Path, wait: bool = True) -> dict:
    return {
        "name": "slurm_small",
        "input": {"format": "jsonl", "paths": str(data), "label_key": "label", "limit": 120},
        "output": str(out),
        "executor": {
            "tasks": 2, "workers": 2, "seed": 0,
            "slurm": {"wait": wait, "mem_per_cpu_gb": 1, "time": "00:20:00", "job_name": f"curate-test{os.getpid()}"},
        },
        # two document stages (one fused pass), then four global stages with ten phases between them
        "stages": [
            {"normalize": {}},
            {"english_rules": {}},
            {"embed": {"batch_size": 32}},
            {"neighbors": {"k": 8}},
            {"order": {"partition_size": 60}},
            {"pack": {"context_length": 512}},
        ],
    }


@pytest.fixture(scope="module")
def local_run(shared_data, slurm_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm_reference")
    return run_recipe(recipe(shared_data / "bbc_news.jsonl.gz", base / "local"), executor="local")


def test_job_scripts_carry_per_phase_resources(tmp_path):
    """The sbatch script of every phase, without a cluster (and checked by `sbatch --test-only`
    where one is up): one array element per task, per-phase CPUs/memory/GPUs, this environment."""
    from curate.recipe import load_recipe
    from curate.runner import build_executors, plan_run

    data = tmp_path / "a.jsonl"
    data.write_text('{"id": "1", "text": "one document"}\n')
    rd = recipe(data, tmp_path / "out")
    rd["input"].pop("label_key")
    rd["executor"]["slurm"].update({"gpus_per_task": 1, "sbatch_args": {"account": "lab"}})
    rd["stages"][2] = {"embed": {"gpus": 1}}
    plan = plan_run(load_recipe(rd))
    scripts = {}
    for phase, ex in zip(plan.phases, build_executors(plan, "slurm")):
        scripts[phase.id] = ex.get_launch_file_contents(ex.get_sbatch_args(phase.tasks), "srun launch_pickled_pipeline x")
        lines = scripts[phase.id].splitlines()
        assert f"#SBATCH --array=0-{phase.tasks - 1}" in lines
        assert "#SBATCH --mem-per-cpu=1024M" in lines and "#SBATCH --cpus-per-task=1" in lines
        assert "#SBATCH --kill-on-invalid-dep=yes" in lines and "#SBATCH --account=lab" in lines
        assert f"#SBATCH --job-name=curate-test{os.getpid()}-{phase.id}" in lines
        assert not any(line.startswith("#SBATCH --partition") for line in lines)  # empty: the cluster's default
        assert f"source {Path(sys.prefix) / 'bin' / 'activate'}" in lines or sys.prefix == sys.base_prefix
        assert ("#SBATCH --gpus=1" in lines) == (phase.id == "embed.embed"), phase.id
    if shutil.which("sbatch") and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0:
        script = tmp_path / "normalize.sbatch"
        script.write_text(scripts["normalize"].replace("#SBATCH --account=lab\n", ""))
        res = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "to start at" in res.stderr, res.stderr


def data_files(out: str) -> dict[str, bytes]:
    files = {}
    for root, dirs, names in os.walk(out):
        dirs[:] = [d for d in dirs if d not in NOT_COMPARED_DIRS]
        for name in names:
            if name not in NOT_COMPARED_FILES:
                path = os.path.join(root, name)
                files[os.path.relpath(path, out)] = Path(path).read_bytes()
    return files


def assert_same_output(slurm_out: str, local_out: str) -> None:
    ours, ref = data_files(slurm_out), data_files(local_out)
    assert sorted(ours) == sorted(ref)
    assert any(name.startswith("pack.windows/") for name in ref) and len(ref) > 20
    differing = [name for name in ref if ours[name] != ref[name]]
    assert not differing, f"differ from the local executor's output: {differing}"


def _task_start(log: Path) -> datetime:
    first = log.read_text().split(" | ", 1)[0]
    return datetime.strptime(first, "%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.slow
def test_recipe_through_slurm_arrays_equals_local(shared_data, slurm_cluster, local_run, tmp_path):
    out = tmp_path / "slurm"
    res = run_recipe(recipe(shared_data / "bbc_news.jsonl.gz", out), executor="slurm")
    assert res.record["status"] == "done"
    assert_same_output(res.output_dir, local_run.output_dir)
    assert len(read_documents(res.final_documents)) > 50

    phases = res.record["phases"]
    assert len(phases) >= 8 and all(p["status"] == "done" and p["slurm_job"] for p in phases)
    for p in phases:
        script = (out / p["id"] / "launch_script.slurm").read_text()
        assert f"#SBATCH --array=0-{p['tasks'] - 1}" in script
        assert "#SBATCH --kill-on-invalid-dep=yes" in script and "activate" in script
        assert len(list((out / p["id"] / "completions").iterdir())) == p["tasks"]
    assert any(p["tasks"] > 1 for p in phases)
    # every job was submitted before any ran; only the afterok dependencies kept them in order
    for before, after in zip(phases, phases[1:]):
        finished = max(f.stat().st_mtime for f in (out / before["id"] / "completions").iterdir())
        started = min(_task_start(log) for log in (out / after["id"] / "logs").glob("task_*.log"))
        assert started.timestamp() >= finished - 0.01, (before["id"], after["id"])


def _wait_running(job: str, element: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%K %T"], capture_output=True, text=True)
        if f"{element} RUNNING" in res.stdout.splitlines():
            return
        time.sleep(0.5)
    raise AssertionError(f"array element {job}_{element} never ran")


@pytest.mark.slow
def test_task_cancelled_mid_way_then_rerun_equals_clean_run(shared_data, slurm_cluster, local_run, tmp_path):
    from curate.slurm_cluster import active_elements, wait_for_run

    data, out = shared_data / "bbc_news.jsonl.gz", tmp_path / "slurm"
    submitted = run_recipe(recipe(data, out, wait=False), executor="slurm")
    assert submitted.record["status"] == "submitted"
    jobs = {p["id"]: p["slurm_job"] for p in submitted.record["phases"]}
    # rank 1 of the embedding phase is cancelled while it runs (it loads a model: seconds, not ms)
    _wait_running(jobs["embed.embed"], 1)
    subprocess.run(["scancel", f"{jobs['embed.embed']}_1"], check=True)

    with pytest.raises(RunError) as failure:
        wait_for_run(str(out))
    message = str(failure.value)
    assert "embed.embed" in message and "[1]" in message and str(out / "embed.embed" / "logs") in message
    after_embed = submitted.record["phases"][2:]
    assert not any(active_elements(p["slurm_job"]) for p in after_embed)  # cancelled, not left pending
    assert not any((out / p["id"] / "completions").exists() for p in after_embed)
    assert (out / "embed.embed" / "completions" / "00000").exists()

    resumed = run_recipe(recipe(data, out), executor="slurm")
    phases = {p["id"]: p for p in resumed.record["phases"]}
    assert phases["normalize"]["slurm_job"] is None  # complete: not submitted again
    assert (out / "embed.embed" / "ranks_to_run.json").read_text().strip() == "[1]"  # only the cancelled rank
    assert resumed.record["status"] == "done"
    assert_same_output(resumed.output_dir, local_run.output_dir)
