"""`paragraph_dedup`: remove every paragraph already seen earlier in the corpus (MAP-Neo, English).

A paragraph is a line (text split on `\\n`); blank lines are not paragraphs and stay. Each paragraph
is hashed with a 128-bit BLAKE2b digest (the reference uses SHA-256; 128 bits keep the chance of one
false match below 1e-18 at 1e12 paragraphs and halve the table). The first occurrence in corpus order
(smallest document id, then position) stays, every later one is cut together with its newline, and a
document left with fewer than 20 characters is dropped. The text is rewritten.

Phases and memory: see stages/dedup/spans.py. On disk: 32 bytes per paragraph (16-byte digest,
8-byte document number, two 4-byte offsets) before parquet compression.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup.spans import FirstOccurrence, PieceHashes, RemoveSpans


class ParagraphDedupSettings(StageSettings):
    buckets: int = Field(
        0, ge=0, description="hash-prefix buckets (tasks of the `first` phase); 0 = the run's task count"
    )
    strip: bool = Field(True, description="ignore leading and trailing whitespace of a paragraph when comparing")
    write_clusters: bool = Field(
        True, description="write clusters/*.parquet: each removed paragraph (id, span) with where it was kept"
    )


def paragraph_pieces(text: str, strip: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(digests (n, 2) uint64, starts, ends) of the non-blank lines; a span includes the line's newline."""
    digests, starts, ends = [], [], []
    pos = 0
    for line in text.split("\n"):
        end = pos + len(line)
        key = line.strip() if strip else line
        if key.strip():
            d = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            digests.append((int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")))
            starts.append(pos)
            ends.append(min(end + 1, len(text)))
        pos = end + 1
    return (
        np.array(digests, dtype=np.uint64).reshape(-1, 2),
        np.array(starts, dtype=np.uint32),
        np.array(ends, dtype=np.uint32),
    )


class _Pieces:
    """Picklable text -> pieces function (datatrove ships steps to worker processes)."""

    def __init__(self, strip: bool):
        self.strip = strip

    def __call__(self, text: str):
        return paragraph_pieces(text, self.strip)


@register_stage("paragraph_dedup", settings=ParagraphDedupSettings, kind="global")
def build_paragraph_dedup(settings: ParagraphDedupSettings, ctx: StageContext) -> GlobalPlan:
    """Paragraph dedup: keep each line's first occurrence corpus-wide, drop documents left under 20 chars."""
    buckets = settings.buckets or max(1, ctx.tasks)
    hashes, first = ctx.data_dir("hashes"), ctx.data_dir("first")
    return GlobalPlan(
        phases=[
            Phase(
                "hashes",
                [PieceHashes(hashes, buckets, _Pieces(settings.strip), "📜 paragraph hashes")],
                reads_documents=True,
            ),
            Phase(
                "first",
                [FirstOccurrence(hashes, first, settings.write_clusters, "📜 paragraph first occurrence")],
                tasks=buckets,
            ),
        ],
        apply=[RemoveSpans(hashes, first, "paragraph_dedup_too_short", "📜 paragraph dedup", ctx.removed_writer())],
    )
