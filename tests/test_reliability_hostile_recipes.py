"""Hostile recipes: alias bombs, `${var}` expansion bombs, recursive aliases and deep nesting end in exit 2
with a one-line message naming the file (and line), quickly and in bounded memory; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curate.recipe import RecipeError, load_recipe
from curate.yaml_limits import MAX_DEPTH, MAX_NODES, MAX_SUBSTITUTED_CHARS
from helpers import curate_cli, curate_cli_peak

PEAK_LIMIT = 400 * 2**20  # the CLI's own imports take ~40-200 MiB; a bomb that got through takes GBs


def _tail(data: Path) -> str:
    return f"input: {{format: jsonl, paths: {data}}}\noutput: out\n"


def _alias_bomb(data: Path) -> str:
    """The classic 'billion laughs': 9 levels of 9 aliases each, 9**9 values from ~400 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghi":
        lines.append(f"{c}: &{c} [" + ",".join(["*" + prev] * 9) + "]")
        prev = c
    return "vars:\n" + "\n".join("  " + x for x in lines) + "\n" + _tail(data)


def _expansion_bomb(data: Path) -> str:
    variables = {"a": "x" * 10}
    prev = "a"
    for c in "bcdefghij":
        variables[c] = ("${" + prev + "}") * 10
        prev = c
    return yaml.safe_dump({"vars": variables, "description": "${j}"}) + _tail(data)


CASES = {
    "alias_bomb": (_alias_bomb, f"expands to more than {MAX_NODES:,} values"),
    "expansion_bomb": (_expansion_bomb, f"longer than {MAX_SUBSTITUTED_CHARS:,} characters"),
    "recursive_alias": (lambda d: "name: &a [*a]\n" + _tail(d), "alias *a refers to its own anchor &a"),
    "recursive_alias_in_mapping": (lambda d: "vars: &v {self: *v}\n" + _tail(d), "alias *v refers to its own anchor"),
    "nested_5000": (lambda d: "vars: {a: " + "[" * 5000 + "]" * 5000 + "}\n" + _tail(d),
                    f"nested more than {MAX_DEPTH} levels deep"),
    "nested_mappings_5000": (lambda d: "vars:\n  a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n" + _tail(d),
                             f"nested more than {MAX_DEPTH} levels deep"),
    "variable_cycle": (lambda d: "vars: {a: '${b}/x', b: '${a}/y'}\nname: '${a}'\n" + _tail(d), "refers to itself"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_recipe_is_refused_with_exit_2_and_a_message(tmp_path, case):
    make, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(make(tmp_path))
    assert path.stat().st_size < 30_000  # each is a small file (the bombs: under 600 bytes)
    res, peak = curate_cli_peak("validate", str(path), timeout=60)  # a bomb that got through runs for minutes
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "RecursionError" not in res.stderr
    message = [x for x in res.stderr.strip().splitlines() if not x.startswith("CURATE_PEAK_KIB")][-1]
    assert message.startswith(f"error: {path}") and expected in message, message
    assert 0 < peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"
    # `run` refuses it the same way, writing nothing
    res = curate_cli("run", str(path), "-o", str(tmp_path / "out"), timeout=60)
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_deeply_nested_override_value_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(_tail(tmp_path))
    res = curate_cli("validate", str(path), "vars.x=" + "[" * 5000 + "]" * 5000, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"nested more than {MAX_DEPTH} levels deep" in res.stderr


def test_the_limits_leave_ordinary_recipes_alone(tmp_path):
    """Aliases, variables and nesting at the sizes real recipes use still load."""
    text = ("vars: {root: " + str(tmp_path) + ", sub: '${root}', deep: " + "[" * 20 + "1" + "]" * 20 + "}\n"
            "input: {format: jsonl, paths: '${sub}'}\noutput: '${root}/out'\n"
            "stages:\n  - normalize: {form: NFC}\n")
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    rec = load_recipe(path)
    assert rec.input.paths == str(tmp_path) and rec.output.folder == f"{tmp_path}/out"
    # a shared anchor is an ordinary YAML feature: many aliases of a small node are fine
    path.write_text("vars:\n  x: &x {a: 1, b: [1, 2, 3]}\n  ys: [" + ", ".join(["*x"] * 1000) + "]\n" + _tail(tmp_path))
    assert load_recipe(path).input.paths == str(tmp_path)
    with pytest.raises(RecipeError, match="more than"):
        path.write_text("vars:\n  x: &x [" + ", ".join(["1"] * 1000) + "]\n  ys: [" + ", ".join(["*x"] * 1000)
                        + "]\n" + _tail(tmp_path))
        load_recipe(path)
