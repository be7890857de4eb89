"""The runner: phases cut at global boundaries, real datatrove executors, resume, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.api import run_recipe
from curate.recipe import load_recipe
from curate.report import build_report
from curate.runner import RunError, plan_run
from helpers import REPO, read_docs, synthetic_docs, write_jsonl_gz, write_recipe


def recipe_dict(data: Path, out: Path, stages=None, tasks=2) -> dict:
    return {
        "name": "small",
        "input": {"format": "jsonl", "paths": str(data), "label_key": "topic"},
        "output": str(out),
        "executor": {"tasks": tasks, "workers": 2},
        "stages": stages if stages is not None else ["normalize", "exact_dedup", {"normalize": {"form": "NFC"}}],
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = synthetic_docs(300, dup_every=10)
    folder = tmp_path / "data"
    write_jsonl_gz(folder / "a.jsonl.gz", docs[:150])
    write_jsonl_gz(folder / "b.jsonl.gz", docs[150:])
    return folder


def test_plan_cuts_phases_at_global_boundaries(tmp_path, corpus):
    plan = plan_run(load_recipe(recipe_dict(corpus, tmp_path / "out")))
    ids = [p.id for p in plan.phases]
    assert ids == ["normalize", "exact_dedup.signatures", "exact_dedup.duplicates", "exact_dedup.apply"]
    kinds = [p.kind for p in plan.phases]
    assert kinds == ["documents", "global", "global", "documents"]
    # the second normalize fuses into the pass that applies the dedup filter
    assert plan.phases[-1].stages == ["exact_dedup (apply)", "normalize_2"]
    assert plan.final_documents.endswith("exact_dedup.apply/documents")


def test_global_stage_first_gets_an_input_pass(tmp_path, corpus):
    plan = plan_run(load_recipe(recipe_dict(corpus, tmp_path / "out", stages=["exact_dedup"])))
    assert [p.id for p in plan.phases] == ["input", "exact_dedup.signatures", "exact_dedup.duplicates", "exact_dedup.apply"]


def test_end_to_end_counts_every_document(tmp_path, corpus):
    res = run_recipe(recipe_dict(corpus, tmp_path / "out"))
    out_docs = read_docs(res.final_documents)
    ids = [d["id"] for d in out_docs]
    assert len(ids) == len(set(ids))
    texts = [d["text"] for d in out_docs]
    assert len(texts) == len(set(texts))  # exact duplicates are gone
    src = synthetic_docs(300, dup_every=10)
    expected_unique = len({d["text"] for d in src})
    assert len(out_docs) == expected_unique
    # survivors are the smallest id of each duplicate group
    first_id = {}
    for d in sorted(src, key=lambda d: d["id"]):
        first_id.setdefault(d["text"], d["id"])
    assert sorted(ids) == sorted(first_id.values())
    # metadata travels through every phase
    assert all(d["metadata"]["topic"] for d in out_docs)

    rep = build_report(res.output_dir)
    rows = {r.stage: r for r in rep.stage_rows()}
    assert rows["input"].docs_in == 300
    assert rows["exact_dedup"].docs_in == 300
    assert rows["exact_dedup"].drops["exact_duplicate"] == 300 - expected_unique
    assert rows["output"].docs_out == len(out_docs)
    html = Path(rep.write_html()).read_text()
    assert "Retention funnel" in html and "exact_duplicate" in html
    for phase in res.record["phases"]:
        assert len(os.listdir(Path(res.output_dir) / phase["id"] / "completions")) == phase["tasks"]


def test_bad_input_is_counted_with_file_and_line(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = [
        json.dumps({"id": "ok1", "text": "a good document"}),
        "{not json",
        json.dumps({"id": "nt", "body": "no text field"}),
        json.dumps({"id": "num", "text": 42}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "ok2", "text": "another good one"}),
    ]
    raw = ("\n".join(lines) + "\n").encode() + b'{"id": "bin", "text": "\xff\xfe"}\n'
    (folder / "bad.jsonl").write_bytes(raw)
    res = run_recipe(recipe_dict(folder / "bad.jsonl", tmp_path / "out", stages=["normalize"], tasks=1))
    assert sorted(d["id"] for d in read_docs(res.final_documents)) == ["ok1", "ok2"]
    rep = build_report(res.output_dir)
    n, problems = rep.problems()
    assert n == 6
    got = {(p["line"], p["reason"]) for p in problems}
    assert got == {(2, "malformed_json"), (3, "missing_text"), (4, "non_string_text"), (5, "empty_text"),
                   (6, "not_an_object"), (8, "invalid_utf8")}
    assert all(p["file"].endswith("bad.jsonl") for p in problems)
    row = next(r for r in rep.stage_rows() if r.stage == "input")
    assert row.docs_in == 8 and row.docs_out == 2 and sum(row.drops.values()) == 6


def test_rerun_resumes_and_refuses_a_different_plan(tmp_path, corpus):
    rd = recipe_dict(corpus, tmp_path / "out")
    first = run_recipe(rd)
    stamp = {p: os.path.getmtime(p) for p in Path(first.output_dir).glob("*/completions/*")}
    again = run_recipe(rd)
    assert {p: os.path.getmtime(p) for p in Path(again.output_dir).glob("*/completions/*")} == stamp
    with pytest.raises(RunError, match="different recipe or settings"):
        run_recipe(rd, overrides=["stages.normalize.form=NFD"])
    replaced = run_recipe(rd, overrides=["stages.normalize.form=NFD"], overwrite=True)
    assert read_docs(replaced.final_documents)


def _content_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl.gz")):
        h.update(path.name.encode())
        h.update(path.read_bytes())  # raw bytes: the writer is deterministic down to the gzip header
    return h.hexdigest()


def test_killed_run_resumes_to_the_same_output(tmp_path):
    """Kill `curate run` in the middle of a phase, rerun the same command, compare with a clean run."""
    docs = synthetic_docs(6000, dup_every=7)
    folder = tmp_path / "data"
    for i in range(6):
        write_jsonl_gz(folder / f"part{i}.jsonl.gz", docs[i * 1000:(i + 1) * 1000])
    stages = ["normalize", "exact_dedup", {"normalize": {"form": "NFC"}}]
    clean = write_recipe(tmp_path / "clean.yaml", recipe_dict(folder, tmp_path / "clean", stages, tasks=6))
    killed = write_recipe(tmp_path / "killed.yaml", recipe_dict(folder, tmp_path / "killed", stages, tasks=6))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "curate.cli", "run", str(killed), "--workers", "1", "--no-report"]

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "killed" / "exact_dedup.signatures" / "completions"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if target.is_dir() and 0 < len(os.listdir(target)) < 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(os.listdir(target)) < 6
    assert not (tmp_path / "killed" / "exact_dedup.apply" / "completions").exists()

    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already complete, skipped" in resumed.stderr  # the first phase was not redone
    ok = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(clean), "--no-report"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    for sub in ("normalize/documents", "exact_dedup.duplicates/data", "exact_dedup.apply/documents"):
        a, b = tmp_path / "clean" / sub, tmp_path / "killed" / sub
        if sub.endswith("data"):
            import polars as pl

            assert pl.read_parquet(sorted(a.glob("*.parquet"))).equals(pl.read_parquet(sorted(b.glob("*.parquet"))))
        else:
            assert _content_digest(a) == _content_digest(b)


def test_failed_task_is_reported_and_rerun_resumes(tmp_path, corpus):
    out = tmp_path / "out"
    rd = recipe_dict(corpus, out, stages=["normalize", "exact_dedup"])
    first = run_recipe(rd)
    expected = read_docs(first.final_documents)
    # corrupt one signature file and forget the completion of the task that reads it
    sig = out / "exact_dedup.signatures" / "data" / "bucket_00001" / "00000.parquet"
    sig.write_bytes(b"not a parquet file")
    (out / "exact_dedup.duplicates" / "completions" / "00001").unlink()
    with pytest.raises(RunError) as e:
        run_recipe(rd)
    msg = str(e.value)
    assert "phase 'exact_dedup.duplicates' failed" in msg and "incomplete tasks [1]" in msg
    assert str(out / "exact_dedup.duplicates" / "logs") in msg
    record = json.loads((out / "run.json").read_text())
    assert {p["id"]: p["status"] for p in record["phases"]}["exact_dedup.duplicates"] == "failed"
    # repair: let the signatures task that wrote the file run again; the rerun redoes only what is missing
    (out / "exact_dedup.signatures" / "completions" / "00000").unlink()
    again = run_recipe(rd)
    assert again.record["status"] == "done"
    assert read_docs(again.final_documents) == expected


def test_same_input_recipe_and_seed_give_byte_identical_output(tmp_path, corpus):
    a = run_recipe(recipe_dict(corpus, tmp_path / "a"))
    time.sleep(1.1)  # a different wall-clock second: nothing time-dependent may reach the bytes
    b = run_recipe(recipe_dict(corpus, tmp_path / "b"))
    for phase in a.record["phases"]:
        for sub in ("documents", "data"):
            fa = sorted((Path(a.output_dir) / phase["id"] / sub).rglob("*.*"))
            fb = sorted((Path(b.output_dir) / phase["id"] / sub).rglob("*.*"))
            assert [p.relative_to(a.output_dir) for p in fa] == [p.relative_to(b.output_dir) for p in fb]
            for x, y in zip(fa, fb):
                assert x.read_bytes() == y.read_bytes(), x


def test_removed_documents_are_kept_with_their_reason(tmp_path, corpus):
    rd = recipe_dict(corpus, tmp_path / "out", stages=["exact_dedup"])
    rd["output"] = {"folder": str(tmp_path / "out"), "keep_removed": True}
    res = run_recipe(rd)
    removed = read_docs(Path(res.output_dir) / "exact_dedup.apply" / "removed" / "exact_dedup")
    kept = read_docs(res.final_documents)
    assert len(removed) + len(kept) == 300
    assert {d["metadata"]["filter_reason"] for d in removed} == {"exact_duplicate"}
    assert {d["text"] for d in removed} <= {d["text"] for d in kept}
    # the report shows a few of them, not every one, and no separate samples are written
    assert not (Path(res.output_dir) / "exact_dedup.apply" / "removed_samples").exists()
    html = Path(build_report(res.output_dir).write_html()).read_text()
    assert "<summary>exact_dedup: exact_duplicate (3 shown)</summary>" in html


def test_truncated_gzip_is_counted_and_strict_mode_stops_at_the_first_problem(tmp_path):
    import gzip as gz

    folder = tmp_path / "data"
    folder.mkdir()
    payload = gz.compress(("\n".join(json.dumps({"id": str(i), "text": f"document number {i} " * 20})
                                     for i in range(2000)) + "\n").encode())
    (folder / "cut.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    res = run_recipe(recipe_dict(folder, tmp_path / "out", stages=["normalize"], tasks=1))
    kept = read_docs(res.final_documents)
    assert 0 < len(kept) < 2000
    n, problems = build_report(res.output_dir).problems()
    assert n == 1 and problems[0]["reason"] == "truncated_file" and problems[0]["line"] == len(kept) + 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n')
    rd = recipe_dict(bad, tmp_path / "strict", stages=["normalize"], tasks=1)
    rd["input"]["strict"] = True
    with pytest.raises(RunError) as e:
        run_recipe(rd)
    assert f"{bad}:2: missing text" in str(e.value)


def test_one_input_file_is_spread_over_all_tasks(tmp_path):
    docs = synthetic_docs(400)
    data = write_jsonl_gz(tmp_path / "one.jsonl.gz", docs)
    res = run_recipe(recipe_dict(data, tmp_path / "out", stages=["normalize", "exact_dedup"], tasks=4))
    first = Path(res.output_dir) / "normalize" / "documents"
    sizes = [len(read_docs_file(p)) for p in sorted(first.glob("*.jsonl.gz"))]
    assert len(sizes) == 4 and sizes == [100, 100, 100, 100]
    # every task of the next phases had documents
    stats = sorted((Path(res.output_dir) / "exact_dedup.signatures" / "stats").glob("*.json"))
    per_task = [json.loads(p.read_text())[0]["stats"]["documents"]["total"] for p in stats]
    assert per_task == [100, 100, 100, 100]
    assert [d["id"] for d in sorted(read_docs(res.final_documents), key=lambda d: d["id"])] == [d["id"] for d in docs]


def read_docs_file(path: Path) -> list[dict]:
    import gzip as gz

    with gz.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_one_input_file_is_spread_over_every_task(tmp_path):
    """Fewer files than tasks: every task of the first pass reads its share of the records (task r:
    records r, r + tasks, ...), problems are listed once, and the documents are those of one task."""
    docs = synthetic_docs(90)
    path = write_jsonl_gz(tmp_path / "one" / "all.jsonl.gz", docs[:45] + [{"id": "x"}] + docs[45:])  # line 46: no text
    three = run_recipe(recipe_dict(path, tmp_path / "t3", stages=["normalize"], tasks=3))
    one = run_recipe(recipe_dict(path, tmp_path / "t1", stages=["normalize"], tasks=1))
    per_task = []
    for rank in range(3):
        stats = json.loads((Path(three.output_dir) / "normalize" / "stats" / f"{rank:05d}.json").read_text())
        reader = next(s for s in stats if "READER" in s["name"])
        per_task.append(reader["stats"]["documents"]["total"])
    assert per_task == [30, 30, 30]  # 91 records: the bad one is record 45, task 0's
    assert len(list((Path(three.output_dir) / "normalize" / "documents").glob("*.jsonl.gz"))) == 3
    same = [sorted(map(json.dumps, read_docs(r.final_documents))) for r in (three, one)]
    assert same[0] == same[1]
    n, problems = build_report(three.output_dir).problems()
    assert n == 1 and problems[0]["line"] == 46 and problems[0]["reason"] == "missing_text"


def test_final_folder_points_at_the_documents_whatever_the_last_stage(tmp_path, corpus):
    out = tmp_path / "out"
    res = run_recipe(recipe_dict(corpus, out, stages=["normalize", "exact_dedup"]))
    final = Path(res.final)
    assert final == out / "final"
    assert (final / "documents").is_symlink() and (final / "documents").resolve() == Path(res.final_documents).resolve()
    assert read_docs(final / "documents") == read_docs(res.final_documents)
    manifest = json.loads((final / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["documents"]["files"]}
    assert listed == {str(p.relative_to(out)) for p in Path(res.final_documents).glob("*.jsonl.gz")}
    assert manifest["documents"]["path"] == "exact_dedup.apply/documents" and set(manifest) == {"documents"}
    # a different recipe into the same folder with --overwrite: the old final/ goes with the old run
    other = run_recipe(recipe_dict(corpus, out, stages=["normalize"]), overwrite=True)
    assert (final / "documents").resolve() == Path(other.final_documents).resolve()
    assert set(json.loads((final / "manifest.json").read_text())) == {"documents"}
