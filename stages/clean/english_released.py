"""`english_rules` with `reference_compat: true`: MAP-Neo's released English rule functions, decision
for decision (stages/clean/README.md, "Every reference_compat difference").

The released functions are handed the raw document. A few normalise it with NFKC inside (the Gopher
group's word tokens, the C4 group's lorem-ipsum and sentence counts); everything else reads the raw
text: the language-id score, the self-defined group's Punkt sentences and word tokens, the n-gram
shares, even the Gopher group's symbol, bullet, ellipsis and stop-word counts. Each rule below reads
the view its released counterpart reads (`f` = NFKC view, `f.raw` = the text as given; one and the
same object when the text is already NFKC, so nothing is tokenised twice then). The groups run in
the released order (Gopher, CCNet, C4, pretrainer's guide, self-defined, RefinedWeb) and so do the
rules inside each group; a division by zero, which raised and dropped the page in the released code,
drops it here too.
"""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING

from stages.clean.english_features import BULLETS, EnglishFeatures
from stages.clean.rule_set import Rule, above, at_or_above, below, enabled, ratio
from stages.clean.text_stats import entropy_from_ids, released_dup_char_ngram_share, released_top_char_ngram_share

if TYPE_CHECKING:
    from stages.clean.english_rules import EnglishRules

_ELLIPSIS_RUN = re.compile(r"…+|\.{2,}")
_HASH_RUN = re.compile(r"#+")
_STOP_WORD_CLEAN = re.compile(r"[^\w\s'\\]")  # the released code keeps ' and \ (they occur in its list)
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_C4_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*")
# `re.match` of `.*(read more)$` without DOTALL: "read more" must end the sentence's first line, and
# that line must be the whole sentence (`$` also matches before one final newline).
_READ_MORE = re.compile(r".*(read more)$")
_PUNCTUATION = frozenset(string.punctuation)


# The tuples of MAP-Neo's `bad_url_words.py` that its English filter imports (it never reads the
# module's third tuple, SOFT_BAD_URL_WORDS).
RELEASED_BAD_WORD_TUPLES = ("STRICT_BAD_URL_WORDS", "HARD_BAD_URL_WORDS")


