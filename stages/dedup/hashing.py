"""Vectorised hashing shared by the dedup stages: n-gram shingles, MinHash signatures, LSH band keys.

Everything here is plain numpy over whole documents (no Python loop per shingle), which is what makes
character 13-grams affordable: a document of L characters costs a handful of length-L array operations
to shingle and one (shingles x permutations) matrix operation to sign.

n-gram hashing: a polynomial hash mod 2^64 of every window, computed for all windows at once from a
prefix sum (window(i) = (S[i+n] - S[i]) * B^i with S the running sum of c[t] * B^-t; B is odd, so B^-1
exists mod 2^64), then a splitmix64 finaliser so that nearby windows get unrelated hashes.
MinHash permutations: multiply-shift universal hashing, ((a_k * h + b_k) mod 2^64) >> 32 with odd a_k,
one column per permutation; the minimum over the shingles of each column is the signature (uint32).
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

import numpy as np

_U64 = np.uint64
_SPLITMIX_1 = _U64(0xBF58476D1CE4E5B9)
_SPLITMIX_2 = _U64(0x94D049BB133111EB)
_ASCII_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]+")


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise over uint64 (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _SPLITMIX_1
    x = x ^ (x >> _U64(27))
    x = x * _SPLITMIX_2
    return x ^ (x >> _U64(31))


def normalize_for_minhash(text: str) -> str:
    """MAP-Neo's MinHash normalisation: NFC, lower-case, ASCII punctuation removed, whitespace collapsed."""
    # str.split() splits on every Unicode whitespace run, and is faster than a regex substitution
    return " ".join(_ASCII_PUNCTUATION.sub("", unicodedata.normalize("NFC", text).lower()).split())


class _Powers:
    """B^t and B^-t mod 2^64 for t < length, grown on demand (one instance per base)."""

    def __init__(self, base: int):
        self.base = base | 1  # odd, hence invertible mod 2^64
        self.inverse = pow(self.base, -1, 1 << 64)
        self.fwd = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def get(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.fwd) < length:
            size = max(length, 2 * len(self.fwd))
            self.fwd = np.concatenate([[_U64(1)], np.cumprod(np.full(size - 1, self.base, dtype=np.uint64))])
            self.inv = np.concatenate([[_U64(1)], np.cumprod(np.full(size - 1, self.inverse, dtype=np.uint64))])
        return self.fwd[:length], self.inv[:length]


@lru_cache(maxsize=8)
def _powers(seed: int) -> _Powers:
    rng = np.random.default_rng([seed, 0x5EED])
    return _Powers(int(rng.integers(1 << 62, 1 << 63, dtype=np.uint64)))


