"""`chinese_rules` and `chinese_repetition`: MAP-Neo's Chinese document rules and repetition rules.

Both run on the text as `chinese_format` rewrote it (full-width punctuation already ASCII). In the
released pipeline language id sits between them, so they are two stages: a recipe runs
`chinese_rules`, then `langid`, then `chinese_repetition`. Each character counts as a word (Chinese
has no spaces); `jieba` segments words only for the mean-word-length rule.

`reference_compat: true` on `chinese_rules` runs the released rule function (`ReleasedChineseRules`);
the released code never applies the repetition rules (it tests a tuple for truth), and compat on
`chinese_repetition` reproduces that (every document passes).
"""

from __future__ import annotations

import re
import string
import unicodedata

import numpy as np
from datatrove.data import Document
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage
from stages.clean.english_features import BULLETS
from stages.clean.rule_set import Rule, RuleSet, RuleSetFilter, above, enabled, ratio
from stages.clean.text_stats import (
    code_points,
    duplicated_ngram_char_share,
    entropy_from_ids,
    ngram_keys,
    top_ngram_char_share,
)

_PIECES = re.compile(r'[.!…?;"]+')
_HASH_RUN = re.compile(r"#+")
_ELLIPSIS_RUN = re.compile(r"…+|\.{2,}")
_DIGIT = re.compile(r"\d")
# ASCII punctuation plus the CJK marks that format unification leaves in place (、《》「」『』【】…).
_CJK_PUNCT = "、。〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟・…—–·‘’“”！＂＇（），．：；？［］｛｝"
PUNCTUATION = frozenset(string.punctuation + _CJK_PUNCT)
_ANY_PUNCT = re.compile("[" + re.escape(string.punctuation + _CJK_PUNCT) + "]")
_NOT_WORD = re.compile("[\\s" + re.escape(string.punctuation + _CJK_PUNCT) + "]+")
_READ_MORE_ENDINGS = ("readmore", "展开", "更多")
# released: case-sensitive, no strip, plus "。。。" (which format unification has already turned into "...")
_RELEASED_READ_MORE_ENDINGS = ("readmore", "展开", "更多", "。。。")
_RELEASED_PUNCTUATION = frozenset(string.punctuation + "…")  # on NFKC text, where "…" has become "..."
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")

_jieba = None


def jieba_cut(text: str) -> list[str]:
    """jieba's words of `text` (accurate mode with HMM, its default; dictionary loaded once per process)."""
    global _jieba
    if _jieba is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba = jieba
    return _jieba.lcut(text)


def jieba_words(text: str) -> list[str]:
    """jieba words of `text` with punctuation and whitespace removed from each word."""
    out = []
    for w in jieba_cut(text):
        if not w.isalnum():  # rare: tokens holding punctuation or spaces lose those characters
            w = _NOT_WORD.sub("", w)
        if w:
            out.append(w)
    return out


class ChineseRulesSettings(StageSettings):
    reference_compat: bool = Field(
        False, description="the released rule function: NFKC views, punctuation removed before jieba, ... (README)"
    )
    min_sentence_pieces: int | None = Field(2, description="zh_sentences: drop when re.split('[.!…?;\"]+') gives fewer pieces")
    min_chars: int | None = Field(50, description="zh_char_count: drop with fewer characters")
    max_chars: int | None = Field(10_000, description="zh_char_count: drop with more characters")
    min_mean_word_length: float | None = Field(1.3, description="zh_mean_word_length (jieba words): drop below")
    max_mean_word_length: float | None = Field(10, description="zh_mean_word_length (jieba words): drop above")
    max_hash_run_ratio: float | None = Field(0.1, description="zh_hash_runs: '#+' runs / characters, drop above")
    max_ellipsis_run_ratio: float | None = Field(0.1, description="zh_ellipsis_runs: runs / characters, drop above")
    max_digit_ratio: float | None = Field(0.3, description="zh_digits: digits / characters, drop above")
    max_read_more_line_ratio: float | None = Field(
        0.3, description="zh_read_more_lines: lines ending in readmore/展开/更多, drop above"
    )
    max_bullet_line_ratio: float | None = Field(0.9, description="zh_bullet_lines: drop above")
    require_punctuation: bool = Field(True, description="zh_no_punctuation: drop text without any punctuation")
    min_unique_char_ratio: float | None = Field(0.1, description="zh_unique_chars: drop at or below")
    min_char_entropy: float | None = Field(3.0, description="zh_char_entropy: natural-log entropy, drop below")


