"""`minhash_dedup`: MinHash LSH near-duplicate removal, MAP-Neo's geometry by default.

Default geometry (MAP-Neo): text normalised (NFC, lower-case, ASCII punctuation removed, whitespace
collapsed), character 13-gram shingles, 128 permutations, 9 bands x 13 rows (the S-curve crosses 50%
at Jaccard ~0.82), duplicates = connected components of documents sharing a band, the smallest id
(string order) of each component kept. Every part is a setting: word n-grams, other bands/rows, or a
Jaccard `threshold` from which bands/rows are chosen.

Why not datatrove's MinhashDedupSignature: it shingles through a word tokenizer and hashes each
n-gram with a Python call, so character 13-grams cost one Python call per character; bench/dedup.py
runs both on the same geometry (`docs_per_s` vs `datatrove_docs_per_s`). Here a document is shingled by
a few numpy operations and signed by a numba kernel (stages/dedup/hashing.py).

Phases, each a datatrove executor:
1. `signatures` (one task per document shard): band keys per document, written as one parquet file per
   (band, part, shard), sorted by key, plus the shard's ids;
2. `buckets` (bands x parts tasks): one (band, hash-range part) each; documents sharing a key are
   candidates, written as edges (document -> smallest document of its bucket);
3. `clusters` (1 task): connected components of all edges (scipy), smallest id kept, the rest listed;
4. apply: a filter dropping the listed documents, fused into the next document pass.

Memory, stated per document and band: `signatures` holds 8 bytes per document per band for its shard
(72 B with 9 bands; signatures are folded into band keys every 65,536 documents) plus its ids; on disk
each band costs 16 bytes per document (8-byte key + 8-byte document number; ~10 B after parquet
compression, measured by bench/dedup_scale.py); a `buckets` task holds one band's part, 16 B x
documents / parts, about twice that while polars groups it, so `parts` bounds it (1e9 documents,
parts=32: ~0.5 GB, ~1 GB peak). `clusters` holds only the edges (two uint64 per near-duplicate
document per band that found it) and the ids of the documents in them, never the whole corpus.
The apply filter holds the removed ids only.
"""

from __future__ import annotations

import glob
import os
from typing import Literal

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field, model_validator

from curate.atomic import write_parquet_atomic
from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.dedup import hashing
from stages.dedup.common import ListedDuplicatesFilter, shard_ids_path, write_shard_ids


class MinhashDedupSettings(StageSettings):
    unit: Literal["char", "word"] = Field("char", description="shingle unit: characters or whitespace-split words")
    ngram: int = Field(13, ge=1, description="shingle length in units (MAP-Neo: 13 characters)")
    num_perm: int = Field(128, ge=1, le=1024, description="MinHash permutations")
    bands: int = Field(9, ge=1, description="LSH bands (ignored when `threshold` is set)")
    rows: int = Field(13, ge=1, description="signature rows per band (ignored when `threshold` is set)")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Jaccard threshold; when set, bands x rows are chosen from it and num_perm"
    )
    normalize: bool = Field(
        True, description="NFC, lower-case, strip ASCII punctuation, collapse whitespace before shingling"
    )
    parts: int = Field(
        1,
        ge=1,
        description="hash-range parts per band: buckets tasks = bands x parts; a task holds 16 B x docs / parts",
    )
    seed: int | None = Field(None, description="hash seed; default: the run's seed")
    write_clusters: bool = Field(True, description="list each removed id with the id kept in its cluster")

    @model_validator(mode="after")
    def _geometry_fits(self):
        if self.threshold is None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def geometry(self) -> tuple[int, int]:
        if self.threshold is not None:
            return hashing.lsh_params_for_threshold(self.threshold, self.num_perm)
        return self.bands, self.rows