def window_hashes(values: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """64-bit hash of every length-n window of `values` (uint64 codes); one window if len < n, none if 0."""
    values = np.asarray(values, dtype=np.uint64)
    length = len(values)
    if length == 0:
        return np.empty(0, dtype=np.uint64)
    n = min(n, length)
    fwd, inv = _powers(seed).get(length + 1)
    prefix = np.empty(length + 1, dtype=np.uint64)
    prefix[0] = 0
    # +1 so that a code of 0 still contributes; the seed decorrelates different stages' hashes
    np.cumsum((values + _U64(1)) * inv[:length], out=prefix[1:])
    windows = (prefix[n:] - prefix[: length - n + 1]) * fwd[: length - n + 1]
    return splitmix64(windows ^ _U64(seed & 0xFFFFFFFFFFFFFFFF) ^ _U64(n))


def codepoints(text: str) -> np.ndarray:
    """The text's Unicode code points as uint64, without a Python loop."""
    # surrogatepass: JSON can carry lone surrogates, which must not crash a task
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


def word_codes(words: list[str]) -> np.ndarray:
    """One 64-bit code per word (xxh3, C speed per call)."""
    import xxhash

    codes = (xxhash.xxh3_64_intdigest(w.encode("utf-8", "surrogatepass")) for w in words)
    return np.fromiter(codes, dtype=np.uint64, count=len(words))


def shingle_hashes(text: str, n: int, unit: str = "char", normalize: bool = True, seed: int = 0) -> np.ndarray:
    """Hashes of the n-gram shingles of `text` (characters or whitespace-split words)."""
    if normalize:
        text = normalize_for_minhash(text)
    if unit == "char":
        return window_hashes(codepoints(text), n, seed)
    if unit == "word":
        return window_hashes(word_codes(text.split()), n, seed)
    raise ValueError(f"unknown n-gram unit {unit!r} (char or word)")


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the multiply-shift permutations, shape (1, num_perm) each; a is odd."""
    rng = np.random.default_rng([seed, 0x9E37])
    a = rng.integers(0, 1 << 63, size=(1, num_perm), dtype=np.uint64) * _U64(2) + _U64(1)
    b = rng.integers(0, 1 << 63, size=(1, num_perm), dtype=np.uint64) * _U64(2)
    return a, b


_kernels: dict = {}


def _compiled_kernels() -> dict:
    """numba kernels (compiled once per process, cached on disk).

    `sign`: for each shingle, update the running minimum of every permutation in place: one pass, no
    (shingles x permutations) temporary, ~7x faster than the numpy broadcast (bench/dedup.py,
    `kernel_*_us_per_doc`). `sign_windows`: the same fused with `window_hashes`, so a document goes from
    code points to signature without materialising its shingles (the numpy shingling costs ~20 small
    array operations per document, which dominates on short documents).
    """
    if not _kernels:
        import numba

        @numba.njit(cache=True, nogil=True)
        def sign(shingles, a, b):
            best = np.full(a.shape[0], np.uint64(0xFFFFFFFFFFFFFFFF))
            for i in range(shingles.shape[0]):
                h = shingles[i]
                for k in range(a.shape[0]):
                    v = a[k] * h + b[k]
                    best[k] = min(best[k], v)
            return best

        @numba.njit(cache=True, nogil=True)
        def sign_windows(values, n, fwd, inv, salt, a, b):
            length = values.shape[0]
            prefix = np.empty(length + 1, dtype=np.uint64)
            prefix[0] = np.uint64(0)
            for t in range(length):
                prefix[t + 1] = prefix[t] + (values[t] + np.uint64(1)) * inv[t]
            best = np.full(a.shape[0], np.uint64(0xFFFFFFFFFFFFFFFF))
            for i in range(length - n + 1):
                x = ((prefix[i + n] - prefix[i]) * fwd[i]) ^ salt
                x = x ^ (x >> np.uint64(30))
                x = x * np.uint64(0xBF58476D1CE4E5B9)
                x = x ^ (x >> np.uint64(27))
                x = x * np.uint64(0x94D049BB133111EB)
                h = x ^ (x >> np.uint64(31))
                for k in range(a.shape[0]):
                    v = a[k] * h + b[k]
                    best[k] = min(best[k], v)
            return best

        _kernels.update(sign=sign, sign_windows=sign_windows)
    return _kernels


def minhash_signature(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint32 signature (num_perm,) of a non-empty set of shingle hashes (numba kernel)."""
    best = _compiled_kernels()["sign"](np.ascontiguousarray(shingles, dtype=np.uint64), a.ravel(), b.ravel())
    return (best >> _U64(32)).astype(np.uint32)


def signature_of_codes(values: np.ndarray, n: int, a: np.ndarray, b: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """Signature of the n-gram windows of `values` (uint64 codes), equal to
    `minhash_signature(window_hashes(values, n, seed), a, b)`; None when there is no window."""
    length = len(values)
    if length == 0:
        return None
    n = min(n, length)
    fwd, inv = _powers(seed).get(length + 1)
    salt = _U64(seed & 0xFFFFFFFFFFFFFFFF) ^ _U64(n)
    best = _compiled_kernels()["sign_windows"](
        np.ascontiguousarray(values, dtype=np.uint64), n, fwd, inv, salt, a.ravel(), b.ravel()
    )
    return (best >> _U64(32)).astype(np.uint32)


def minhash_signature_numpy(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The same signature as one numpy matrix operation (reference for tests and the benchmark)."""
    best = (shingles.reshape(1, -1) * a.reshape(-1, 1) + b.reshape(-1, 1)).min(axis=1)
    return (best >> _U64(32)).astype(np.uint32)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64 keys: each band's `rows` signature values folded into one 64-bit hash.

    Two documents share a band key exactly when they agree on the band's rows, up to a 2^-64 chance per
    pair and band; keeping 8 bytes instead of 4 x rows is what bounds the LSH memory.
    """
    sig = np.asarray(signatures, dtype=np.uint64).reshape(len(signatures), -1)
    keys = np.empty((len(sig), bands), dtype=np.uint64)
    for band in range(bands):
        k = np.full(len(sig), _U64(band + 1), dtype=np.uint64)
        for row in range(band * rows, (band + 1) * rows):
            k = splitmix64(k ^ sig[:, row])
        keys[:, band] = k
    return keys


def lsh_probability(jaccard, bands: int, rows: int):
    """Probability that two documents of this Jaccard similarity share at least one band."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** rows) ** bands


@lru_cache(maxsize=32)
def lsh_params_for_threshold(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm whose S-curve best separates pairs below/above threshold.

    Minimises the area of false positives (below the threshold) plus false negatives (above it), equally
    weighted, the usual choice for picking LSH geometry from a threshold.
    """
    below = np.linspace(0.0, threshold, 200)
    above = np.linspace(threshold, 1.0, 200)
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            err = np.trapezoid(lsh_probability(below, bands, rows), below) + np.trapezoid(
                1 - lsh_probability(above, bands, rows), above
            )
            if err < best_err - 1e-12:
                best, best_err = (bands, rows), err
    return best
