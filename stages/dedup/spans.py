"""Corpus-wide "keep the first occurrence" dedup of pieces of documents (paragraphs, substrings).

Shared by `paragraph_dedup` and `substring_dedup`; each supplies a function text -> (hashes, starts,
ends) naming the pieces of one document and their character spans.

Phases:
1. `hashes` (one task per document shard): every piece's hash, document number and span, written to
   one parquet file per (hash-prefix bucket, shard), plus the shard's ids;
2. `first` (one task per bucket): polars finds the hashes seen more than once, orders their occurrences
   by (document id, start) and lists every occurrence but the first as a span to remove, one file per
   (shard, bucket) so that each shard later reads only its own;
3. apply (next document pass): cuts the listed spans out of each document and drops documents left with
   fewer than 20 characters.

Order: "first" means smallest document id (string order), then smallest start offset; it does not
depend on sharding. Memory: a `first` task holds one bucket (rows / buckets) and the ids of the
documents that hold a repeated piece; the apply step holds one shard's ids and removal spans.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curate.atomic import write_parquet_atomic
from stages.dedup.common import MIN_CHARS_AFTER_REWRITE, record_removed_text, shard_ids_path, write_shard_ids

PieceFn = Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray]]  # text -> (hashes (n, k), starts, ends)
_LOCAL = np.uint64(0xFFFFFFFF)


def _bucket_dir(root: str, bucket: int) -> str:
    return os.path.join(root, f"bucket_{bucket:05d}")


class PieceHashes(PipelineStep):
    """Phase 1: hash the pieces of every document of the shard."""

    type = "🫂 - DEDUP"

    def __init__(self, output_dir: str, buckets: int, pieces: PieceFn, name: str):
        self.name = name  # before PipelineStep.__init__, which names the step's stats
        super().__init__()
        self.output_dir, self.buckets, self.pieces = output_dir, buckets, pieces

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        ids, hashes, nodes, starts, ends = [], [], [], [], []
        for local, doc in enumerate(data):
            ids.append(str(doc.id))
            self.stat_update("documents")
            with self.track_time():
                h, s, e = self.pieces(doc.text)
            self.stat_update("pieces", value=len(s))
            hashes.append(h)
            starts.append(s)
            ends.append(e)
            nodes.append(np.full(len(s), (rank << 32) | local, dtype=np.uint64))
        write_shard_ids(self.output_dir, rank, ids)
        width = hashes[0].shape[1] if hashes else 1
        h = np.concatenate(hashes) if hashes else np.empty((0, width), np.uint64)
        frame = pl.DataFrame(
            {
                **{f"h{i}": h[:, i] for i in range(width)},
                "node": np.concatenate(nodes) if nodes else np.empty(0, np.uint64),
                "start": np.concatenate(starts).astype(np.uint32) if starts else np.empty(0, np.uint32),
                "end": np.concatenate(ends).astype(np.uint32) if ends else np.empty(0, np.uint32),
            }
        ).with_columns(bucket=pl.col("h0") % self.buckets)
        for bucket, part in frame.partition_by("bucket", as_dict=True, include_key=False).items():
            path = os.path.join(_bucket_dir(self.output_dir, bucket[0]), f"{rank:05d}.parquet")
            write_parquet_atomic(part, path)
        return
        yield


def later_occurrences(table, ids_of: Callable[[np.ndarray], list[str]]):
    """Rows (node, id, start, end, kept_id, kept_start) for every occurrence of a repeated hash but the first.

    `table` (a DataFrame or LazyFrame) has columns h0.., node, start, end; `ids_of(nodes)` maps document
    numbers to ids. Only the occurrences of repeated hashes are ever materialised: the hashes seen more
    than once are found by a streaming group-by (memory ~ distinct hashes x 16 B), then a semi-join
    streams the table against them.
    """
    import polars as pl

    lazy = table.lazy()
    keys = [c for c in lazy.collect_schema().names() if c.startswith("h")]
    repeated_keys = lazy.group_by(keys).agg(pl.len().alias("n")).filter(pl.col("n") > 1).select(keys)
    repeated = lazy.join(repeated_keys, on=keys, how="semi").collect(engine="streaming")
    nodes = np.unique(repeated["node"].to_numpy())
    idmap = pl.DataFrame({"node": nodes, "id": ids_of(nodes)}, schema={"node": pl.UInt64, "id": pl.String})
    ordered = repeated.join(idmap, on="node").sort([*keys, "id", "start"])
    first = pl.int_range(pl.len()).over(keys) == 0
    return (
        ordered.with_columns(
            kept_id=pl.col("id").first().over(keys),  # rows are sorted: the first is the kept one
            kept_start=pl.col("start").first().over(keys),
        )
        .filter(~first)
        .select("node", "id", "start", "end", "kept_id", "kept_start")
    )


def ids_reader(hashes_dir: str) -> Callable[[np.ndarray], list[str]]:
    def ids_of(nodes: np.ndarray) -> list[str]:
        import polars as pl

        ranks, local = (nodes >> np.uint64(32)).astype(np.int64), (nodes & _LOCAL).astype(np.int64)
        out = np.empty(len(nodes), dtype=object)
        for rank in np.unique(ranks):
            sel = ranks == rank
            out[sel] = pl.read_parquet(shard_ids_path(hashes_dir, int(rank)))["id"].gather(local[sel]).to_list()
        return out.tolist()

    return ids_of


class FirstOccurrence(PipelineStep):
    """Phase 2 (one task per bucket): list the spans to remove, per shard."""

    type = "🫂 - DEDUP"

    def __init__(self, hashes_dir: str, output_dir: str, write_clusters: bool, name: str):
        self.name = name
        super().__init__()
        self.hashes_dir, self.output_dir, self.write_clusters = hashes_dir, output_dir, write_clusters

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        files = sorted(glob.glob(os.path.join(_bucket_dir(self.hashes_dir, rank), "*.parquet")))
        if not files:
            return
        with self.track_time("bucket"):
            later = later_occurrences(pl.scan_parquet(files), ids_reader(self.hashes_dir))
        self.stat_update("pieces", value=pl.scan_parquet(files).select(pl.len()).collect().item())
        self.stat_update("repeated_pieces", value=later.height)
        later = later.with_columns(shard=(pl.col("node") // (1 << 32)).cast(pl.Int64))
        for shard, part in later.partition_by("shard", as_dict=True, include_key=False).items():
            path = os.path.join(self.output_dir, f"shard_{shard[0]:05d}", f"{rank:05d}.parquet")
            write_parquet_atomic(part.sort("node", "start"), path)
        if self.write_clusters:
            clusters = later.select("id", "start", "end", "kept_id", "kept_start").sort("id", "start")
            write_parquet_atomic(clusters, os.path.join(self.output_dir, "clusters", f"{rank:05d}.parquet"))
        return
        yield


def cut_spans(text: str, starts: np.ndarray, ends: np.ndarray) -> tuple[str, list[str]]:
    """(text with the union of [start, end) spans removed, the removed stretches in order)."""
    order = np.argsort(starts, kind="stable")
    kept, removed, pos = [], [], 0
    for s, e in zip(starts[order].tolist(), ends[order].tolist()):
        if e <= pos:
            continue
        if removed and s <= pos:  # overlaps or touches the previous cut: extend it
            removed[-1] += text[pos:e]
        else:
            kept.append(text[pos:s])
            removed.append(text[s:e])
        pos = e
    kept.append(text[pos:])
    return "".join(kept), removed


class RemoveSpans(PipelineStep):
    """Apply: cut the listed spans from each document of the shard; drop documents left too short.

    Runs in the document pass right after the phases, which reads the same documents with the same
    sharding; each document is checked against the shard's id list so a different sharding fails loudly
    instead of cutting the wrong text. Documents removed earlier in the same pass are skipped over.
    """

    type = "🫂 - DEDUP"

    def __init__(self, hashes_dir: str, removals_dir: str, reason: str, name: str, exclusion_writer=None):
        self.name = name
        super().__init__()
        self.hashes_dir, self.removals_dir, self.reason = hashes_dir, removals_dir, reason
        self.exclusion_writer = exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import contextlib

        import polars as pl

        ids = pl.read_parquet(shard_ids_path(self.hashes_dir, rank))["id"].to_list()
        files = sorted(glob.glob(os.path.join(self.removals_dir, f"shard_{rank:05d}", "*.parquet")))
        spans = pl.read_parquet(files, columns=["node", "start", "end"]) if files else None
        by_local: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if spans is not None and spans.height:
            spans = spans.sort("node", "start")
            local = (spans["node"].to_numpy() & _LOCAL).astype(np.int64)
            cuts = np.flatnonzero(np.diff(local)) + 1
            s_all, e_all = spans["start"].to_numpy(), spans["end"].to_numpy()
            for idx in np.split(np.arange(len(local)), cuts):
                by_local[int(local[idx[0]])] = (s_all[idx], e_all[idx])
        cursor = 0
        writer_cm = self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext()
        with writer_cm as writer:
            for doc in data:
                self.stat_update("total")
                while cursor < len(ids) and ids[cursor] != str(doc.id):
                    cursor += 1
                if cursor == len(ids):
                    raise RuntimeError(
                        f"{self.name}: document {doc.id!r} is not in shard {rank}'s hash table; the apply pass "
                        "must read the same documents with the same number of tasks as the hashing phase"
                    )
                if cursor not in by_local:
                    self.stat_update("forwarded")
                    self.update_doc_stats(doc)  # characters passed on, for the report's funnel
                    yield doc
                    cursor += 1
                    continue
                with self.track_time():
                    text, removed = cut_spans(doc.text, *by_local[cursor])
                cursor += 1
                self.stat_update("documents_modified")
                if len(text.strip()) < MIN_CHARS_AFTER_REWRITE:
                    record_removed_text(self, doc.text, whole_document=True)
                    self.stat_update("dropped", f"dropped_{self.reason}")
                    if writer:
                        doc.metadata["filter_reason"] = self.reason
                        writer.write(doc, rank)
                    continue
                record_removed_text(self, removed)
                doc.text = text
                self.stat_update("forwarded")
                self.update_doc_stats(doc)  # characters passed on, for the report's funnel
                yield doc
