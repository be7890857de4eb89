"""NLTK's word and sentence tokenizers, unchanged in output, made fast enough for corpus filtering.

MAP-Neo's English rules count `nltk.word_tokenize` tokens and `sent_tokenize` sentences. Punkt's
trained data cannot be downloaded here, so sentences come from an *untrained*
`PunktSentenceTokenizer` (default parameters, no abbreviation list) and tokens from
`NLTKWordTokenizer` (the improved Treebank tokenizer `word_tokenize` runs per sentence).

NLTK >= 3.9.3 routes every pattern through `nltk.redos` (the `regex` engine with a time-out), which
made tokenising a web page cost several times what the patterns themselves cost. Here the *same
pattern strings* are recompiled with the standard `re` engine; two more changes avoid per-sentence
calls to the word tokenizer (see `tokenize_sentences`). `tests/test_clean_english_rules.py` checks that
sentences and tokens equal stock NLTK's on real corpora.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _std(pattern, extra_flags: int = 0):
    """The stdlib-compiled twin of an `nltk.redos` TimedPattern (or a plain pattern)."""
    flags = getattr(pattern, "flags", 0)
    # redos patterns built from str may carry regex-module-only flag bits; keep the re-compatible ones
    flags &= re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE | re.VERBOSE
    return re.compile(pattern.pattern, flags | extra_flags)


@lru_cache(maxsize=1)
def word_tokenizer():
    """`NLTKWordTokenizer` with stdlib patterns; `^`/`$` anchors made per line (see `tokenize_sentences`)."""
    from nltk.tokenize import NLTKWordTokenizer as Base

    def lines(pairs):
        return [(_std(r, re.MULTILINE), s) for r, s in pairs]

    class JoinedSentencesWordTokenizer(Base):
        STARTING_QUOTES = lines(Base.STARTING_QUOTES)
        PUNCTUATION = lines(Base.PUNCTUATION)
        PARENS_BRACKETS = (_std(Base.PARENS_BRACKETS[0]), Base.PARENS_BRACKETS[1])
        CONVERT_PARENTHESES = [(_std(r), s) for r, s in Base.CONVERT_PARENTHESES]
        DOUBLE_DASHES = (_std(Base.DOUBLE_DASHES[0]), Base.DOUBLE_DASHES[1])
        ENDING_QUOTES = [(_std(r), s) for r, s in Base.ENDING_QUOTES]
        CONTRACTIONS2 = [_std(r) for r in Base.CONTRACTIONS2]
        CONTRACTIONS3 = [_std(r) for r in Base.CONTRACTIONS3]

    return JoinedSentencesWordTokenizer()


def tokenize_sentences(sentences: list[str]) -> list[str]:
    """Word tokens of all `sentences`, equal to calling `NLTKWordTokenizer().tokenize` on each one.

    The tokenizer's few anchored patterns (`^"`, a sentence-final period) are what force one call per
    sentence. With those patterns compiled as MULTILINE, sentences joined by "\\n" behave as separate
    strings; a newline *inside* a sentence becomes "\\r", which every pattern treats exactly like "\\n"
    except the line anchors. One call instead of ~60 per page halves the tokenising time.
    """
    if not sentences:
        return []
    return word_tokenizer().tokenize("\n".join(s.replace("\n", "\r") for s in sentences))


@lru_cache(maxsize=1)
def sentence_tokenizer():
    """An untrained `PunktSentenceTokenizer` whose patterns run on the stdlib `re` engine."""
    from nltk.tokenize import punkt

    class LanguageVars(punkt.PunktLanguageVars):
        re_boundary_realignment = _std(punkt.PunktLanguageVars.re_boundary_realignment)

        def _word_tokenizer_re(self):
            try:
                return self._re_word_tokenizer
            except AttributeError:
                self._re_word_tokenizer = _std(super()._word_tokenizer_re())
                return self._re_word_tokenizer

        def period_context_re(self):
            try:
                return self._re_period_context
            except AttributeError:
                self._re_period_context = _std(super().period_context_re())
                return self._re_period_context

    non_punct = _std(punkt._re_non_punct)

    class Token(punkt.PunktToken):
        _RE_ELLIPSIS = _std(punkt.PunktToken._RE_ELLIPSIS)
        _RE_NUMERIC = _std(punkt.PunktToken._RE_NUMERIC)
        _RE_INITIAL = _std(punkt.PunktToken._RE_INITIAL)
        _RE_ALPHA = _std(punkt.PunktToken._RE_ALPHA)

        @property
        def is_non_punct(self):
            return non_punct.search(self.type)

    return punkt.PunktSentenceTokenizer(lang_vars=LanguageVars(), token_cls=Token)
