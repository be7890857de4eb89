"""The stage registry: every stage a recipe can name, with its settings model and phase kind.

Stages register themselves with `@register_stage`. Built-in stages live in the `stages` package;
third-party stages are found through the `curate.stages` entry-point group (each entry point names a
module to import), so a recipe can only ever name code that was installed as a package.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

StageKind = Literal["document", "global"]
ENTRY_POINT_GROUP = "curate.stages"


class StageSettings(BaseModel):
    """Base of every stage's settings: unknown keys are errors, values are validated and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StageSpec:
    name: str
    settings: type[StageSettings]
    kind: StageKind
    build: Callable[..., Any]
    help: str
    module: str
    requires: tuple[str, ...] = ()  # stages that must come earlier in a recipe (their outputs are read)

    @property
    def family(self) -> str:
        """`clean`, `dedup`, ... : the subpackage of `stages` the stage lives in."""
        parts = self.module.split(".")
        return parts[1] if len(parts) > 2 and parts[0] == "stages" else parts[0]


_REGISTRY: dict[str, StageSpec] = {}
_loaded = False


def register_stage(name: str, *, settings: type[StageSettings], kind: StageKind, help: str | None = None,
                   requires: tuple[str, ...] | list[str] = ()):
    """Decorator registering a stage builder.

    document stages: `build(settings, ctx) -> list[PipelineStep]`
    global stages:   `build(settings, ctx) -> GlobalPlan`
    requires: names of stages whose output this one reads (`order` reads `embed` and `neighbors`);
        `curate validate` refuses a recipe where one of them is missing or comes later.
    """
    if kind not in ("document", "global"):
        raise ValueError(f"stage {name!r}: kind must be 'document' or 'global', not {kind!r}")
    if not (isinstance(settings, type) and issubclass(settings, StageSettings)):
        raise TypeError(f"stage {name!r}: settings must subclass curate.registry.StageSettings")

    def decorator(build: Callable[..., Any]):
        doc = help or inspect.getdoc(build) or ""
        line = doc.strip().splitlines()[0] if doc.strip() else ""
        existing = _REGISTRY.get(name)
        if existing is not None and existing.module != build.__module__:
            raise ValueError(f"stage {name!r} registered twice ({existing.module} and {build.__module__})")
        _REGISTRY[name] = StageSpec(name, settings, kind, build, line, build.__module__, tuple(requires))
        return build

    return decorator


def load_all() -> None:
    """Import the built-in stages and every installed plugin module (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("stages")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.split(":")[0] in ("stages",):
            continue
        importlib.import_module(ep.value.split(":")[0])


def get_stage(name: str) -> StageSpec:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(name) from None


def all_stages() -> dict[str, StageSpec]:
    load_all()
    return dict(sorted(_REGISTRY.items()))


def describe_settings(settings: type[StageSettings]) -> list[dict[str, str]]:
    """One row per parameter: name, type, default, help (for `curate stages`)."""
    rows = []
    for pname, field in settings.model_fields.items():
        ann = field.annotation
        type_name = getattr(ann, "__name__", None) if isinstance(ann, type) else None
        type_name = type_name or str(ann).replace("typing.", "")
        if field.is_required():
            default = "(required)"
        else:
            default = repr(field.get_default(call_default_factory=True))
        rows.append({"name": pname, "type": type_name, "default": default, "help": field.description or ""})
    return rows
