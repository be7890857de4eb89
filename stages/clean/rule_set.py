"""One base for the rule-based document filters (`english_rules`, `chinese_rules`, `chinese_repetition`).

A rule set is a list of named rules, evaluated in order on one per-document features object; the
first rule that fails names the drop. `RuleSetFilter` is the one datatrove step every rule set runs
in: it builds the rule set in the task (not pickled with the pipeline), evaluates it, and returns
`(False, rule_name)`, so datatrove counts `dropped_<rule>` per rule and, with an exclusion writer,
stores `metadata.filter_reason` on the removed document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from curate.registry import StageSettings

# A rule takes the document's features and its metadata and says whether the document FAILS.
Rule = Callable[[Any, dict], bool]


def ratio(num: float, den: float, compat: bool) -> float | None:
    """num/den; for den == 0 the released code raised (and dropped the document): None in compat mode
    so the caller drops, else 0.0 (an empty denominator is no evidence of bad text)."""
    if den:
        return num / den
    return None if compat else 0.0


def above(value: float | None, threshold: float) -> bool:
    return value is None or value > threshold  # None: the released code raised -> dropped


def at_or_above(value: float | None, threshold: float) -> bool:
    return value is None or value >= threshold


def below(value: float | None, threshold: float) -> bool:
    return value is None or value < threshold


def enabled(value: Any) -> bool:
    """A threshold setting switches its rule on unless it is None (or False for yes/no rules)."""
    return value is not None and value is not False


class RuleSet:
    """Named rules of one settings object, in order; plain Python (no datatrove)."""

    def __init__(self, settings: StageSettings):
        self.s = settings
        self.compat = bool(getattr(settings, "reference_compat", False))
        self.rules: list[tuple[str, Rule]] = [(n, r) for n, r in self.rule_table() if r is not None]

    def rule_table(self) -> list[tuple[str, Rule | None]]:
        """Every rule in evaluation order; `None` in place of a rule that is switched off."""
        raise NotImplementedError

    # shared helpers of the rules (None = the released code raised = drop)
    def _ratio(self, num: float, den: float) -> float | None:
        return ratio(num, den, self.compat)

    _above = staticmethod(above)
    _at_or_above = staticmethod(at_or_above)
    _below = staticmethod(below)

    def features(self, text: str) -> Any:
        """The per-document object the rules read (lazily computed views of the text)."""
        return text

    def first_failure(self, text: str, metadata: dict | None = None) -> str | None:
        """Name of the first rule `text` fails, or None when it passes every enabled rule."""
        f = self.features(text)
        meta = metadata if metadata is not None else {}
        for name, rule in self.rules:
            if rule(f, meta):
                return name
        return None


class RuleSetFilter(BaseFilter):
    """The datatrove step of a rule set: subclasses name `rule_set_class` and `settings_class`."""

    rule_set_class: ClassVar[type[RuleSet]]
    settings_class: ClassVar[type[StageSettings]]

    def __init__(self, settings: StageSettings | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings or self.settings_class()
        self._rules: RuleSet | None = None

    @property
    def rule_set(self) -> RuleSet:
        if self._rules is None:  # built in the task, not pickled with the pipeline
            self._rules = self.rule_set_class(self.settings)
        return self._rules

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.rule_set.first_failure(doc.text, doc.metadata)
        return (False, reason) if reason else True
