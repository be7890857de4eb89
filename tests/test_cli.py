"""The CLI as a user runs it: stages listing, the quickstart end to end, an ad-hoc recipe on BBC news."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import curate_cli, read_docs, synthetic_docs, write_jsonl_gz, write_recipe


def test_stages_lists_every_registered_stage_with_parameters():
    from curate.registry import all_stages

    res = curate_cli("stages")
    assert res.returncode == 0, res.stderr
    for name in all_stages():
        assert name in res.stdout
    one = curate_cli("stages", "normalize")
    assert one.returncode == 0
    for piece in ("form", "NFKC", "max_blank_lines", "document stage"):
        assert piece in one.stdout
    bad = curate_cli("stages", "normalise")
    assert bad.returncode == 2 and "did you mean 'normalize'" in bad.stderr


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    res = curate_cli("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"curate {version('curate')}"


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    res = curate_cli("report", str(tmp_path))
    assert res.returncode == 2 and "not a curate output folder" in res.stderr


def test_wait_on_a_folder_that_is_not_a_submitted_run(tmp_path):
    res = curate_cli("wait", str(tmp_path))
    assert res.returncode == 2 and "no run.json" in res.stderr and str(tmp_path) in res.stderr


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    """The README's first command, into a temporary folder: corpus built offline, every stage, a report."""
    out = tmp_path / "qs"
    res = curate_cli("run", "quickstart", f"output.folder={out}", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "report.html").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done"
    corpus = read_docs(out / "_corpus" / "python_docs")
    final = read_docs(record["final_documents"])
    assert len(corpus) > 2000  # one document per module, class and function of the stdlib
    assert 0 < len(final) <= len(corpus)
    assert {d["id"] for d in final} <= {d["id"] for d in corpus}
    assert "documents per stage" in res.stdout and "time per phase" in res.stdout
    # OUT/final: the documents and the packed windows, whatever the last stage
    assert f"final: {out / 'final'}" in res.stdout
    assert read_docs(out / "final" / "documents") == final
    assert list((out / "final" / "windows").glob("*.parquet")) and (out / "final" / "order.parquet").is_file()
    from curate.recipe import load_recipe
    from curate.registry import all_stages

    # the quickstart exercises every registered stage (the issue asks for "every stage that exists"),
    # except those its header comment names: Chinese-text stages, the classifier that needs a model and
    # the raw-web stages (crawl_en)
    left_out = {"chinese_format", "chinese_rules", "chinese_repetition", "quality_classifier", "extract", "pii"}
    assert {s.name for s in load_recipe("quickstart").stages} == set(all_stages()) - left_out
    for phase in record["phases"]:
        assert phase["status"] == "done"
    # the ICLM half ran: an order of the kept documents and packed windows with figures in the report
    import polars as pl

    order = pl.read_parquet(out / "order.stitch" / "data" / "order.parquet")
    assert sorted(order["id"].to_list()) == sorted(d["id"] for d in final)
    assert "Ordering quality" in (out / "report.html").read_text()


def test_adhoc_recipe_on_bbc_news(tmp_path, shared_data):
    recipe = write_recipe(tmp_path / "bbc.yaml", {
        "name": "bbc",
        "input": {"format": "jsonl", "paths": str(shared_data / "bbc_news.jsonl.gz"), "label_key": "label"},
        "output": str(tmp_path / "bbc"),
        "executor": {"tasks": 2},
        "stages": ["normalize", "exact_dedup"],
    })
    assert curate_cli("validate", str(recipe)).returncode == 0
    res = curate_cli("run", str(recipe), "--tasks", "2", "--workers", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    docs = read_docs(json.loads((tmp_path / "bbc" / "run.json").read_text())["final_documents"])
    # the README of the data says ~98 exact-duplicate groups among 2,225 articles
    assert 2000 < len(docs) < 2225 - 50
    assert len({d["text"].strip() for d in docs}) == len(docs)


def test_recipe_problem_in_run_exits_2_without_a_traceback(tmp_path):
    """`curate run` refuses a recipe whose stages are out of order as `validate` does: exit 2, one
    message, nothing written."""
    data = write_jsonl_gz(tmp_path / "d.jsonl.gz", synthetic_docs(5))
    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "t", "input": {"paths": str(data)}, "output": str(tmp_path / "out"),
        "stages": ["normalize", "embed", "pack"],
    })
    res = curate_cli("run", str(recipe))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "stage 'pack' reads the output of an earlier 'order' stage" in res.stderr
    assert not (tmp_path / "out").exists()


def test_a_stage_dropping_nearly_everything_is_flagged_at_the_end(tmp_path):
    data = write_jsonl_gz(tmp_path / "d.jsonl.gz", synthetic_docs(40))
    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "t", "input": {"paths": str(data)}, "output": str(tmp_path / "out"),
        "stages": ["normalize", {"langid": {"expected_languages": ["fr"]}}],
    })
    res = curate_cli("run", str(recipe), "--no-report")
    assert res.returncode == 0, res.stderr[-3000:]
    warning = " ".join(res.stderr.split())
    assert "warning: stage 'langid' dropped 40 of its 40 documents (100.0%; unexpected_language: 40)" in warning
    assert "curate stages langid" in warning
    assert "stage 'normalize'" not in warning  # it keeps everything
