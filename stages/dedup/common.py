"""Pieces every dedup stage shares: the filter that drops listed duplicates, removal statistics, and
per-shard document tables.

Statistics: every dedup stage reports what it removed in the same three units, `documents_removed`,
`lines_removed` and `chars_removed` (lines = non-blank lines holding removed text), so the report
can put exact, MinHash, paragraph and substring dedup side by side.
"""

from __future__ import annotations

import glob
import os

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

# documents shorter than this (in characters, surrounding whitespace excluded) after paragraph or
# substring removal are dropped: MAP-Neo's rule, a fragment that short carries no training signal
MIN_CHARS_AFTER_REWRITE = 20


def line_count(text: str) -> int:
    """Lines holding removed text: non-blank newline-separated lines (a cut part of a line counts)."""
    return sum(1 for line in text.split("\n") if line.strip())


def record_removed_text(step, removed: str | list[str], whole_document: bool = False) -> None:
    """Add `removed` (a whole document's text, or the pieces cut out of one) to the removal stats."""
    pieces = [removed] if isinstance(removed, str) else removed
    if whole_document:
        step.stat_update("documents_removed")
    step.stat_update("lines_removed", value=sum(line_count(p) for p in pieces))
    step.stat_update("chars_removed", value=sum(len(p) for p in pieces))


def read_id_column(folder: str, pattern: str = "*.parquet") -> set[str]:
    """All ids listed in the parquet files of `folder` (an empty set when there are none)."""
    import polars as pl

    files = sorted(glob.glob(os.path.join(folder, pattern)))
    if not files:
        return set()
    return set(pl.read_parquet(files, columns=["id"])["id"].to_list())


class ListedDuplicatesFilter(BaseFilter):
    """Drops the documents whose id a global phase listed in `duplicates_dir/*.parquet` (column `id`).

    The list holds only the removed documents, so its memory is bounded by the duplicates found, not by
    the corpus; documents are matched by id, so the pass that applies it may be sharded differently
    from the one that computed it.
    """

    name = "🫆 listed-duplicates filter"

    def __init__(self, duplicates_dir: str, reason: str, exclusion_writer=None, pattern: str = "*.parquet"):
        super().__init__(exclusion_writer)
        self.duplicates_dir, self.reason, self.pattern = duplicates_dir, reason, pattern
        self._remove: set[str] | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._remove is None:
            self._remove = read_id_column(self.duplicates_dir, self.pattern)
        if str(doc.id) in self._remove:
            record_removed_text(self, doc.text, whole_document=True)
            return False, self.reason
        return True


def shard_ids_path(folder: str, rank: int) -> str:
    return os.path.join(folder, "ids", f"{rank:05d}.parquet")


def write_shard_ids(folder: str, rank: int, ids: list[str]) -> None:
    """The ids of one shard in reading order; row i is the document with local index i."""
    import polars as pl

    from curate.atomic import write_parquet_atomic

    write_parquet_atomic(pl.DataFrame({"id": ids}, schema={"id": pl.String}), shard_ids_path(folder, rank))
