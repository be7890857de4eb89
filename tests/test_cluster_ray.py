"""`executor: ray` on a real Ray cluster: a head and a worker node (two raylets, one CPU each) started
on this machine with `ray start`, a recipe through every phase (document stages, exact dedup,
embeddings, FAISS neighbours, ordering, packing), output byte-identical to the local executor's.
A run whose embed tasks are killed mid-way and one of which then fails, rerun, ends identical too."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from curate.api import run_recipe  # noqa: E402
from curate.runner import RunError  # noqa: E402
from helpers import bbc_interleaved, write_jsonl_gz  # noqa: E402

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"
# this machine is small and shared: one CPU and a small object store per node
NODE_ARGS = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start --block` in its own process group: SIGTERM stops that node's raylet and workers,
    without `ray stop` (which would stop every Ray on the machine)."""
    proc = subprocess.Popen([RAY, "start", *args, *NODE_ARGS], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                                                            # stop at once on SIGTERM (no 30 s drain)
                                                            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            _stop_node(proc)
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of this node's group that outlived its raylet
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Address of a two-node Ray cluster (head + one worker node), stopped at the end of the module."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    logs = tmp_path_factory.mktemp("ray_nodes")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_start_node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                          "--include-dashboard=false"], logs / "head.log")]
    try:
        nodes.append(_start_node([f"--address={address}", "--node-ip-address=127.0.0.1"], logs / "worker.log"))
        ray.init(address=address, log_to_driver=False)
        try:
            deadline = time.time() + 60
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                assert time.time() < deadline, "the worker node did not join"
                time.sleep(0.5)
        finally:
            ray.shutdown()
        yield address, temp_dir
    finally:
        for proc in reversed(nodes):
            _stop_node(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


STAGES = [
    "normalize",
    "english_rules",
    "exact_dedup",
    {"embed": {"batch_size": 32}},
    {"neighbors": {"k": 8}},
    {"order": {"partition_size": 50}},  # several partitions: the partitioned ordering path runs
    {"pack": {"context_length": 256}},
]


def recipe(data: Path, out: Path, kind: str, address: str | None = None, stages=STAGES, **ray_cfg) -> dict:
    return {
        "name": "ray_small",
        "input": {"format": "jsonl", "paths": str(data), "label_key": "label"},
        "output": str(out),
        "executor": {"kind": kind, "tasks": 2, "workers": 2, "seed": 0, "ray": {"address": address, **ray_cfg}},
        "stages": stages,
    }


@pytest.fixture(scope="module")
def local_run(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("ray_recipe")
    data = write_jsonl_gz(base / "bbc.jsonl.gz", bbc_interleaved(shared_data, 160, 700))
    return data, run_recipe(recipe(data, base / "local", "local"))


def data_digests(result) -> dict[str, str]:
    """sha256 of every data file a run wrote: each phase's `documents/` and `data/` (not logs, stats,
    timings or run.json, which hold times and the executor's name; nor a killed task's unfinished
    `.tmp-<pid>` / `.partial` files, which no reader's glob matches)."""
    out = Path(result.output_dir)
    digests = {}
    for phase in result.record["phases"]:
        for sub in ("documents", "data"):
            for path in sorted((out / phase["id"] / sub).rglob("*")):
                if path.is_file() and ".tmp-" not in path.name and not path.name.endswith(".partial"):
                    digests[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def test_recipe_on_a_ray_cluster_matches_the_local_executor(local_run, ray_cluster, tmp_path):
    address, _ = ray_cluster
    data, local = local_run
    on_ray = run_recipe(recipe(data, tmp_path / "ray", "ray", address))
    assert on_ray.record["status"] == "done" and on_ray.record["executor"] == "ray"
    phases = [p["id"] for p in on_ray.record["phases"]]
    assert phases == [p["id"] for p in local.record["phases"]]
    assert {"embed.embed", "neighbors.search", "order.stitch", "pack.windows"} <= set(phases)
    expected = data_digests(local)
    assert any(k.startswith("pack.windows/data/") for k in expected)
    assert data_digests(on_ray) == expected
    for phase in on_ray.record["phases"]:  # every task ran (and was marked complete) on the cluster
        assert len(os.listdir(Path(on_ray.output_dir) / phase["id"] / "completions")) == phase["tasks"]


# --- a task killed mid-way, another one failing -------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _running_tasks(temp_dir: str) -> list[int]:
    """Ray worker processes of *this* cluster (their raylet runs with our temp dir) running a task."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _cmdline(int(entry)).startswith("ray::RankWorker.run_for_rank"):
            if temp_dir in _cmdline(_parent(int(entry))):
                pids.append(int(entry))
    return pids


def _kill_tree(pid: int) -> None:
    children = [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent(int(e)) == pid]
    for p in [pid, *children]:  # the actor and the pool process datatrove runs the rank in
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_embed_tasks(out: Path, temp_dir: str, killed: list) -> None:
    """Once the embed tasks have started reading documents, SIGKILL the Ray workers running them."""
    progress = out / "embed.embed" / "progress"
    deadline = time.time() + 400
    while time.time() < deadline:
        if progress.is_dir() and len(os.listdir(progress)) >= 2:
            time.sleep(1)  # well inside the task: the model is loading or encoding
            pids = _running_tasks(temp_dir)
            if pids:
                for pid in pids:
                    _kill_tree(pid)
                killed.extend(pids)
                return
        time.sleep(0.2)


def test_killed_and_failed_tasks_then_rerun_equal_a_clean_run(local_run, ray_cluster, tmp_path):
    """Both embed tasks are killed mid-way (Ray resubmits them); rank 1 then fails, which stops the run
    before the neighbours phase; the rerun runs only what is missing and ends as a clean run."""
    address, temp_dir = ray_cluster
    data, local = local_run
    out = tmp_path / "ray"
    stages = STAGES[:5]  # up to the neighbours: the phases after them have been covered above
    # rank 1 of the embed phase cannot write its vectors: a directory sits where its file goes
    blocker = out / "embed.embed" / "data" / "00001.npy"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("x")
    killed: list = []
    killer = threading.Thread(target=kill_embed_tasks, args=(out, temp_dir, killed), daemon=True)
    killer.start()

    with pytest.raises(RunError) as e:
        run_recipe(recipe(data, out, "ray", address, stages))
    killer.join(timeout=5)
    assert killed, "no embed task was running to kill"
    # the failure names the phase, the rank and where its log is, and stopped the phase after it
    msg = str(e.value)
    assert "phase 'embed.embed' failed" in msg and "incomplete tasks [1]" in msg
    assert str(out / "embed.embed" / "logs") in msg and "rank 1" in msg
    # the killed rank 0 was resubmitted and finished
    assert os.listdir(out / "embed.embed" / "completions") == ["00000"]
    assert not (out / "neighbors.search" / "completions").exists()

    shutil.rmtree(blocker)
    finished = {p: os.path.getmtime(p) for p in out.glob("*/completions/*")}
    again = run_recipe(recipe(data, out, "ray", address, stages))
    assert again.record["status"] == "done"
    assert {p: os.path.getmtime(p) for p in finished} == finished  # completed tasks were not run again
    got, expected = data_digests(again), data_digests(local)
    assert "neighbors.search" in {k.split("/")[0] for k in got}
    assert got == {k: v for k, v in expected.items() if k in got}
    # every phase wrote data of its own, except the kNN join's quantize and finalize phases, which write
    # into neighbors.search/data (its lists, then the graph)
    assert {k.split("/")[0] for k in got} == {p["id"] for p in again.record["phases"]} - {
        "neighbors.quantize", "neighbors.finalize"}


def test_a_task_no_node_can_hold_is_refused(local_run, ray_cluster, tmp_path):
    address, _ = ray_cluster
    data, _ = local_run
    with pytest.raises(RunError, match="asks 2 CPU.*no node of the Ray cluster has that much"):
        run_recipe(recipe(data, tmp_path / "big", "ray", address, cpus_per_task=2))