def read_exact_list(path: str | Path) -> frozenset[str]:
    """A word list as the released code matches it (case kept), from any of three formats:

    * `.py`: the released `bad_url_words.py` itself; the string tuples assigned to
      STRICT_BAD_URL_WORDS and HARD_BAD_URL_WORDS are read as literals (nothing is executed);
    * `.json`: a JSON list of strings, like the released `en_gopher_stopwords.json`;
    * anything else: one entry per line, surrounding whitespace removed, blank lines and lines
      starting with `#` skipped.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return frozenset(_tuples_from_module(text, path))
    if path.suffix == ".json":
        entries = json.loads(text)
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"{path}: expected a JSON list of strings")
        return frozenset(entries)
    return frozenset(e for e in (line.strip() for line in text.splitlines()) if e and not e.startswith("#"))


def _tuples_from_module(source: str, path: Path) -> list[str]:
    found: dict[str, list[str]] = {}
    for node in ast.parse(source, filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in RELEASED_BAD_WORD_TUPLES:
                value = ast.literal_eval(node.value)
                if not isinstance(value, (tuple, list)) or not all(isinstance(e, str) for e in value):
                    raise ValueError(f"{path}:{node.lineno}: {name} is not a tuple of strings")
                found[name] = list(value)
    if not found:
        raise ValueError(f"{path}: defines none of {', '.join(RELEASED_BAD_WORD_TUPLES)}")
    return [e for name in RELEASED_BAD_WORD_TUPLES for e in found.get(name, [])]


class ReleasedEnglishRules:
    """The released rule table, reading thresholds, lists and the language model from `owner`."""

    def __init__(self, owner: EnglishRules):
        self.owner = owner
        self.s = owner.s

    def table(self) -> list[tuple[str, Rule | None]]:
        s, on = self.s, enabled
        rules: list[tuple[str, Rule | None]] = [
            ("gopher_mean_token_length", self.mean_token_length if on(s.min_mean_token_length) or on(s.max_mean_token_length) else None),
            ("gopher_ellipsis_lines", self.ellipsis_runs_gopher if on(s.max_ellipsis_line_ratio) else None),
            ("gopher_bullet_lines", self.bullet_lines if on(s.max_bullet_line_ratio) else None),
            ("gopher_non_alpha_words", self.non_alpha_words if on(s.max_non_alpha_word_ratio) else None),
            ("gopher_stop_word_fraction", self.stop_word_fraction if on(s.min_stop_word_fraction) else None),
            ("gopher_stop_words", self.stop_word_count if on(s.min_stop_words) else None),
            ("gopher_symbol_ratio", self.symbol_ratio if on(s.max_symbol_token_ratio) else None),
            ("gopher_token_count", self.token_count if on(s.min_tokens) or on(s.max_tokens) else None),
            ("ccnet_language", self.owner.language if on(s.min_language_score) else None),
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
            ("self_bad_words", self.bad_words if self.owner.exact_bad_words else None),
            ("rep_word_entropy", self.word_entropy if on(s.min_word_entropy) else None),
        ]
        for n, thr in sorted(s.top_ngram_ratios.items()):
            rules.append((f"rep_top_{n}gram", self._top_ngram(n, thr) if on(thr) else None))
        for n, thr in sorted(s.dup_ngram_ratios.items()):
            rules.append((f"rep_dup_{n}gram", self._dup_ngram(n, thr) if on(thr) else None))
        # duplicate lines / paragraphs are switched off in the released code; when a user switches
        # them on, they read the raw text like the rest of the RefinedWeb group
        rules.append(("rep_dup_lines", self._on_raw(self.owner.dup_lines) if on(s.max_dup_line_ratio) else None))
        rules.append(
            ("rep_dup_paragraphs", self._on_raw(self.owner.dup_paragraphs) if on(s.max_dup_paragraph_char_ratio) else None)
        )
        return rules

    @staticmethod
    def _on_raw(rule: Rule) -> Rule:
        return lambda f, meta: rule(f.raw, meta)

    # --- Gopher group: tokens and token count of the NFKC text, everything else on the raw text ---
    def mean_token_length(self, f: EnglishFeatures, meta: dict) -> bool:
        mean = int(f.token_lengths.sum()) / len(f.tokens) if f.tokens else 0.0  # empty: 0, i.e. too short
        lo, hi = self.s.min_mean_token_length, self.s.max_mean_token_length
        return (lo is not None and mean < lo) or (hi is not None and mean > hi)

    def ellipsis_runs_gopher(self, f: EnglishFeatures, meta: dict) -> bool:
        # released "lines ending with an ellipsis": ellipsis runs anywhere / characters
        raw = f.raw.text
        return above(ratio(_count(_ELLIPSIS_RUN, raw), len(raw), True), self.s.max_ellipsis_line_ratio)

    def bullet_lines(self, f: EnglishFeatures, meta: dict) -> bool:
        lines = f.raw.text.splitlines()  # every Unicode line break, as str.splitlines does
        bullets = sum(1 for line in lines if line.startswith(BULLETS))
        return (bullets / len(lines) if lines else 0.0) > self.s.max_bullet_line_ratio

    def non_alpha_words(self, f: EnglishFeatures, meta: dict) -> bool:
        raw, threshold = f.raw, self.s.max_non_alpha_word_ratio
        if raw.n_chars and len(raw.words) / raw.n_chars < threshold:
            return False  # even if no word had a letter the share (per character) stays below
        count = sum(1 for w in raw.words if not _has_letter(w))
        return at_or_above(ratio(count, raw.n_chars, True), threshold)

    def _stop_word_candidates(self, f: EnglishFeatures) -> list[str]:
        return _STOP_WORD_CLEAN.sub("", f.raw.text).lower().split()

    def stop_word_count(self, f: EnglishFeatures, meta: dict) -> bool:
        found = self.owner.stop_words.intersection(self._stop_word_candidates(f))
        return len(found) < self.s.min_stop_words

    def stop_word_fraction(self, f: EnglishFeatures, meta: dict) -> bool:
        # off in the released raw-text variant (on in its RedPajama-signals variant): stop-word
        # occurrences / words, on the same cleaned raw words as the stop-word count
        words = self._stop_word_candidates(f)
        stop = self.owner.stop_words
        return below(ratio(sum(1 for w in words if w in stop), len(words), True), self.s.min_stop_word_fraction)

    def symbol_ratio(self, f: EnglishFeatures, meta: dict) -> bool:
        raw = f.raw.text
        symbols = raw.count("#") + raw.count("...") + raw.count("…")
        return at_or_above(ratio(symbols, len(f.tokens), True), self.s.max_symbol_token_ratio)

    def token_count(self, f: EnglishFeatures, meta: dict) -> bool:
        n, lo, hi = len(f.tokens), self.s.min_tokens, self.s.max_tokens
        return (lo is not None and n < lo) or (hi is not None and n > hi)

    # --- CCNet group (language id: EnglishRules.language, on the raw text) ---
    def min_chars(self, f: EnglishFeatures, meta: dict) -> bool:
        kept = f.raw.text.strip().replace(" ", "").replace("\n", "").replace("\t", "")
        return len(kept) < self.s.min_non_space_chars

    # --- C4 group: brackets on the raw text, lorem ipsum and sentences on the NFKC text ---
    def curly_brackets(self, f: EnglishFeatures, meta: dict) -> bool:
        raw = f.raw.text
        return at_or_above(ratio(raw.count("{") + raw.count("}"), len(raw), True), self.s.max_curly_bracket_ratio)

    def lorem_ipsum(self, f: EnglishFeatures, meta: dict) -> bool:
        # released: occurrences / characters >= 3e-8, i.e. any occurrence in a text under 33M characters
        return at_or_above(ratio(f.lower.count("lorem ipsum"), f.n_chars, True), 3e-8)

    def c4_sentences(self, f: EnglishFeatures, meta: dict) -> bool:
        limit = self.s.max_c4_sentences
        if f.n_chars < limit:  # every match holds at least one character
            return False
        return _count(_C4_SENTENCE, f.text) >= limit

    # --- pretrainer's guide group: whitespace words of the raw text ---
    def allcaps_words(self, f: EnglishFeatures, meta: dict) -> bool:
        words = f.raw.words
        caps = sum(1 for w in words if w.isalpha() and w.isupper())
        return (caps / len(words) if words else 0.0) > self.s.max_allcaps_word_ratio

    def unique_words(self, f: EnglishFeatures, meta: dict) -> bool:
        words = f.raw.words
        return (len(set(words)) / len(words) if words else 0.0) < self.s.min_unique_word_ratio

    # --- self-defined group: Punkt sentences and word tokens of the raw text ---
    def one_sentence(self, f: EnglishFeatures, meta: dict) -> bool:
        return len(f.raw.sentences) < self.s.min_sentences

    def read_more(self, f: EnglishFeatures, meta: dict) -> bool:
        sentences = f.raw.sentences
        hits = 0
        for s in sentences:
            low = s.lower()
            if "read more" in low and _READ_MORE.match(low):
                hits += 1
        return above(ratio(hits, len(sentences), True), self.s.max_read_more_ratio)

    def hash_runs(self, f: EnglishFeatures, meta: dict) -> bool:
        raw = f.raw.text
        runs = _count(_HASH_RUN, raw) if "#" in raw else 0
        return above(ratio(runs, len(raw), True), self.s.max_hash_run_ratio)

    def ellipsis_runs(self, f: EnglishFeatures, meta: dict) -> bool:
        raw = f.raw.text
        return above(ratio(_count(_ELLIPSIS_RUN, raw), len(raw), True), self.s.max_ellipsis_run_ratio)

    def no_punctuation(self, f: EnglishFeatures, meta: dict) -> bool:
        return _PUNCTUATION.isdisjoint(f.raw.text)

    @staticmethod
    def _word_chars(f: EnglishFeatures) -> int:
        # released denominator: characters left once everything but word characters and spaces goes
        raw = f.raw
        if raw.word_or_space_chars is None:
            raw.word_or_space_chars = len(_NOT_WORD_OR_SPACE.sub("", raw.text))
        return raw.word_or_space_chars

    def non_alpha_tokens(self, f: EnglishFeatures, meta: dict) -> bool:
        # released numerator: every token that is not alphabetic, punctuation tokens included
        bad = sum(1 for t in f.raw.tokens if not t.isalpha())
        return above(ratio(bad, self._word_chars(f), True), self.s.max_non_alpha_token_ratio)

    def digit_tokens(self, f: EnglishFeatures, meta: dict) -> bool:
        digits = sum(1 for t in f.raw.tokens if t.isdigit())
        return above(ratio(digits, self._word_chars(f), True), self.s.max_digit_token_ratio)

    def bad_words(self, f: EnglishFeatures, meta: dict) -> bool:
        return not self.owner.exact_bad_words.isdisjoint(f.raw.tokens)  # tokens as written, case kept

    # --- RefinedWeb group: whitespace words and character n-grams of the raw text ---
    def word_entropy(self, f: EnglishFeatures, meta: dict) -> bool:
        if not f.raw.n_chars:
            return True  # released: an empty text fails the whole group
        return entropy_from_ids(f.raw.word_ids) < self.s.min_word_entropy

    def _top_ngram(self, n: int, threshold: float) -> Rule:
        def rule(f: EnglishFeatures, meta: dict) -> bool:
            raw = f.raw
            keys = raw.char_ngrams.get(n)
            share = released_top_char_ngram_share(keys, n, raw.n_chars) if keys is not None else 0.0
            return share > threshold or not raw.n_chars

        return rule

    def _dup_ngram(self, n: int, threshold: float) -> Rule:
        def rule(f: EnglishFeatures, meta: dict) -> bool:
            raw = f.raw
            if not raw.n_chars:
                return True
            # the share counts distinct characters, so it can never exceed the text's own distinct
            # characters / characters: long texts are decided without the n-gram table
            if raw.n_distinct_chars / raw.n_chars <= threshold:
                return False
            keys = raw.char_ngrams.get(n)
            share = released_dup_char_ngram_share(keys, raw.code_points, n, raw.n_chars) if keys is not None else 0.0
            return share > threshold

        return rule


def _has_letter(word: str) -> bool:
    """Whether any character of `word` is alphabetic (str.isalpha), fast for ASCII words."""
    if word.isalpha():
        return True
    if word.isascii():
        return word.lower() != word.upper()
    return any(c.isalpha() for c in word)


def _count(pattern: re.Pattern, text: str) -> int:
    return len(pattern.findall(text))  # (the patterns here have no groups)
