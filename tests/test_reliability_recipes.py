"""Recipes are data, not code: YAML is parsed safely, only registered stages (built in, or installed as a
`curate.stages` entry point) can be named, and nothing a recipe says makes curate write outside OUT."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from curate.api import run_recipe
from curate.paths import UnsafeOutputError, check_output_tree, safe_name
from curate.recipe import RecipeError, load_recipe
from helpers import curate_cli, read_docs, write_jsonl_gz


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl_gz(tmp_path / "in" / "d.jsonl.gz", [{"id": f"d{i}", "text": f"document {i}"} for i in range(5)])


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system [\"touch {marker}\"]",
                                 "!!python/object/new:os.system [\"touch {marker}\"]",
                                 "!!python/name:os.system", "!!binary aGVsbG8="])
def test_yaml_tags_that_build_objects_are_rejected_and_never_run(tmp_path, data, tag):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: x\ninput: {{paths: {data}}}\noutput: {tmp_path / 'out'}\n"
                      f"stages:\n  - normalize: {tag.format(marker=marker)}\n")
    if tag.startswith("!!binary"):  # a standard safe tag: it loads (as bytes) and fails validation instead
        with pytest.raises(RecipeError, match="parameters of 'normalize' must be a mapping"):
            load_recipe(recipe)
        return
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe)
    assert f"{recipe}:5:" in str(e.value) and "not allowed" in str(e.value) and "plain data" in str(e.value)
    res = curate_cli("run", str(recipe))
    assert res.returncode == 2 and "not allowed" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", ["mypkg.module:Class", "stages.clean.normalize:NormalizeText",
                                  "stages.clean.normalize.NormalizeText", "os:system", "builtins.exec"])
def test_a_recipe_cannot_name_code_only_registered_stages(tmp_path, data, name):
    with pytest.raises(RecipeError, match=f"unknown stage '{name}'") as e:
        load_recipe({"input": {"paths": str(data)}, "output": str(tmp_path / "out"), "stages": [{name: {}}]})
    assert "valid stages:" in str(e.value)
    assert "mypkg" not in sys.modules


def _plugin(site: Path, with_entry_point: bool) -> None:
    pkg = site / "curate_plugin_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from curate.registry import StageSettings, register_stage\n\n"
        "class Upper(StageSettings):\n    pass\n\n"
        "@register_stage('demo_upper', settings=Upper, kind='document')\n"
        "def build(settings, ctx):\n    \"\"\"Upper-case the text (a plugin).\"\"\"\n    return []\n"
    )
    if with_entry_point:
        info = site / "curate_plugin_demo-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: curate-plugin-demo\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[curate.stages]\ndemo = curate_plugin_demo\n")


@pytest.mark.parametrize("with_entry_point", [True, False])
def test_a_plugin_stage_is_usable_only_when_installed_as_an_entry_point(tmp_path, data, with_entry_point):
    site = tmp_path / "site"
    _plugin(site, with_entry_point)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"input: {{paths: {data}}}\noutput: {tmp_path / 'out'}\nstages:\n  - demo_upper\n")
    env_path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    import subprocess

    from helpers import REPO

    res = subprocess.run([sys.executable, "-m", "curate.cli", "validate", str(recipe)], cwd=REPO, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": env_path}, timeout=120)
    if with_entry_point:
        assert res.returncode == 0 and "demo_upper" in res.stdout, res.stderr
    else:  # importable, but not installed as a plugin: a recipe cannot reach it
        assert res.returncode == 2 and "unknown stage 'demo_upper'" in res.stderr


def test_stage_ids_and_phase_folders_must_be_plain_names(tmp_path, data):
    from curate.plan import StageContext
    from curate.registry import _REGISTRY, StageSettings, register_stage

    class Nothing(StageSettings):
        pass

    try:  # a plugin could register any name; ids become folders under OUT
        register_stage("../escape", settings=Nothing, kind="document")(lambda s, c: [])
        with pytest.raises(RecipeError, match=r"stage id '\.\./escape' is not a plain name"):
            load_recipe({"input": {"paths": str(data)}, "output": str(tmp_path / "out"), "stages": ["../escape"]})
    finally:
        _REGISTRY.pop("../escape", None)
    ctx = StageContext(stage_id="embed", output_dir=str(tmp_path / "out"), phase_dir_for_documents=str(tmp_path))
    assert ctx.data_dir("search") == str(tmp_path / "out" / "embed.search" / "data")
    for bad in ("../x", "a/b", "/abs", ".."):
        with pytest.raises(ValueError, match="not a plain name"):
            ctx.data_dir(bad)
        with pytest.raises(ValueError):
            ctx.stage_data_dir(bad, "search")
    for bad in ("../x", "a/b", "", "a b", ".hidden"):
        with pytest.raises(ValueError):
            safe_name(bad)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_a_phase_folder_linked_outside_out_is_refused_before_anything_is_written(tmp_path, data):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "normalize").symlink_to(elsewhere, target_is_directory=True)
    recipe = {"name": "x", "input": {"paths": str(data)}, "output": str(out), "stages": ["normalize"]}
    with pytest.raises(UnsafeOutputError) as e:
        run_recipe(recipe)
    assert f"{out / 'normalize'} is a symbolic link to {elsewhere}" in str(e.value)
    assert list(elsewhere.iterdir()) == []
    from helpers import write_recipe

    res = curate_cli("run", str(write_recipe(tmp_path / "r.yaml", recipe)))
    assert res.returncode == 1 and "outside the output folder" in res.stderr
    assert list(elsewhere.iterdir()) == []


def test_links_inside_out_and_an_out_that_is_itself_a_link_are_fine(tmp_path, data):
    real = tmp_path / "real_out"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    (real / "notes").mkdir()
    (real / "latest").symlink_to(real / "notes", target_is_directory=True)
    check_output_tree(str(tmp_path / "out"))
    res = run_recipe({"name": "x", "input": {"paths": str(data)}, "output": str(tmp_path / "out"),
                      "stages": ["normalize"]})
    assert len(read_docs(res.final_documents)) == 5 and (real / "normalize" / "documents").is_dir()


def test_odd_names_and_parameters_write_nothing_outside_out(tmp_path, data):
    before = _tree(tmp_path)
    res = run_recipe({"name": "../../escape", "description": "../../../x",
                      "input": {"paths": str(data), "id_key": "../../id", "text_key": "text"},
                      "output": str(tmp_path / "out"),
                      "stages": [{"normalize": {}}, {"url_filter": {"url_key": "../../url"}}, "exact_dedup"]})
    assert read_docs(res.final_documents)
    after = _tree(tmp_path)
    assert {p for p in after - before if not p.startswith("out")} == set()
