"""The cleaning stages as datatrove steps: registry builders, a real LocalPipelineExecutor, stats with
`dropped_<rule>`, removed documents written with their reason; the two MAP-Neo recipes."""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import os

import pytest
import yaml

from curate.plan import StageContext
from curate.registry import get_stage

RECIPES = ("map_neo_en", "map_neo_zh")


def _write_jsonl(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_all(folder):
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "*.jsonl.gz"))):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f)
    return out


def _run(steps_by_stage, rows, tmp_path, tasks=1):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    src = tmp_path / "in"
    src.mkdir()
    _write_jsonl(src / "00.jsonl.gz", rows)
    pipeline = [JsonlReader(str(src), text_key="text", id_key="id")]
    for steps in steps_by_stage:
        pipeline += steps
    pipeline.append(JsonlWriter(str(tmp_path / "out"), output_filename="${rank}.jsonl.gz"))
    ex = LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(tmp_path / "logs"))
    ex.run()
    with open(tmp_path / "logs" / "stats.json") as f:
        stats = json.load(f)
    return _read_all(tmp_path / "out"), stats


def _ctx(tmp_path, stage_id):
    return StageContext(stage_id=stage_id, output_dir=str(tmp_path), phase_dir_for_documents=str(tmp_path / "pass"), keep_removed=True)


def _stage_stats(stats, name_part):
    for block in stats:
        if name_part in block["name"]:
            return block["stats"]
    raise KeyError(name_part)


def test_english_pipeline_on_web_pages(shared_data, tmp_path):
    with gzip.open(shared_data / "web_pages.jsonl.gz", "rt") as f:
        rows = [{"id": r["id"], "text": r["text"], "url": r["url"]} for r in map(json.loads, itertools.islice(f, 120))]
    spec = get_stage("english_rules")
    steps = [
        get_stage("normalize").build(get_stage("normalize").settings(), _ctx(tmp_path, "normalize")),
        spec.build(spec.settings(), _ctx(tmp_path, "english_rules")),
    ]
    kept, stats = _run(steps, rows, tmp_path)
    s = _stage_stats(stats, "English rules")
    dropped = {k: v["total"] if isinstance(v, dict) else v for k, v in s.items() if k.startswith("dropped_")}
    assert len(dropped) >= 3, dropped
    assert s["total"] == len(rows) == len(kept) + sum(dropped.values())
    # removed documents are written with their reason, and the language id landed in the metadata
    removed = _read_all(tmp_path / "pass" / "removed" / "english_rules")
    assert len(removed) == len(rows) - len(kept)
    assert {r["metadata"]["filter_reason"] for r in removed} == {k.removeprefix("dropped_") for k in dropped}
    assert all(d["metadata"]["language"] == "en" for d in kept)


def test_chinese_pipeline_on_debian(shared_data, tmp_path):
    with gzip.open(shared_data / "debian_multilingual.jsonl.gz", "rt") as f:
        rows = [r for r in map(json.loads, f)]
    rows = [r for r in rows if r["lang"].lower().startswith("zh")][::40] + [r for r in rows if r["lang"] == "en"][::400]
    rows = [{"id": r["id"], "text": r["text"], "url": f"https://{r['source']}.example.org/{r['id']}"} for r in rows]
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("debian_reference_en_zhcn.example.org/\n", encoding="utf-8")
    names = ["chinese_format", "url_filter", "chinese_rules", "langid", "chinese_repetition"]
    settings = {"url_filter": {"blacklist_file": str(blacklist)}, "langid": {"expected_languages": ["zh"]}}
    steps = []
    for n in names:
        spec = get_stage(n)
        steps.append(spec.build(spec.settings(**settings.get(n, {})), _ctx(tmp_path, n)))
    kept, stats = _run(steps, rows, tmp_path)
    assert 0 < len(kept) < len(rows)
    assert all(d["metadata"]["language"] == "zh" for d in kept)
    assert not any("debian_reference" in d["id"] for d in kept)
    assert "dropped_url_blacklist" in _stage_stats(stats, "URL blacklist")
    assert any(k.startswith("dropped_zh_") for k in _stage_stats(stats, "Chinese rules"))
    # full-width punctuation was rewritten before the rules saw the text
    assert not any(ch in d["text"] for d in kept for ch in "，！？（）")


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_name_registered_stages_with_valid_settings(repo_root, name):
    with open(repo_root / "recipes" / f"{name}.yaml") as f:
        recipe = yaml.safe_load(f)
    assert recipe["name"] == name
    for entry in recipe["stages"]:
        ((stage, cfg),) = entry.items()
        spec = get_stage(stage)
        spec.settings(**(cfg or {}))  # raises on unknown keys or bad values


@pytest.mark.slow
@pytest.mark.parametrize("name,source,keep", [("map_neo_en", "web_pages", 150), ("map_neo_zh", "debian_multilingual", None)])
def test_recipe_runs_end_to_end(repo_root, shared_data, tmp_path, name, source, keep):
    """The whole MAP-Neo chain (cleaning and every dedup stage) from the shipped recipe, on a sample."""
    api = pytest.importorskip("curate.api")
    with gzip.open(shared_data / f"{source}.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    if keep is None:  # Chinese recipe: the Chinese documents plus a few others
        zh = [r for r in rows if r["lang"].lower().startswith("zh")]
        rows = zh[::10] + [r for r in rows if not r["lang"].lower().startswith("zh")][::500]
    else:
        rows = rows[:keep]
    _write_jsonl(tmp_path / "sample.jsonl.gz", rows)
    with open(repo_root / "recipes" / f"{name}.yaml") as f:
        recipe = yaml.safe_load(f)
    recipe["input"]["paths"] = str(tmp_path / "sample.jsonl.gz")
    result = api.run_recipe(recipe, output=tmp_path / "out", tasks=1, workers=1)
    docs = api.read_documents(result.final_documents)
    assert 0 < len(docs) < len(rows)
    assert len({d["id"] for d in docs}) == len(docs)