class MinhashSigner:
    """Text -> band keys for one geometry (the plain algorithm, usable without datatrove)."""

    def __init__(self, settings: MinhashDedupSettings, seed: int = 0):
        self.settings, self.seed = settings, seed
        self.bands, self.rows = settings.geometry()
        self.a, self.b = hashing.permutations(settings.num_perm, seed)

    def signature(self, text: str) -> np.ndarray | None:
        s = self.settings
        if s.normalize:
            text = hashing.normalize_for_minhash(text)
        codes = hashing.codepoints(text) if s.unit == "char" else hashing.word_codes(text.split())
        return hashing.signature_of_codes(codes, s.ngram, self.a, self.b, self.seed)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        return hashing.band_keys(signatures, self.bands, self.rows)


def _band_dir(root: str, band: int, part: int) -> str:
    return os.path.join(root, f"band_{band:03d}", f"part_{part:03d}")


class MinhashSignatures(PipelineStep):
    name = "🎯 minhash signatures"
    type = "🫂 - DEDUP"

    def __init__(self, output_dir: str, settings: MinhashDedupSettings, seed: int = 0):
        super().__init__()
        self.output_dir, self.settings, self.seed = output_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        signer = MinhashSigner(self.settings, self.seed)
        ids: list[str] = []
        chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (local indices, band keys) per 64k documents
        signed, sigs = [], []

        def fold():  # band keys kept (8 B per band) instead of signatures (4 B per permutation)
            if sigs:
                chunks.append((np.asarray(signed, np.uint32), signer.band_keys(np.stack(sigs))))
                signed.clear()
                sigs.clear()

        for local, doc in enumerate(data):
            ids.append(str(doc.id))
            self.stat_update("documents")
            with self.track_time():
                sig = signer.signature(doc.text)
            if sig is None:  # nothing left after normalisation: never a near-duplicate of anything
                self.stat_update("no_shingles")
                continue
            signed.append(local)
            sigs.append(sig)
            if len(sigs) >= 65536:
                fold()
        fold()
        write_shard_ids(self.output_dir, rank, ids)
        local = np.concatenate([c[0] for c in chunks]) if chunks else np.empty(0, np.uint32)
        keys = np.concatenate([c[1] for c in chunks]) if chunks else np.empty((0, signer.bands), np.uint64)
        nodes = (np.uint64(rank) << np.uint64(32)) | local.astype(np.uint64)
        for band in range(signer.bands):
            frame = pl.DataFrame({"key": keys[:, band], "node": nodes}, schema={"key": pl.UInt64, "node": pl.UInt64})
            frame = frame.with_columns(part=pl.col("key") % self.settings.parts)
            for part in range(self.settings.parts):
                chunk = frame.filter(pl.col("part") == part).drop("part").sort("key", "node")
                path = os.path.join(_band_dir(self.output_dir, band, part), f"{rank:05d}.parquet")
                write_parquet_atomic(chunk, path)
        return
        yield


def bucket_edges(keys: np.ndarray, nodes: np.ndarray):
    """Documents sharing a key -> edges (node, smallest node of its bucket), for buckets of size >= 2."""
    import polars as pl

    return (
        pl.DataFrame({"key": keys, "node": nodes}, schema={"key": pl.UInt64, "node": pl.UInt64})
        .lazy()
        .with_columns(root=pl.col("node").min().over("key"))
        .filter(pl.col("node") != pl.col("root"))
        .select("node", "root")
        .collect()
    )


class MinhashBuckets(PipelineStep):
    name = "🎯 minhash buckets"
    type = "🫂 - DEDUP"

    def __init__(self, signatures_dir: str, output_dir: str, parts: int):
        super().__init__()
        self.signatures_dir, self.output_dir, self.parts = signatures_dir, output_dir, parts

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        band, part = divmod(rank, self.parts)
        files = sorted(glob.glob(os.path.join(_band_dir(self.signatures_dir, band, part), "*.parquet")))
        with self.track_time("bucket"):
            table = pl.read_parquet(files) if files else pl.DataFrame(schema={"key": pl.UInt64, "node": pl.UInt64})
            edges = bucket_edges(table["key"].to_numpy(), table["node"].to_numpy())
        self.stat_update("signatures", value=table.height)
        self.stat_update("candidate_edges", value=edges.height)
        write_parquet_atomic(edges, os.path.join(self.output_dir, f"{rank:05d}.parquet"))
        return
        yield


