"""`similar_line_dedup`: remove near-repeated sentences inside each document (MAP-Neo, Chinese).

The text is cut into pieces after each run of . ! ? 。 ！ ？ … (so "……" ends one piece) and before each
[ or 【. For pieces i < j, j is removed when it is similar to an earlier piece that was kept:
- prefilters (the reference's, kept because they are cheap): |len_i - len_j| / longer < 0.3, and the
  character multisets overlap by at least a third of the longer piece;
- similar: Levenshtein distance <= 0.1 x the longer length, and identical when the shorter piece has
  at most 15 characters.
The Levenshtein condition implies both prefilters (a distance d <= 0.1 L leaves the lengths within
0.1 L and at least 0.9 L - d characters in common), so the result does not depend on them; they are
applied to every pair that passes the distance test, as stated.
Pieces are compared stripped of surrounding whitespace; whitespace-only pieces are never removed.
Distances come from rapidfuzz's C++ Levenshtein, all pairs of a block of pieces at once (`cdist` with a
cut-off), so a document of P pieces costs P^2 bit-parallel distance computations, not Python loops.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup.common import record_removed_text

_SPLIT = re.compile(r"(?<=[.!?。！？…])(?![.!?。！？…])|(?=[\[【])")
_BLOCK = 512  # rows of the distance matrix computed at once: bounds memory to 512 x P int32


class SimilarLineDedupSettings(StageSettings):
    max_distance_ratio: float = Field(0.1, ge=0, lt=1, description="similar when Levenshtein <= this x longer length")
    exact_below: int = Field(15, ge=0, description="pieces this short (shorter side, in chars) must be identical")
    max_length_diff: float = Field(0.3, gt=0, le=1, description="prefilter: length difference / longer < this")
    min_char_overlap: float = Field(1 / 3, ge=0, le=1, description="prefilter: shared characters / longer >= this")
    drop_empty: bool = Field(True, description="drop a document left with no non-space text")
    write_clusters: bool = Field(
        False, description="write clusters/<stage>/<rank>.parquet: each removed piece with the kept piece it matched"
    )


def split_pieces(text: str) -> list[str]:
    """Cut after sentence-final punctuation runs and before [ / 【; the pieces concatenate back to text."""
    return [p for p in _SPLIT.split(text) if p]


def _overlap(a: str, b: str) -> int:
    ca, cb = Counter(a), Counter(b)
    return sum(min(n, cb[ch]) for ch, n in ca.items())


def similar_pieces_to_remove(pieces: list[str], settings: SimilarLineDedupSettings | None = None) -> dict[int, int]:
    """{removed piece index: index of the earlier kept piece it is similar to}, in ascending order."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    s = settings or SimilarLineDedupSettings()
    keys = [p.strip() for p in pieces]
    idx = [i for i, k in enumerate(keys) if k]
    if len(idx) < 2:
        return {}
    texts = [keys[i] for i in idx]
    lengths = np.array([len(t) for t in texts])
    # any similar pair is within this distance; cdist skips the exact computation beyond it
    cutoff = int(s.max_distance_ratio * lengths.max())
    removed = np.zeros(len(texts), dtype=bool)
    matched: dict[int, int] = {}
    for start in range(0, len(texts), _BLOCK):
        rows = texts[start : start + _BLOCK]
        dist = cdist(rows, texts, scorer=Levenshtein.distance, score_cutoff=cutoff, dtype=np.int32, workers=1)
        i = np.arange(start, start + len(rows))[:, None]
        longer = np.maximum(lengths[i], lengths[None, :])
        shorter = np.minimum(lengths[i], lengths[None, :])
        ok = (dist <= s.max_distance_ratio * longer) & (np.arange(len(texts))[None, :] > i)
        ok &= (shorter > s.exact_below) | (dist == 0)
        ok &= np.abs(lengths[i] - lengths[None, :]) / longer < s.max_length_diff
        for r in np.flatnonzero(ok.any(axis=1)):  # in order: earlier pieces decide first
            a = start + r
            if removed[a]:
                continue
            for j in np.flatnonzero(ok[r] & ~removed):
                if _overlap(texts[a], texts[j]) >= s.min_char_overlap * longer[r, j]:
                    removed[j] = True
                    matched[idx[j]] = idx[a]
    return dict(sorted(matched.items()))


def _surrounding_space(piece: str) -> str:
    core = piece.strip()
    start = piece.find(core)
    return piece[:start] + piece[start + len(core) :]


def dedup_similar_lines(
    text: str, settings: SimilarLineDedupSettings | None = None, matches: list | None = None
) -> tuple[str, list[str]]:
    """(text without the removed pieces, the removed pieces stripped).

    A removed piece leaves its surrounding whitespace (e.g. the newline before it), so lines that
    follow it keep their structure. `matches`, when given, receives (removed piece, kept piece) pairs.
    """
    pieces = split_pieces(text)
    drop = similar_pieces_to_remove(pieces, settings)
    if matches is not None:
        matches.extend((pieces[j].strip(), pieces[i].strip()) for j, i in drop.items())
    kept = "".join(_surrounding_space(p) if i in drop else p for i, p in enumerate(pieces))
    return kept, [pieces[i].strip() for i in drop]


class SimilarLineDedup(PipelineStep):
    name = "🀄 similar-line dedup"
    type = "🫂 - DEDUP"

    def __init__(self, settings: SimilarLineDedupSettings | None = None, exclusion_writer=None, clusters_dir=None):
        super().__init__()
        self.settings = settings or SimilarLineDedupSettings()
        self.exclusion_writer, self.clusters_dir = exclusion_writer, clusters_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import contextlib

        rows: list[tuple[str, str, str]] = []
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for doc in data:
                self.stat_update("total")
                matches: list[tuple[str, str]] = []
                with self.track_time():
                    text, removed = dedup_similar_lines(doc.text, self.settings, matches)
                rows.extend((str(doc.id), r, k) for r, k in matches)
                if removed:
                    self.stat_update("documents_modified")
                    self.stat_update("pieces_removed", value=len(removed))
                    if self.settings.drop_empty and not text.strip():
                        record_removed_text(self, doc.text, whole_document=True)
                        self.stat_update("dropped", "dropped_similar_line_empty")
                        if writer:
                            doc.metadata["filter_reason"] = "similar_line_empty"
                            writer.write(doc, rank)
                        continue
                    record_removed_text(self, removed)
                    doc.text = text
                self.stat_update("forwarded")
                self.update_doc_stats(doc)  # characters passed on, for the report's funnel
                yield doc
        if self.clusters_dir:
            import polars as pl

            from curate.atomic import write_parquet_atomic

            frame = pl.DataFrame(rows, schema={"id": pl.String, "removed": pl.String, "kept": pl.String}, orient="row")
            write_parquet_atomic(frame, os.path.join(self.clusters_dir, f"{rank:05d}.parquet"))


@register_stage("similar_line_dedup", settings=SimilarLineDedupSettings, kind="document")
def build_similar_line_dedup(settings: SimilarLineDedupSettings, ctx: StageContext) -> list[PipelineStep]:
    """Similar-line dedup inside each document (MAP-Neo Chinese): drop later near-repeated sentences."""
    clusters = os.path.join(ctx.phase_dir_for_documents, "clusters", ctx.stage_id) if settings.write_clusters else None
    return [SimilarLineDedup(settings, exclusion_writer=ctx.removed_writer(), clusters_dir=clusters)]
