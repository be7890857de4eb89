"""Deduplication stages: exact, MinHash LSH, paragraph, substring, similar-line, semantic."""

from stages.dedup import exact  # noqa: F401
from stages.dedup import minhash  # noqa: F401
from stages.dedup import paragraph  # noqa: F401
from stages.dedup import substring  # noqa: F401
from stages.dedup import similar_line  # noqa: F401
from stages.dedup import semantic  # noqa: F401
