"""Recipes: YAML files naming the input, the output folder, the executor and an ordered list of stages.

Loading is strict and explains itself: every problem is reported as
`FILE:LINE: key.path: what is wrong; what was expected / the valid choices`, and nothing is written
before the whole recipe (every stage's parameters included) has validated.

Order of work: YAML is parsed safely -> command-line overrides `key.path=value` are applied to the raw
tree -> `${name}` variables are substituted -> the top level is validated with pydantic -> each stage's
parameters are validated against that stage's settings model -> local input paths must exist.
"""

from __future__ import annotations

import copy
import difflib
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate.errors import RecipeError
from curate.paths import safe_name
from curate.registry import StageKind, StageSettings, all_stages

BUILTIN_RECIPES_DIRS = (
    Path(__file__).resolve().parent.parent / "recipes",  # a source checkout / editable install
    Path(os.sys.prefix) / "share" / "curate" / "recipes",  # a regular install (data-files)
)


# ---------------------------------------------------------------------------------------------------
# the typed model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    format: Literal["jsonl", "parquet", "warc", "huggingface", "python_docs"] = Field(
        "jsonl", description="reader: jsonl(.gz/.zst), parquet, warc, a Hugging Face dataset, or the built-in Python docs corpus"
    )
    paths: str | list[str] | None = Field(
        None, description="file, folder or glob (or a list of them); local paths or fsspec URLs (s3://, hf://, ...)"
    )
    text_key: str = Field("text", description="field holding the document text")
    id_key: str = Field("id", description="field holding the document id (missing: file path + line number)")
    label_key: str | None = Field(None, description="metadata field holding a topic label, used for ordering-quality figures")
    limit: int = Field(-1, description="read at most this many documents per task (-1: all)")
    dataset: str | None = Field(None, description="huggingface: dataset name or local path")
    dataset_config: str | None = Field(None, description="huggingface: configuration name")
    split: str = Field("train", description="huggingface: split")
    dataset_options: dict[str, Any] = Field(
        default_factory=dict, description="huggingface: more load_dataset arguments (e.g. data_files for 'json')"
    )
    streaming: bool = Field(False, description="huggingface: stream instead of downloading/caching first")
    shards: int = Field(8, ge=1, description="python_docs: number of files the generated corpus is split into")
    strict: bool = Field(False, description="stop the run at the first bad input record (default: count it and go on)")

    @field_validator("paths")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("must name at least one path")
        return v


class OutputConfig(_Strict):
    folder: str = Field(..., description="where every phase writes (OUT)")
    keep_removed: bool = Field(False, description="write removed documents with their reason under OUT/<phase>/removed/")


class SlurmConfig(_Strict):
    partition: str = Field("", description="Slurm partition")
    time: str = Field("24:00:00", description="time limit per task")
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task")
    mem_per_cpu_gb: int = Field(2, ge=1, description="memory per CPU in GB")
    gpus_per_task: int = Field(0, ge=0, description="GPUs for phases that use them (embed, neighbors)")
    qos: str = Field("normal", description="Slurm QOS")
    job_name: str = Field("curate", description="job name prefix")
    env_command: str | None = Field(None, description="shell command run before each task (e.g. activate an environment)")
    venv_path: str | None = Field(None, description="virtual environment to activate in each task")
    sbatch_args: dict[str, Any] = Field(default_factory=dict, description="extra #SBATCH arguments")
    wait: bool = Field(False, description="after submitting, follow the jobs until the last phase ends; a failed task fails the run")


class RayConfig(_Strict):
    address: str | None = Field(None, description="Ray cluster address (None: start or join a local one)")
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task")
    mem_per_cpu_gb: float = Field(2, gt=0, description="memory per CPU in GB")
    gpus_per_task: int = Field(0, ge=0, description="GPUs for phases that use them (embed, neighbors)")


class ExecutorConfig(_Strict):
    kind: Literal["local", "slurm", "ray"] = Field("local", description="which datatrove executor runs the phases")
    tasks: int = Field(1, ge=1, description="tasks per sharded phase")
    workers: int = Field(-1, description="tasks run at once on this machine (-1: min(tasks, CPU count))")
    seed: int = Field(0, description="seed for every random choice")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


class _RecipeTop(_Strict):
    name: str = Field("recipe", description="recipe name")
    description: str = Field("", description="one line on what it does")
    vars: dict[str, Any] = Field(default_factory=dict, description="values for ${name} substitution")
    input: InputConfig
    output: OutputConfig
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    stages: list[Any] = Field(default_factory=list, description="ordered stages: `- name: {param: value}`")


@dataclass(frozen=True)
class StageEntry:
    id: str
    name: str
    kind: StageKind
    settings: StageSettings


@dataclass
class Recipe:
    name: str
    description: str
    input: InputConfig
    output: OutputConfig
    executor: ExecutorConfig
    stages: list[StageEntry]
    source: str = "<recipe>"
    raw: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# loading


