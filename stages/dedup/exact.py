"""`exact_dedup`: exact document dedup; one survivor (the smallest id) per group of identical texts.

Three steps, sharded like datatrove's own dedup chains:
1. `signatures` (one task per document shard): a 128-bit BLAKE2b digest per document, written to one
   parquet file per hash-prefix bucket, so no later task needs more than its bucket in memory;
2. `duplicates` (one task per bucket): polars groups the digests, keeps the smallest id of each
   group and lists the others (with the id that was kept, so a user can inspect the clusters);
3. `apply` (fused into the next document pass): drops the listed documents.
A 64-bit hash alone would collide with probability ~3% at 10^9 documents; 128 bits makes that
negligible without keeping the texts.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.atomic import write_parquet_atomic
from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup.common import ListedDuplicatesFilter


class ExactDedupSettings(StageSettings):
    buckets: int = Field(
        0, ge=0, description="hash-prefix buckets (tasks of the duplicates phase); 0 = the run's task count"
    )
    strip: bool = Field(True, description="ignore leading and trailing whitespace when comparing texts")
    write_clusters: bool = Field(True, description="write `clusters.parquet` (removed id, kept id) for inspection")


def text_digest(text: str, strip: bool = True) -> tuple[int, int]:
    """128-bit content digest of a text, as two unsigned 64-bit integers."""
    data = (text.strip() if strip else text).encode("utf-8", "surrogatepass")  # JSON allows lone surrogates
    d = hashlib.blake2b(data, digest_size=16).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")


def find_exact_duplicates(h1: np.ndarray, h2: np.ndarray, ids: list[str]):
    """Given digests and ids, return a polars frame (id, kept_id) of the documents to remove.

    The survivor of each group is its smallest id (string order), so the result does not depend on
    how the corpus was sharded or in which order shards were read.
    """
    import polars as pl

    df = pl.DataFrame(
        {"h1": np.asarray(h1, dtype=np.uint64), "h2": np.asarray(h2, dtype=np.uint64), "id": ids},
        schema={"h1": pl.UInt64, "h2": pl.UInt64, "id": pl.String},
    )
    return (
        df.with_columns(kept_id=pl.col("id").min().over("h1", "h2"))
        .filter(pl.col("id") != pl.col("kept_id"))
        .select("id", "kept_id")
        .sort("id")
    )


class ExactDedupSignatures(PipelineStep):
    name = "🫆 exact-dedup signatures"
    type = "🫂 - DEDUP"

    def __init__(self, output_dir: str, buckets: int, strip: bool = True):
        super().__init__()
        self.output_dir, self.buckets, self.strip = output_dir, buckets, strip

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        h1, h2, ids = [], [], []
        for doc in data:
            with self.track_time():
                a, b = text_digest(doc.text, self.strip)
            h1.append(a)
            h2.append(b)
            ids.append(str(doc.id))
            self.stat_update("documents")
        df = pl.DataFrame(
            {"h1": np.array(h1, dtype=np.uint64), "h2": np.array(h2, dtype=np.uint64), "id": ids},
            schema={"h1": pl.UInt64, "h2": pl.UInt64, "id": pl.String},
        ).with_columns(bucket=(pl.col("h1") % self.buckets).cast(pl.Int64))
        for b in range(self.buckets):
            part = df.filter(pl.col("bucket") == b).drop("bucket")
            path = os.path.join(self.output_dir, f"bucket_{b:05d}", f"{rank:05d}.parquet")
            write_parquet_atomic(part, path)
        return
        yield  # a generator that consumes the documents and yields none


class ExactDedupFindDuplicates(PipelineStep):
    name = "🫆 exact-dedup find duplicates"
    type = "🫂 - DEDUP"

    def __init__(self, signatures_dir: str, output_dir: str, write_clusters: bool = True):
        super().__init__()
        self.signatures_dir, self.output_dir, self.write_clusters = signatures_dir, output_dir, write_clusters

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import glob

        import polars as pl

        files = sorted(glob.glob(os.path.join(self.signatures_dir, f"bucket_{rank:05d}", "*.parquet")))
        with self.track_time("bucket"):
            if files:
                sig = pl.read_parquet(files)
                dups = find_exact_duplicates(sig["h1"].to_numpy(), sig["h2"].to_numpy(), sig["id"].to_list())
                self.stat_update("documents", value=sig.height)
            else:
                dups = pl.DataFrame(schema={"id": pl.String, "kept_id": pl.String})
        self.stat_update("duplicates", value=dups.height)
        self.stat_update("clusters", value=dups["kept_id"].n_unique() if dups.height else 0)
        cols = ["id", "kept_id"] if self.write_clusters else ["id"]
        write_parquet_atomic(dups.select(cols), os.path.join(self.output_dir, f"{rank:05d}.parquet"))
        return
        yield


class ExactDedupFilter(ListedDuplicatesFilter):
    """Drops the documents the `duplicates` phase listed (and counts their documents, lines, characters)."""

    name = "🫆 exact-dedup filter"

    def __init__(self, duplicates_dir: str, exclusion_writer=None):
        super().__init__(duplicates_dir, "exact_duplicate", exclusion_writer)


@register_stage("exact_dedup", settings=ExactDedupSettings, kind="global")
def build_exact_dedup(settings: ExactDedupSettings, ctx: StageContext) -> GlobalPlan:
    """Exact document dedup: keep the smallest id of each group of identical texts."""
    buckets = settings.buckets or max(1, ctx.tasks)
    signatures = ctx.data_dir("signatures")
    duplicates = ctx.data_dir("duplicates")
    return GlobalPlan(
        phases=[
            Phase("signatures", [ExactDedupSignatures(signatures, buckets, settings.strip)], reads_documents=True),
            Phase(
                "duplicates", [ExactDedupFindDuplicates(signatures, duplicates, settings.write_clusters)], tasks=buckets
            ),
        ],
        apply=[ExactDedupFilter(duplicates, exclusion_writer=ctx.removed_writer())],
    )
