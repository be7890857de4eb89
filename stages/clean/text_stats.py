"""Vectorised text statistics shared by the English and Chinese rule stages.

Every n-gram rule here works on integer keys: a document's units (word ids or Unicode code points) are
turned into one 64-bit rolling key per n-gram position with numpy, and counting is one `np.unique`
per n. That replaces the per-n-gram string joins and Python dicts that dominate datatrove's Gopher
repetition filter. Keys wrap modulo 2**64; two different n-grams of one document sharing a key is a
~n²/2**64 event, i.e. never in practice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Odd 64-bit multiplier (from splitmix64); any large odd constant spreads the keys.
_MULT = np.uint64(0x9E3779B97F4A7C15)


def unit_ids(units: Sequence[str]) -> np.ndarray:
    """Dense ids of `units` in order of first appearance (equal strings, equal ids)."""
    vocab: dict[str, int] = {}
    return np.fromiter((vocab.setdefault(u, len(vocab)) for u in units), dtype=np.uint64, count=len(units))


def code_points(text: str) -> np.ndarray:
    """The text's Unicode code points as uint64 (one per character)."""
    # surrogatepass: a lone surrogate (valid in a Python str, e.g. from JSON) is one character too
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


def ngram_keys(ids: np.ndarray, max_n: int) -> dict[int, np.ndarray]:
    """{n: key of the n-gram starting at each position} for n = 1..max_n (positions 0..len-n)."""
    keys: dict[int, np.ndarray] = {}
    if len(ids) == 0:
        return keys
    with np.errstate(over="ignore"):
        cur = ids + np.uint64(1)
        keys[1] = cur
        for n in range(2, min(max_n, len(ids)) + 1):
            cur = cur[:-1] * _MULT + ids[n - 1 :] + np.uint64(1)
            keys[n] = cur
    return keys


def ngram_counts_per_position(keys: np.ndarray) -> np.ndarray:
    """For every n-gram position, how often its n-gram occurs in the document."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return counts[inverse]


def span_lengths(unit_lengths: np.ndarray, n: int) -> np.ndarray:
    """Characters of each n-gram (sum of its units' lengths) for every n-gram position."""
    cs = np.concatenate(([0], np.cumsum(unit_lengths)))
    return cs[n:] - cs[:-n]


def top_ngram_char_share(keys: np.ndarray, unit_lengths: np.ndarray, n: int, total_chars: int) -> float:
    """Gopher's top n-gram share: count of the most frequent n-gram × its characters / all characters.

    An n-gram seen only once is not repetition, so a document whose top n-gram occurs once scores 0.
    Among equally frequent n-grams the longest one counts (order-independent).
    """
    if len(keys) == 0 or total_chars <= 0:
        return 0.0
    per_pos = ngram_counts_per_position(keys)
    top = int(per_pos.max())
    if top < 2:
        return 0.0
    lengths = span_lengths(unit_lengths, n)
    return top * float(lengths[per_pos == top].max()) / total_chars


def duplicated_ngram_mask(keys: np.ndarray, n: int, n_units: int) -> np.ndarray:
    """Boolean mask over units: covered by at least one n-gram occurring more than once."""
    if len(keys) == 0:
        return np.zeros(n_units, dtype=bool)
    starts = np.flatnonzero(ngram_counts_per_position(keys) > 1)
    diff = np.zeros(n_units + 1, dtype=np.int32)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + n, -1)
    return np.cumsum(diff[:-1]) > 0


def duplicated_ngram_char_share(keys: np.ndarray, unit_lengths: np.ndarray, n: int, total_chars: int) -> float:
    """Gopher's duplicate n-gram share: characters of units inside any repeated n-gram (each unit
    counted once, however many repeated n-grams overlap it) / all characters."""
    if total_chars <= 0:
        return 0.0
    mask = duplicated_ngram_mask(keys, n, len(unit_lengths))
    return float(unit_lengths[mask].sum()) / total_chars


def released_top_char_ngram_share(keys: np.ndarray, n: int, total_chars: int) -> float:
    """MAP-Neo's released top character n-gram share: (count of the top n-gram − 1) × n / characters."""
    if len(keys) == 0 or total_chars <= 0:
        return 0.0
    _, counts = np.unique(keys, return_counts=True)
    return (int(counts.max()) - 1) * n / total_chars


def released_dup_char_ngram_share(keys: np.ndarray, cps: np.ndarray, n: int, total_chars: int) -> float:
    """MAP-Neo's released duplicated n-gram share: *distinct* characters occurring inside repeated
    character n-grams / characters (bounded by the alphabet size, so it only fires on short texts)."""
    if total_chars <= 0:
        return 0.0
    mask = duplicated_ngram_mask(keys, n, len(cps))
    return np.unique(cps[mask]).size / total_chars


def entropy_from_ids(ids: np.ndarray) -> float:
    """Natural-log entropy of the frequency distribution of integer ids."""
    if len(ids) == 0:
        return 0.0
    _, c = np.unique(ids, return_counts=True)
    p = c / len(ids)
    return float(-(p * np.log(p)).sum())