class ChineseRules(RuleSet):
    """The enabled Chinese document rules (plain Python)."""

    def __init__(self, settings: ChineseRulesSettings | None = None):
        super().__init__(settings or ChineseRulesSettings())

    def rule_table(self) -> list[tuple[str, Rule | None]]:
        if self.compat:
            return ReleasedChineseRules(self.s).table()
        s, on = self.s, enabled
        return [
            ("zh_sentences", self.sentences if on(s.min_sentence_pieces) else None),
            ("zh_char_count", self.char_count if on(s.min_chars) or on(s.max_chars) else None),
            ("zh_mean_word_length", self.mean_word_length if on(s.min_mean_word_length) or on(s.max_mean_word_length) else None),
            ("zh_hash_runs", self.hash_runs if on(s.max_hash_run_ratio) else None),
            ("zh_ellipsis_runs", self.ellipsis_runs if on(s.max_ellipsis_run_ratio) else None),
            ("zh_digits", self.digits if on(s.max_digit_ratio) else None),
            ("zh_read_more_lines", self.read_more_lines if on(s.max_read_more_line_ratio) else None),
            ("zh_bullet_lines", self.bullet_lines if on(s.max_bullet_line_ratio) else None),
            ("zh_no_punctuation", self.no_punctuation if s.require_punctuation else None),
            ("zh_unique_chars", self.unique_chars if on(s.min_unique_char_ratio) else None),
            ("zh_char_entropy", self.char_entropy if on(s.min_char_entropy) else None),
        ]

    def features(self, text: str) -> str | ReleasedText:
        return ReleasedText(text) if self.compat else text

    def sentences(self, t: str, meta: dict) -> bool:
        return len(_PIECES.split(t)) < self.s.min_sentence_pieces

    def char_count(self, t: str, meta: dict) -> bool:
        lo, hi = self.s.min_chars, self.s.max_chars
        return (lo is not None and len(t) < lo) or (hi is not None and len(t) > hi)

    def mean_word_length(self, t: str, meta: dict) -> bool:
        words = jieba_words(t)
        mean = self._ratio(sum(map(len, words)), len(words))
        lo, hi = self.s.min_mean_word_length, self.s.max_mean_word_length
        return mean is None or (lo is not None and mean < lo) or (hi is not None and mean > hi)

    def hash_runs(self, t: str, meta: dict) -> bool:
        runs = sum(1 for _ in _HASH_RUN.finditer(t)) if "#" in t else 0
        return self._above(self._ratio(runs, len(t)), self.s.max_hash_run_ratio)

    def ellipsis_runs(self, t: str, meta: dict) -> bool:
        return self._above(self._ratio(sum(1 for _ in _ELLIPSIS_RUN.finditer(t)), len(t)), self.s.max_ellipsis_run_ratio)

    def digits(self, t: str, meta: dict) -> bool:
        return self._above(self._ratio(len(_DIGIT.findall(t)), len(t)), self.s.max_digit_ratio)

    def read_more_lines(self, t: str, meta: dict) -> bool:
        lines = t.split("\n")
        hits = sum(1 for line in lines if line.rstrip().lower().endswith(_READ_MORE_ENDINGS))
        return self._above(self._ratio(hits, len(lines)), self.s.max_read_more_line_ratio)

    def bullet_lines(self, t: str, meta: dict) -> bool:
        lines = t.split("\n")
        return self._above(self._ratio(sum(1 for x in lines if x.startswith(BULLETS)), len(lines)), self.s.max_bullet_line_ratio)

    def no_punctuation(self, t: str, meta: dict) -> bool:
        return _ANY_PUNCT.search(t) is None

    def unique_chars(self, t: str, meta: dict) -> bool:
        r = self._ratio(len(set(t)), len(t))
        return r is None or r <= self.s.min_unique_char_ratio

    def char_entropy(self, t: str, meta: dict) -> bool:
        return entropy_from_ids(code_points(t)) < self.s.min_char_entropy


class ReleasedText:
    """The two views the released Chinese rules read: the text as rewritten so far, and its NFKC form."""

    __slots__ = ("_nfkc", "text")

    def __init__(self, text: str):
        self.text = text
        self._nfkc: str | None = None

    @property
    def nfkc(self) -> str:
        if self._nfkc is None:
            t = self.text
            self._nfkc = t if unicodedata.is_normalized("NFKC", t) else unicodedata.normalize("NFKC", t)
        return self._nfkc