def resolve_recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A path as given, or the name of a built-in recipe (`quickstart` -> recipes/quickstart.yaml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    if p.suffix == "" and p.parent == Path("."):
        for d in BUILTIN_RECIPES_DIRS:
            candidate = d / f"{p.name}.yaml"
            if candidate.exists():
                return candidate
    known = sorted(x.stem for d in BUILTIN_RECIPES_DIRS if d.is_dir() for x in d.glob("*.yaml"))
    raise RecipeError(str(name_or_path), "", f"no such recipe file; built-in recipes: {', '.join(known) or 'none'}")


def load_recipe(
    source: str | os.PathLike | dict,
    overrides: list[str] | tuple[str, ...] = (),
    check_paths: bool = True,
) -> Recipe:
    """Load, override, substitute and validate a recipe. Raises RecipeError on any problem."""
    if isinstance(source, dict):
        file, raw, lines, recipe_dir = "<recipe>", _deepcopy(source), {}, Path.cwd()
    else:
        path = resolve_recipe_path(source)
        file, recipe_dir = str(path), path.resolve().parent
        raw, lines = _parse_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError(file, "", f"a recipe is a mapping of keys (name, input, output, executor, stages), not {type(raw).__name__}", 1)

    def err(path: tuple, message: str) -> RecipeError:
        return RecipeError(file, _fmt_path(path), message, _line_for(lines, path))

    for ov in overrides:
        _apply_override(raw, ov, file)
    raw = _substitute(raw, raw.get("vars") or {}, recipe_dir, err)
    if isinstance(raw.get("output"), str):
        raw["output"] = {"folder": raw["output"]}

    try:
        top = _RecipeTop.model_validate(raw)
    except ValidationError as e:
        raise _from_validation(e, (), err, _RecipeTop) from None

    stages = _validate_stages(top.stages, err)
    if check_paths:
        _check_input(top.input, err)
    return Recipe(top.name, top.description, top.input, top.output, top.executor, stages, file, raw)


def _validate_stages(entries: list[Any], err) -> list[StageEntry]:
    registry = all_stages()
    out: list[StageEntry] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            params = {} if params is None else params
        else:
            raise err(("stages", i), "each stage is `- name: {param: value, ...}` (or just `- name`)")
        if name not in registry:
            close = difflib.get_close_matches(str(name), registry, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise err(("stages", i), f"unknown stage '{name}'; {hint}valid stages: {', '.join(registry)}")
        if not isinstance(params, dict):
            raise err(("stages", i, name), f"parameters of '{name}' must be a mapping, not {type(params).__name__}")
        spec = registry[name]
        try:
            settings = spec.settings.model_validate(params)
        except ValidationError as e:
            raise _from_validation(e, ("stages", i, name), err, spec.settings, stage=name) from None
        seen[name] = seen.get(name, 0) + 1
        stage_id = name if seen[name] == 1 else f"{name}_{seen[name]}"
        try:  # ids name folders under OUT: a plugin's odd stage name must not reach outside it
            safe_name(stage_id)
        except ValueError as e:
            raise err(("stages", i), str(e)) from None
        out.append(StageEntry(stage_id, name, spec.kind, settings))
    return out


def _check_input(inp: InputConfig, err) -> None:
    if inp.format == "python_docs":
        return
    if inp.format == "huggingface":
        if not inp.dataset:
            raise err(("input", "dataset"), "format 'huggingface' needs `dataset` (a dataset name or local path)")
        return
    if inp.paths is None:
        raise err(("input", "paths"), f"format '{inp.format}' needs `paths` (a file, folder or glob)")
    for j, p in enumerate([inp.paths] if isinstance(inp.paths, str) else inp.paths):
        key = ("input", "paths") if isinstance(inp.paths, str) else ("input", "paths", j)
        if "://" in p:  # remote (fsspec): checked by the reader when it lists files
            continue
        if glob.has_magic(p):
            if not glob.glob(p, recursive=True):
                raise err(key, f"no file matches the pattern '{p}' (working directory {os.getcwd()})")
        elif not os.path.exists(p):
            raise err(key, f"input path '{p}' does not exist (working directory {os.getcwd()})")


# ---------------------------------------------------------------------------------------------------
# YAML with line numbers


def _parse_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(str(path), "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        ctx = getattr(e, "context", None)
        if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
            # safe_load has no constructor for python/object & co: say why rather than just "malformed"
            quoted = re.search(r"'([^']*)'", problem)
            tag = quoted.group(1).replace("tag:yaml.org,2002:", "!!") if quoted else problem
            raise RecipeError(str(path), "", f"YAML tag {tag} not allowed{col}: a "
                              "recipe is plain data (mappings, lists, strings, numbers) and cannot build Python "
                              "objects", line) from None
        raise RecipeError(str(path), "", f"malformed YAML{col}: {problem}" + (f" ({ctx})" if ctx else ""), line) from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def _index_lines(node, path: tuple, lines: dict) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            lines[path + (key,)] = k.start_mark.line + 1
            _index_lines(v, path + (key,), lines)
            lines[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index_lines(v, path + (i,), lines)


def _line_for(lines: dict, path: tuple) -> int | None:
    path = tuple(str(p) if not isinstance(p, int) else p for p in path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _fmt_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# ---------------------------------------------------------------------------------------------------
# validation errors -> one precise message


def _from_validation(e: ValidationError, prefix: tuple, err, model: type[BaseModel], stage: str | None = None):
    first = e.errors()[0]
    loc = tuple(first["loc"])
    path = prefix + loc
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = ", ".join(parent.model_fields) if parent else "?"
        what = f"parameter '{loc[-1]}' of stage '{stage}'" if stage and len(loc) == 1 else f"key '{loc[-1]}'"
        close = difflib.get_close_matches(str(loc[-1]), parent.model_fields if parent else [], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return err(path, f"unknown {what}; {hint}valid: {valid}")
    if kind == "missing":
        return err(path, "required but missing")
    got = first.get("input")
    return err(path, f"{first['msg']}; got {got!r} ({type(got).__name__})")


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        ann = getattr(f, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


# ---------------------------------------------------------------------------------------------------
# overrides and variables

_VAR = re.compile(r"\$\{([^}]+)\}")


def _apply_override(raw: dict, override: str, file: str) -> None:
    """`a.b.c=value`: value parsed as YAML; `stages.<id or index>.param` addresses a stage."""
    if "=" not in override:
        raise RecipeError(file, override, "an override is key.path=value")
    key, value_text = override.split("=", 1)
    try:
        value = yaml.safe_load(value_text) if value_text != "" else ""
    except yaml.YAMLError:
        value = value_text
    parts = key.strip().split(".")
    if parts[0] == "stages":
        _override_stage(raw, parts, value, override, file)
        return
    node = raw
    for p in parts[:-1]:
        if isinstance(node.get(p), str) and p == "output":  # `output: folder` shorthand
            node[p] = {"folder": node[p]}
        if not isinstance(node.setdefault(p, {}), dict):
            raise RecipeError(file, key, f"cannot set a key inside '{p}', which is not a mapping")
        node = node[p]
    if parts == ["output"] and isinstance(raw.get("output"), dict):
        raw["output"]["folder"] = value
        return
    node[parts[-1]] = value


def _override_stage(raw: dict, parts: list[str], value: Any, override: str, file: str) -> None:
    stages = raw.setdefault("stages", [])
    if len(parts) < 3:
        raise RecipeError(file, ".".join(parts), "a stage override is stages.<stage id or index>.<parameter>=value")
    ids = []
    counts: dict[str, int] = {}
    for entry in stages:
        name = entry if isinstance(entry, str) else next(iter(entry)) if isinstance(entry, dict) and entry else "?"
        counts[name] = counts.get(name, 0) + 1
        ids.append(name if counts[name] == 1 else f"{name}_{counts[name]}")
    target = parts[1]
    idx = int(target) if target.isdigit() else (ids.index(target) if target in ids else None)
    if idx is None or idx >= len(stages):
        raise RecipeError(file, ".".join(parts[:2]), f"no stage '{target}' in the recipe; stages: {', '.join(ids) or 'none'}")
    entry = stages[idx]
    if isinstance(entry, str):
        entry = stages[idx] = {entry: {}}
    name = next(iter(entry))
    params = entry[name] if isinstance(entry[name], dict) else {}
    entry[name] = params
    node = params
    for p in parts[2:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _substitute(obj: Any, variables: dict, recipe_dir: Path, err, path: tuple = ()) -> Any:
    if isinstance(obj, dict):
        return {k: _substitute(v, variables, recipe_dir, err, path + (k,)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, variables, recipe_dir, err, path + (i,)) for i, v in enumerate(obj)]
    if not isinstance(obj, str) or "${" not in obj:
        return obj

    def lookup(name: str, depth: int = 0) -> Any:
        name = name.strip()
        if name == "recipe_dir":
            return str(recipe_dir)
        if name.startswith("env:"):
            var = name[4:]
            if var not in os.environ:
                raise err(path, f"environment variable '{var}' is not set")
            return os.environ[var]
        if name not in variables:
            valid = ", ".join(["recipe_dir", "env:NAME", *variables])
            raise err(path, f"unknown variable '${{{name}}}'; defined: {valid}")
        value = variables[name]
        if isinstance(value, str) and "${" in value:
            if depth > 10:
                raise err(path, f"variable '{name}' refers to itself")
            value = _VAR.sub(lambda m: str(lookup(m.group(1), depth + 1)), value)
        return value

    whole = _VAR.fullmatch(obj)
    if whole:  # a lone ${x} keeps the variable's type (a list stays a list)
        return lookup(whole.group(1))
    return _VAR.sub(lambda m: str(lookup(m.group(1))), obj)


def _deepcopy(obj):
    return copy.deepcopy(obj)
