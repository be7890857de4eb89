"""`substring_dedup`: exact substring dedup with fixed windows (MAP-Neo, English).

Every window of `window` characters (default 50, MAP-Neo) or `window` whitespace-separated tokens
(Lee et al. use 50 tokens) at every offset is hashed; a window already seen earlier in corpus order
(smallest document id, then offset) is cut from the later document, overlapping cuts merge, and a
document left with fewer than 20 characters is dropped. The text is rewritten. Documents shorter than
one window are left alone (whole-document duplicates are `exact_dedup`'s job).

Windows are hashed with a 64-bit polynomial rolling hash (all offsets of a document in a few numpy
operations, stages/dedup/hashing.py), not SHA-256 per window: at 1e10 windows the expected number of
false matches is ~3, each costing one 50-character cut.

Memory: the window table is as large as the corpus (one row per character: 8-byte hash, 8-byte document
number, two 4-byte offsets = 24 bytes before compression), so it never sits in one dict: the `hashes`
phase writes it in hash-prefix buckets on disk and each `first` task holds one bucket only
(24 B x characters / buckets, about twice that while polars sorts) — raise `buckets` until that fits.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup import hashing
from stages.dedup.spans import FirstOccurrence, PieceHashes, RemoveSpans

_TOKEN = re.compile(r"\S+")


class SubstringDedupSettings(StageSettings):
    window: int = Field(50, ge=2, description="window length (characters or tokens)")
    unit: Literal["char", "token"] = Field("char", description="window unit: characters or whitespace tokens")
    buckets: int = Field(
        0, ge=0, description="hash-prefix buckets (tasks of the `first` phase); 0 = 4 x the run's task count"
    )
    seed: int | None = Field(None, description="hash seed; default: the run's seed")
    write_clusters: bool = Field(
        False, description="write clusters/*.parquet: one row per repeated window (large: up to a row per character)"
    )


def substring_pieces(text: str, window: int, unit: str = "char", seed: int = 0):
    """(hashes (n, 1) uint64, starts, ends) of every window of the text; none when shorter than one window."""
    if unit == "char":
        if len(text) < window:
            return np.empty((0, 1), np.uint64), np.empty(0, np.uint32), np.empty(0, np.uint32)
        h = hashing.window_hashes(hashing.codepoints(text), window, seed)
        starts = np.arange(len(h), dtype=np.uint32)
        return h.reshape(-1, 1), starts, starts + np.uint32(window)
    if unit == "token":
        spans = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        if len(spans) < window:
            return np.empty((0, 1), np.uint64), np.empty(0, np.uint32), np.empty(0, np.uint32)
        h = hashing.window_hashes(hashing.word_codes([t for _, _, t in spans]), window, seed)
        tok_start = np.array([s for s, _, _ in spans], dtype=np.uint32)
        tok_end = np.array([e for _, e, _ in spans], dtype=np.uint32)
        return h.reshape(-1, 1), tok_start[: len(h)], tok_end[window - 1 :]
    raise ValueError(f"unknown window unit {unit!r} (char or token)")


class _Pieces:
    """Picklable text -> windows function (datatrove ships steps to worker processes)."""

    def __init__(self, window: int, unit: str, seed: int):
        self.window, self.unit, self.seed = window, unit, seed

    def __call__(self, text: str):
        return substring_pieces(text, self.window, self.unit, self.seed)


@register_stage("substring_dedup", settings=SubstringDedupSettings, kind="global")
def build_substring_dedup(settings: SubstringDedupSettings, ctx: StageContext) -> GlobalPlan:
    """Exact substring dedup: cut repeated 50-character windows, drop documents left under 20 chars."""
    buckets = settings.buckets or 4 * max(1, ctx.tasks)
    seed = ctx.seed if settings.seed is None else settings.seed
    hashes, first = ctx.data_dir("hashes"), ctx.data_dir("first")
    pieces = _Pieces(settings.window, settings.unit, seed)
    return GlobalPlan(
        phases=[
            Phase("hashes", [PieceHashes(hashes, buckets, pieces, "✂️ substring hashes")], reads_documents=True),
            Phase(
                "first",
                [FirstOccurrence(hashes, first, settings.write_clusters, "✂️ substring first occurrence")],
                tasks=buckets,
            ),
        ],
        apply=[RemoveSpans(hashes, first, "substring_dedup_too_short", "✂️ substring dedup", ctx.removed_writer())],
    )
