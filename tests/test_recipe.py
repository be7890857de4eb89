"""Recipe loading: overrides, variables, and one precise message per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.recipe import RecipeError, load_recipe
from helpers import curate_cli, write_jsonl_gz, write_recipe


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl_gz(tmp_path / "data" / "docs.jsonl.gz", [{"id": "a", "text": "hello world"}])


def base_recipe(corpus: Path, out: Path) -> dict:
    return {
        "name": "t",
        "vars": {"data": str(corpus.parent)},
        "input": {"format": "jsonl", "paths": "${data}/docs.jsonl.gz"},
        "output": str(out),
        "executor": {"tasks": 2},
        "stages": [{"normalize": {"form": "NFC"}}, "exact_dedup", {"normalize": {}}],
    }


def test_valid_recipe_with_variables_ids_and_overrides(tmp_path, corpus):
    path = write_recipe(tmp_path / "r.yaml", base_recipe(corpus, tmp_path / "out"))
    r = load_recipe(path, ["executor.tasks=3", "stages.normalize.form=NFD", "stages.2.max_blank_lines=0"])
    assert r.input.paths == f"{corpus.parent}/docs.jsonl.gz"
    assert r.executor.tasks == 3
    assert [s.id for s in r.stages] == ["normalize", "exact_dedup", "normalize_2"]
    assert r.stages[0].settings.form == "NFD"
    assert r.stages[2].settings.max_blank_lines == 0
    assert r.output.folder == str(tmp_path / "out")


def test_override_of_variable_and_output(tmp_path, corpus):
    other = write_jsonl_gz(tmp_path / "other" / "docs.jsonl.gz", [{"id": "b", "text": "x"}])
    path = write_recipe(tmp_path / "r.yaml", base_recipe(corpus, tmp_path / "out"))
    r = load_recipe(path, [f"vars.data={other.parent}", "output=elsewhere"])
    assert r.input.paths == f"{other.parent}/docs.jsonl.gz"
    assert r.output.folder == "elsewhere"


def test_builtin_recipe_by_name():
    r = load_recipe("quickstart")
    assert r.name == "quickstart" and r.input.format == "python_docs"


BROKEN = {
    "unknown_stage": (lambda r: r["stages"].append({"exact_dedupe": {}}),
                      ["stages[3]", "unknown stage 'exact_dedupe'", "did you mean 'exact_dedup'", "valid stages:"]),
    "unknown_key": (lambda r: r["stages"][0]["normalize"].update(fromm="NFC"),
                    ["stages[0].normalize.fromm", "unknown parameter 'fromm'", "did you mean 'form'", "valid: form"]),
    "wrong_type": (lambda r: r["executor"].update(tasks="many"),
                   ["executor.tasks", "valid integer", "'many'"]),
    "missing_input": (lambda r: r["input"].update(paths="/nonexistent/corpus.jsonl"),
                      ["input.paths", "'/nonexistent/corpus.jsonl' does not exist"]),
    # stage order: a stage that reads an earlier stage's output without it, or before it
    "pack_without_order": (lambda r: r["stages"].extend(["embed", "neighbors", {"pack": {}}]),
                           ["stages[5]", "stage 'pack' reads the output of an earlier 'order' stage",
                            "add the stage 'order' before it", "in order: embed, neighbors, order, pack"]),
    "order_without_neighbors": (lambda r: r["stages"].extend(["embed", "order"]),
                                ["stages[4]", "stage 'order'", "earlier 'neighbors' stage"]),
    "neighbors_before_embed": (lambda r: r["stages"].extend(["neighbors", "embed"]),
                               ["stages[3]", "'embed' comes after it (stages[4]): move it before"]),
    # language codes are checked against what lid.176 can predict
    "unknown_language_code": (lambda r: r["stages"].insert(1, {"langid": {"expected_languages": ["en", "eng"]}}),
                              ["stages[1].langid.expected_languages", "'eng' is not a language code of lid.176",
                               "did you mean 'en'"]),
    "region_language_code": (lambda r: r["stages"].insert(1, {"english_rules": {"languages": ["zh_Hans"]}}),
                             ["stages[1].english_rules", "'zh_Hans' is not a language code", "did you mean 'zh'"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_recipes_name_file_line_key_and_choices(tmp_path, corpus, case):
    mutate, expected = BROKEN[case]
    recipe = base_recipe(corpus, tmp_path / "out")
    mutate(recipe)
    path = write_recipe(tmp_path / "broken.yaml", recipe)
    res = curate_cli("validate", str(path))
    assert res.returncode == 2, res.stdout + res.stderr
    msg = " ".join(res.stderr.split())
    assert str(path) in msg
    for piece in expected:
        assert piece in msg, (piece, msg)
    assert not (tmp_path / "out").exists()  # nothing written


def test_malformed_yaml_points_at_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninput:\n  format: jsonl\n  paths: [a, b\noutput: out\n")
    res = curate_cli("validate", str(path))
    assert res.returncode == 2
    msg = " ".join(res.stderr.split())
    assert f"{path}:" in msg and "malformed YAML" in msg
    line = int(msg.split(f"{path}:")[1].split(":")[0])
    assert line in (4, 5)


def test_every_mistake_gives_its_own_message(tmp_path, corpus):
    messages = set()
    for case, (mutate, _) in BROKEN.items():
        recipe = base_recipe(corpus, tmp_path / "out")
        mutate(recipe)
        with pytest.raises(RecipeError) as e:
            load_recipe(write_recipe(tmp_path / f"{case}.yaml", recipe))
        messages.add(str(e.value).split(": ", 1)[1])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(bad)
    messages.add(str(e.value).split(": ", 1)[1])
    assert len(messages) == len(BROKEN) + 1


def test_line_numbers_of_stage_parameters(tmp_path, corpus):
    path = tmp_path / "r.yaml"
    path.write_text(
        f"name: t\ninput:\n  paths: {corpus}\noutput: {tmp_path}/o\nstages:\n  - normalize:\n      form: NFC\n"
        "  - normalize:\n      max_blank_lines: -3\n"
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert e.value.line == 9 and e.value.path == "stages[1].normalize.max_blank_lines"
    assert "greater than or equal to 0" in e.value.message


def test_unknown_variable_and_bad_override(tmp_path, corpus):
    recipe = base_recipe(corpus, tmp_path / "out")
    recipe["input"]["paths"] = "${nope}/x.jsonl"
    with pytest.raises(RecipeError, match=r"unknown variable '\$\{nope\}'; defined: recipe_dir, env:NAME, data"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    ok = write_recipe(tmp_path / "ok.yaml", base_recipe(corpus, tmp_path / "out"))
    with pytest.raises(RecipeError, match="no stage 'minhash' in the recipe; stages: normalize, exact_dedup, normalize_2"):
        load_recipe(ok, ["stages.minhash.bands=3"])
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(ok, ["executor.tasks"])


def test_unknown_top_level_key_lists_valid_keys(tmp_path, corpus):
    recipe = base_recipe(corpus, tmp_path / "out")
    recipe["stagse"] = []
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    assert "unknown key 'stagse'" in e.value.message and "did you mean 'stages'" in e.value.message


def test_executor_kind_choices_are_listed(tmp_path, corpus):
    recipe = base_recipe(corpus, tmp_path / "out")
    recipe["executor"]["kind"] = "kubernetes"
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    assert e.value.path == "executor.kind"
    assert "'local', 'slurm' or 'ray'" in e.value.message


def test_every_shipped_recipe_validates(repo_root):
    """Keys, types, stage names and parameters of every recipe in recipes/ (paths checked below)."""
    names = sorted(p.stem for p in (repo_root / "recipes").glob("*.yaml"))
    assert {"quickstart", "map_neo_en", "map_neo_zh", "iclm", "full"} <= set(names)
    for name in names:
        assert load_recipe(name, check_paths=False).name == name


def test_shipped_recipes_find_the_shared_corpora(shared_data):
    for name in ("map_neo_en", "map_neo_zh", "iclm", "full", "crawl_en"):
        assert Path(str(load_recipe(name).input.paths)).exists()