def components_keep_smallest(edges_a: np.ndarray, edges_b: np.ndarray, id_of):
    """Connected components of the edge list; returns (id, kept_id, cluster_size) for removed documents.

    `id_of(nodes) -> list[str]` maps node numbers to document ids; the kept document of a component is
    its smallest id, so the result does not depend on sharding or on edge order.
    """
    import polars as pl
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    schema = {"id": pl.String, "kept_id": pl.String, "cluster_size": pl.UInt32}
    if len(edges_a) == 0:
        return pl.DataFrame(schema=schema)
    nodes, inverse = np.unique(np.concatenate([edges_a, edges_b]), return_inverse=True)
    m = len(edges_a)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (inverse[:m], inverse[m:])), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    members = pl.DataFrame({"id": id_of(nodes), "component": component})
    return (
        members.with_columns(
            kept_id=pl.col("id").min().over("component"),
            cluster_size=pl.len().over("component").cast(pl.UInt32),
        )
        .filter(pl.col("id") != pl.col("kept_id"))
        .select(list(schema))
        .sort("id")
    )


class MinhashClusters(PipelineStep):
    name = "🎯 minhash clusters"
    type = "🫂 - DEDUP"

    def __init__(self, signatures_dir: str, buckets_dir: str, output_dir: str, write_clusters: bool = True):
        super().__init__()
        self.signatures_dir, self.buckets_dir = signatures_dir, buckets_dir
        self.output_dir, self.write_clusters = output_dir, write_clusters

    def _ids_of(self, nodes: np.ndarray) -> list[str]:
        import polars as pl

        ranks, local = (nodes >> np.uint64(32)).astype(np.int64), (nodes & np.uint64(0xFFFFFFFF)).astype(np.int64)
        out = np.empty(len(nodes), dtype=object)
        for rank in np.unique(ranks):
            sel = ranks == rank
            shard = pl.read_parquet(shard_ids_path(self.signatures_dir, int(rank)))["id"]
            out[sel] = shard.gather(local[sel]).to_list()
        return out.tolist()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        files = sorted(glob.glob(os.path.join(self.buckets_dir, "*.parquet")))
        with self.track_time("clusters"):
            edges = (
                pl.read_parquet(files).unique()
                if files
                else pl.DataFrame(schema={"node": pl.UInt64, "root": pl.UInt64})
            )
            removed = components_keep_smallest(edges["node"].to_numpy(), edges["root"].to_numpy(), self._ids_of)
        self.stat_update("duplicates", value=removed.height)
        self.stat_update("clusters", value=removed["kept_id"].n_unique() if removed.height else 0)
        cols = ["id", "kept_id", "cluster_size"] if self.write_clusters else ["id"]
        write_parquet_atomic(removed.select(cols), os.path.join(self.output_dir, "clusters.parquet"))
        return
        yield


class MinhashDedupFilter(ListedDuplicatesFilter):
    name = "🎯 minhash filter"

    def __init__(self, clusters_dir: str, exclusion_writer=None):
        super().__init__(clusters_dir, "minhash_duplicate", exclusion_writer)


@register_stage("minhash_dedup", settings=MinhashDedupSettings, kind="global")
def build_minhash_dedup(settings: MinhashDedupSettings, ctx: StageContext) -> GlobalPlan:
    """MinHash LSH near-duplicate removal (MAP-Neo: char 13-grams, 128 perms, 9x13 bands, keep smallest id)."""
    seed = ctx.seed if settings.seed is None else settings.seed
    bands, _ = settings.geometry()
    signatures, buckets, clusters = ctx.data_dir("signatures"), ctx.data_dir("buckets"), ctx.data_dir("clusters")
    return GlobalPlan(
        phases=[
            Phase("signatures", [MinhashSignatures(signatures, settings, seed)], reads_documents=True),
            Phase("buckets", [MinhashBuckets(signatures, buckets, settings.parts)], tasks=bands * settings.parts),
            Phase("clusters", [MinhashClusters(signatures, buckets, clusters, settings.write_clusters)], tasks=1),
        ],
        apply=[MinhashDedupFilter(clusters, exclusion_writer=ctx.removed_writer())],
    )
