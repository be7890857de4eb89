"""Per-document intermediates of the English rules, each computed at most once and only when a rule
asks for it (a document that fails an early rule never pays for the n-gram tables).

Definitions (MAP-Neo, see stages/clean/README.md):
- `text`: NFKC form of the document (the rules' view; the document itself is not rewritten);
  `raw`: the same views of the text as given (read by `reference_compat`, english_released.py);
- `sentences`: NLTK Punkt sentences, from an *untrained* `PunktSentenceTokenizer` (no data files);
- `tokens`: NLTK word tokens of each sentence (`NLTKWordTokenizer`, the Treebank-style tokenizer
  behind `nltk.word_tokenize`; punctuation tokens count), i.e. `nltk.word_tokenize` without punkt
  data (both from stages/clean/nltk_tokenizers.py: same output as NLTK's, faster);
- `words`: whitespace-split words; `lines`: `text.split("\\n")`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import cached_property
from pathlib import Path

import numpy as np

from stages.clean.nltk_tokenizers import sentence_tokenizer, tokenize_sentences
from stages.clean.text_stats import code_points, ngram_keys, unit_ids

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_STOP_WORDS = DATA_DIR / "stop_words_en.txt"
DEFAULT_BAD_WORDS = DATA_DIR / "bad_words_en.txt"

ASCII_PUNCTUATION = string.punctuation
_DELETE_PUNCT = str.maketrans("", "", ASCII_PUNCTUATION)
_STOP_WORD_CLEAN = re.compile(r"[^\w\s'\\]")
_HAS_ALPHA = re.compile(r"[^\W\d_]")
# Gopher bullet set as MAP-Neo lists it (20 characters; no `-`, lines are not stripped).
BULLETS = tuple("•●○■□▪▫※·➢") + tuple(
    chr(c) for c in (0x2022, 0x2023, 0x25B6, 0x25C0, 0x25E6, 0x25A0, 0x25A1, 0x25AA, 0x25AB, 0x2013)
)

def read_word_list(path: str | Path) -> list[str]:
    """Lines of a word-list file, lower-cased, without blanks and `#` comments."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip().lower()
            if line:
                out.append(line)
    return out


class BadWords:
    """A blocklist: single words match whole tokens, entries with spaces match as phrases."""

    def __init__(self, entries: list[str]):
        self.words = frozenset(e for e in entries if " " not in e)
        phrases = [e for e in entries if " " in e]
        self.phrases = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in phrases) + r")(?!\w)") if phrases else None
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "BadWords":
        return cls(read_word_list(path))

    def found(self, lower_tokens: list[str], lower_text: str) -> bool:
        if self.words and not self.words.isdisjoint(lower_tokens):
            return True
        return bool(self.phrases and self.phrases.search(lower_text))


class EnglishFeatures:
    """Lazily computed views of one document shared by all English rules."""

    def __init__(self, text: str, normalize: bool = True):
        self.original = text
        if normalize and not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        self.text = text
        self.n_chars = len(text)
        self.word_or_space_chars: int | None = None  # set by the compat rules (english_released.py)

    @cached_property
    def raw(self) -> "EnglishFeatures":
        """The same views of the text exactly as given (most released MAP-Neo rules read it so); the
        very same object when the text is NFKC already, so nothing is computed twice then."""
        return self if self.text is self.original else EnglishFeatures(self.original, normalize=False)

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def sentences(self) -> list[str]:
        return sentence_tokenizer().tokenize(self.text)

    @cached_property
    def tokens(self) -> list[str]:
        return tokenize_sentences(self.sentences)

    @cached_property
    def token_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.tokens), dtype=np.int64, count=len(self.tokens))

    @cached_property
    def lower_tokens(self) -> list[str]:
        return [t.lower() for t in self.tokens]

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def stop_word_candidates(self) -> list[str]:
        return _STOP_WORD_CLEAN.sub("", self.lower).split()

    @cached_property
    def non_alpha_word_count(self) -> int:
        return sum(1 for w in self.words if not w.isalpha() and not _HAS_ALPHA.search(w))

    @cached_property
    def depunctuated_tokens(self) -> list[str]:
        """Tokens with ASCII punctuation deleted (tokens that were only punctuation disappear)."""
        return [c for c in (t if t.isalnum() else t.translate(_DELETE_PUNCT) for t in self.tokens) if c]

    @cached_property
    def depunctuated_chars(self) -> int:
        return self.n_chars - sum(self.text.count(c) for c in ASCII_PUNCTUATION)

    @cached_property
    def word_ids(self) -> np.ndarray:
        return unit_ids(self.words)

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    @cached_property
    def word_chars(self) -> int:
        return int(self.word_lengths.sum())

    @cached_property
    def word_ngrams(self) -> dict[int, np.ndarray]:
        return ngram_keys(self.word_ids, 10)

    @cached_property
    def code_points(self) -> np.ndarray:
        return code_points(self.text)

    @cached_property
    def n_distinct_chars(self) -> int:
        return len(set(self.text))

    @cached_property
    def char_ngrams(self) -> dict[int, np.ndarray]:
        return ngram_keys(self.code_points, 10)


# Names of the shared intermediates, in dependency order (the benchmark times each one).
FEATURES = (
    "lower",
    "sentences",
    "tokens",
    "token_lengths",
    "lower_tokens",
    "words",
    "lines",
    "stop_word_candidates",
    "non_alpha_word_count",
    "depunctuated_tokens",
    "depunctuated_chars",
    "word_ids",
    "word_lengths",
    "word_chars",
    "word_ngrams",
    "code_points",
    "n_distinct_chars",
    "char_ngrams",
)