class ReleasedChineseRules:
    """`chinese_rules` with `reference_compat: true`: the released rule function, decision for decision.

    The sentence split and the `#` / ellipsis runs read the text as rewritten; every other rule reads
    its NFKC form (length, jieba words of the text with punctuation removed *before* segmenting,
    digits among the characters left once punctuation is removed, lines from `str.splitlines`,
    ASCII punctuation and `…` only, unique characters, character entropy). Same order, same names.
    """

    def __init__(self, settings: ChineseRulesSettings):
        self.s = settings

    def table(self) -> list[tuple[str, Rule | None]]:
        s, on = self.s, enabled
        return [
            ("zh_sentences", self.sentences if on(s.min_sentence_pieces) else None),
            ("zh_char_count", self.char_count if on(s.min_chars) or on(s.max_chars) else None),
            ("zh_mean_word_length", self.mean_word_length if on(s.min_mean_word_length) or on(s.max_mean_word_length) else None),
            ("zh_hash_runs", self.hash_runs if on(s.max_hash_run_ratio) else None),
            ("zh_ellipsis_runs", self.ellipsis_runs if on(s.max_ellipsis_run_ratio) else None),
            ("zh_digits", self.digits if on(s.max_digit_ratio) else None),
            ("zh_read_more_lines", self.read_more_lines if on(s.max_read_more_line_ratio) else None),
            ("zh_bullet_lines", self.bullet_lines if on(s.max_bullet_line_ratio) else None),
            ("zh_no_punctuation", self.no_punctuation if s.require_punctuation else None),
            ("zh_unique_chars", self.unique_chars if on(s.min_unique_char_ratio) else None),
            ("zh_char_entropy", self.char_entropy if on(s.min_char_entropy) else None),
        ]

    def sentences(self, f: ReleasedText, meta: dict) -> bool:
        # pieces that are only whitespace do not count
        return sum(1 for p in _PIECES.split(f.text) if p.strip()) < self.s.min_sentence_pieces

    def char_count(self, f: ReleasedText, meta: dict) -> bool:
        n, lo, hi = len(f.nfkc), self.s.min_chars, self.s.max_chars
        return (lo is not None and n < lo) or (hi is not None and n > hi)

    def mean_word_length(self, f: ReleasedText, meta: dict) -> bool:
        words = [w for w in jieba_cut(_NOT_WORD_OR_SPACE.sub("", f.nfkc)) if w.strip()]
        mean = sum(map(len, words)) / len(words) if words else 0.0
        lo, hi = self.s.min_mean_word_length, self.s.max_mean_word_length
        return (lo is not None and mean < lo) or (hi is not None and mean > hi)

    def hash_runs(self, f: ReleasedText, meta: dict) -> bool:
        t = f.text
        runs = sum(1 for _ in _HASH_RUN.finditer(t)) if "#" in t else 0
        return above(ratio(runs, len(t), True), self.s.max_hash_run_ratio)

    def ellipsis_runs(self, f: ReleasedText, meta: dict) -> bool:
        t = f.text
        return above(ratio(sum(1 for _ in _ELLIPSIS_RUN.finditer(t)), len(t), True), self.s.max_ellipsis_run_ratio)

    def digits(self, f: ReleasedText, meta: dict) -> bool:
        kept = _NOT_WORD_OR_SPACE.sub("", f.nfkc)
        digits = sum(1 for c in kept if c.isdigit())
        return (digits / len(kept) if kept else 0.0) > self.s.max_digit_ratio

    def read_more_lines(self, f: ReleasedText, meta: dict) -> bool:
        lines = f.nfkc.splitlines()
        hits = sum(1 for line in lines if line.endswith(_RELEASED_READ_MORE_ENDINGS))
        return (hits / len(lines) if lines else 0.0) > self.s.max_read_more_line_ratio

    def bullet_lines(self, f: ReleasedText, meta: dict) -> bool:
        lines = f.nfkc.splitlines()
        bullets = sum(1 for line in lines if line.startswith(BULLETS))
        return (bullets / len(lines) if lines else 0.0) > self.s.max_bullet_line_ratio

    def no_punctuation(self, f: ReleasedText, meta: dict) -> bool:
        return _RELEASED_PUNCTUATION.isdisjoint(f.nfkc)

    def unique_chars(self, f: ReleasedText, meta: dict) -> bool:
        n = f.nfkc
        return (len(set(n)) / len(n) if n else 0.0) <= self.s.min_unique_char_ratio

    def char_entropy(self, f: ReleasedText, meta: dict) -> bool:
        return entropy_from_ids(code_points(f.nfkc)) < self.s.min_char_entropy


class ChineseRepetitionSettings(StageSettings):
    reference_compat: bool = Field(False, description="released behaviour: the repetition rules are never applied")
    top_ngram_ratios: dict[int, float | None] = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="zh_top_<n>gram: n -> max share of the top character n-gram"
    )
    dup_ngram_ratios: dict[int, float | None] = Field(
        {n: 0.6 for n in range(5, 11)}, description="zh_dup_<n>gram: n -> max share of characters in repeated n-grams"
    )


class ChineseRepetition(RuleSet):
    """Character n-gram repetition rules (Gopher's definitions over characters); none in compat mode."""

    def __init__(self, settings: ChineseRepetitionSettings | None = None):
        s = settings or ChineseRepetitionSettings()
        wanted = [n for n, v in {**s.top_ngram_ratios, **s.dup_ngram_ratios}.items() if v is not None]
        self.max_n = max(wanted, default=1)
        super().__init__(s)

    def rule_table(self) -> list[tuple[str, Rule | None]]:
        if self.compat:  # the released code tests a tuple for truth: these rules never drop
            return []
        s = self.s
        table: list[tuple[str, Rule | None]] = []
        for n, thr in sorted(s.top_ngram_ratios.items()):
            table.append((f"zh_top_{n}gram", self._top(n, thr) if thr is not None else None))
        for n, thr in sorted(s.dup_ngram_ratios.items()):
            table.append((f"zh_dup_{n}gram", self._dup(n, thr) if thr is not None else None))
        return table

    def features(self, text: str) -> dict:
        cps = code_points(text)
        return {"n": len(cps), "lengths": np.ones(len(cps), dtype=np.int64), "keys": ngram_keys(cps, self.max_n)}

    @staticmethod
    def _top(n: int, threshold: float) -> Rule:
        def rule(f: dict, meta: dict) -> bool:
            keys = f["keys"].get(n)
            return keys is not None and top_ngram_char_share(keys, f["lengths"], n, f["n"]) > threshold

        return rule

    @staticmethod
    def _dup(n: int, threshold: float) -> Rule:
        def rule(f: dict, meta: dict) -> bool:
            keys = f["keys"].get(n)
            return keys is not None and duplicated_ngram_char_share(keys, f["lengths"], n, f["n"]) > threshold

        return rule

    def first_failure(self, text: str, metadata: dict | None = None) -> str | None:
        if not self.rules or not text:
            return None
        return super().first_failure(text, metadata)


def chinese_repetition_failure(text: str, settings: ChineseRepetitionSettings | None = None) -> str | None:
    """First failing character-n-gram repetition rule (Gopher definitions over characters), or None."""
    return ChineseRepetition(settings).first_failure(text)


class ChineseRulesFilter(RuleSetFilter):
    name = "🀄 MAP-Neo Chinese rules"
    _requires_dependencies = ["jieba"]
    rule_set_class = ChineseRules
    settings_class = ChineseRulesSettings


class ChineseRepetitionFilter(RuleSetFilter):
    name = "🀄 MAP-Neo Chinese repetition"
    rule_set_class = ChineseRepetition
    settings_class = ChineseRepetitionSettings

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self.settings.reference_compat:
            self.stat_update("not_applied_reference_compat")
        return super().filter(doc)


@register_stage("chinese_rules", settings=ChineseRulesSettings, kind="document")
def build_chinese_rules(settings: ChineseRulesSettings, ctx: StageContext) -> list:
    """MAP-Neo Chinese document rules (length, jieba word length, symbols, digits, lines, entropy); first failure named."""
    return [ChineseRulesFilter(settings, exclusion_writer=ctx.removed_writer())]


@register_stage("chinese_repetition", settings=ChineseRepetitionSettings, kind="document")
def build_chinese_repetition(settings: ChineseRepetitionSettings, ctx: StageContext) -> list:
    """MAP-Neo Chinese character n-gram repetition rules (top 2-4-gram, duplicated 5-10-gram)."""
    return [ChineseRepetitionFilter(settings, exclusion_writer=ctx.removed_writer())]
