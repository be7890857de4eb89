"""`neighbors`: the k-nearest-neighbour graph of the embedded corpus (FAISS), with its measured recall.

Default (`index_shards: 1`): one phase, `search`, one task: load every embed shard, choose and build
the index (GPU when faiss has one), tune nprobe/efSearch on a seeded query sample against exact
search, search every row, and write the graph in shards (format: `stages/neighbors/store.py`). FAISS
parallelises the work over the machine's cores (or the GPU). That task holds the corpus and its index.

`index_shards: S` > 1 (a corpus too big for one task): phases `search` (S tasks, one database shard
each), `merge` and `finalize` (see `stages/neighbors/sharded.py`); no task holds the whole corpus.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage


class NeighborsSettings(StageSettings):
    k: int = Field(20, ge=1, description="neighbours per document (the ICLM paper uses 50)")
    index: str = Field(
        "auto",
        description="'auto' (Flat when small, else IVF sized to memory) or a FAISS factory string, "
        "e.g. 'IVF4096,Flat', 'IVF32768,PQ64', 'HNSW32'",
    )
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="'auto': GPU when faiss sees one")
    flat_max_rows: int = Field(0, ge=0, description="exact search up to this many rows; 0 = 50,000 on CPU, 2,000,000 on GPU")
    nprobe: int = Field(0, ge=0, description="IVF lists probed; 0 = tuned up to target_recall")
    ef_search: int = Field(0, ge=0, description="HNSW efSearch; 0 = tuned up to target_recall")
    target_recall: float = Field(0.95, gt=0, le=1, description="recall@k the tuning aims for")
    recall_margin: float = Field(
        0.01, ge=0, description="tune until the sample's recall reaches target_recall + this (sampling error)"
    )
    recall_sample: int = Field(1000, ge=1, description="query rows on which recall@k is measured against exact search")
    max_probe_fraction: float = Field(
        0.25, gt=0, le=1,
        description="auto index only: if the tuned nprobe exceeds this share of the IVF lists, IVF is no "
        "faster than exact search, so search exactly (Flat) instead",
    )
    rerank: int = Field(0, ge=0, description="re-score this many candidates per neighbour exactly; 0 = 4 for PQ/SQ8 codes, 1 otherwise")
    memory_gb: float = Field(0, ge=0, description="memory the index may use; 0 = half of the available memory")
    train_per_list: int = Field(40, ge=1, description="training vectors per IVF list (seeded sample)")
    rows_per_shard: int = Field(100_000, ge=1, description="graph rows per knn_*.npz file")
    threads: int = Field(0, ge=0, description="FAISS CPU threads; 0 = all cores")
    gpus: int = Field(0, ge=0, description="GPUs to request from a cluster executor")
    index_shards: int = Field(
        1, ge=1,
        description="split the corpus into this many database shards, each indexed and searched by its own "
        "task, results merged per row; 1 = one index over the whole corpus in one task",
    )


class NeighborsSearch(PipelineStep):
    name = "🕸️ kNN graph"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, output_dir: str, settings: NeighborsSettings | None = None, seed: int = 0):
        super().__init__()
        self.embed_dir, self.output_dir = embed_dir, output_dir
        self.settings = settings or NeighborsSettings()
        self.seed = seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if rank != 0:
            return
        result = build_knn_graph(self.embed_dir, self.output_dir, self.settings, self.seed)
        for key, value in result.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.stat_update(key, value=value, unit="run")
        return
        yield


def build_knn_graph(embed_dir: str, output_dir: str, s: NeighborsSettings, seed: int = 0) -> dict:
    """Everything the `search` phase does, callable without datatrove. Returns the manifest plus
    timings (which stay out of the manifest file)."""
    import faiss
    import numpy as np
    import polars as pl

    from curate.atomic import write_json_atomic, write_parquet_atomic
    from stages.embed.store import load_embeddings, read_manifest as read_embed_manifest
    from stages.neighbors import index as knn
    from stages.neighbors.store import IDS, MANIFEST, write_knn_shard

    if s.threads:
        faiss.omp_set_num_threads(s.threads)
    t0 = time.perf_counter()
    ids, vectors, labels = load_embeddings(embed_dir)
    n, d = vectors.shape
    table = {"id": pl.Series("id", ids, dtype=pl.String)}
    if labels is not None:
        table["label"] = pl.Series("label", labels, dtype=pl.String)
    write_parquet_atomic(pl.DataFrame(table), os.path.join(output_dir, IDS))

    k = s.k
    gpu_ok = knn.select_faiss_device(index_key=s.index if s.index != "auto" else "Flat") == "gpu"
    on_gpu = s.device == "gpu" or (s.device == "auto" and gpu_ok)
    flat_max = s.flat_max_rows or (2_000_000 if on_gpu else 50_000)
    memory = s.memory_gb * 2**30 if s.memory_gb else knn.available_memory_bytes() / 2
    key = s.index if s.index != "auto" else knn.choose_index_key(n, d, memory, flat_max)
    device = "gpu" if on_gpu and knn.select_faiss_device(index_key=key) == "gpu" else "cpu"
    rerank = s.rerank or knn.default_rerank(key)

    t_build = time.perf_counter()
    index = knn.build_index(vectors, key, device, seed, s.train_per_list) if n else None
    build_s = time.perf_counter() - t_build

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, s.recall_sample), replace=False)) if n else np.zeros(0, np.int64)
    t_exact = time.perf_counter()
    _, exact_I = knn.exact_knn(vectors, sample, k, device) if n else (None, np.zeros((0, k), np.int64))
    exact_s = time.perf_counter() - t_exact
    fixed = s.nprobe if knn.search_parameter(index) == "nprobe" else s.ef_search
    tuning = knn.tune_search(index, vectors, sample, exact_I, k, s.target_recall, fixed, device, rerank=rerank,
                        margin=s.recall_margin) \
        if n else knn.TuningResult(None, None, 1.0)

    nlist = knn.ivf_list_count(index) if n else None
    fell_back = (
        s.index == "auto" and tuning.parameter == "nprobe" and nlist is not None
        and tuning.value > s.max_probe_fraction * nlist
        and n * (4 * d + 2 * d) <= memory
    )
    if fell_back:
        del index
        key, rerank = "Flat", 1
        index = knn.build_index(vectors, key, device, seed)
        tuning = knn.TuningResult(None, None, 1.0, tuning.trace)

    t_search = time.perf_counter()
    sample_I = np.zeros((len(sample), k), np.int64)
    for shard, start in enumerate(range(0, max(n, 1), s.rows_per_shard)):
        rows = np.arange(start, min(n, start + s.rows_per_shard))
        D, I = knn.search_rows(index, vectors, rows, k, rerank) if len(rows) else (
            np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
        in_shard = (sample >= start) & (sample < start + len(rows))
        sample_I[in_shard] = I[sample[in_shard] - start]
        write_knn_shard(output_dir, shard, start, I, D.astype(np.float16))
    search_s = time.perf_counter() - t_search
    # The stated recall is that of the rows as written, not of the tuning pass.
    recall = knn.recall_at_k(sample_I, exact_I)
    manifest = {
        "n": int(n), "k": k, "dim": int(d), "metric": "ip", "index": key, "device": device,
        "recall_at_k": float(recall), "recall_sample_size": int(len(sample)),
        "recall_sample_rows": sample.tolist(), "search_parameter": tuning.parameter,
        "search_parameter_value": tuning.value, "tuning_trace": tuning.trace, "rerank": rerank,
        "target_recall": s.target_recall, "seed": seed, "fell_back_to_exact": bool(fell_back),
        "embedding_model": read_embed_manifest(embed_dir).get("model"),
    }
    write_json_atomic(manifest, os.path.join(output_dir, MANIFEST))
    # Timings go to the stats only, so the manifest is byte-identical across reruns.
    timings = {"build_s": round(build_s, 3), "exact_sample_s": round(exact_s, 3), "search_s": round(search_s, 3),
               "total_s": round(time.perf_counter() - t0, 3)}
    return {**manifest, **timings}


class NeighborsShardSearch(PipelineStep):
    """`search` phase of the sharded graph: task j indexes database shard j and queries every row."""

    name = "🕸️ kNN graph: shard search"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings, seed: int = 0):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings, self.seed = embed_dir, data_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.sharded import search_one_shard

        if self.settings.threads:
            import faiss

            faiss.omp_set_num_threads(self.settings.threads)
        with self.track_time("shard"):
            info = search_one_shard(self.embed_dir, self.data_dir, rank, world_size, self.settings, self.seed)
        self.stat_update("database_rows", value=info["rows"][1] - info["rows"][0])
        if info.get("search_parameter_value") is not None:
            self.stat_update(f"{info['search_parameter']}", value=int(info["search_parameter_value"]), unit="run")
        return
        yield


class NeighborsMerge(PipelineStep):
    """`merge` phase: per row, the best k of the database shards' lists, one output shard at a time."""

    name = "🕸️ kNN graph: merge shards"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings = embed_dir, data_dir, settings

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import math

        from stages.neighbors.sharded import corpus_rows, merge_output_shard

        n = corpus_rows(self.embed_dir)
        s = self.settings
        for out_shard in range(rank, max(1, math.ceil(n / s.rows_per_shard)), world_size):
            rows = merge_output_shard(self.data_dir, out_shard, n, s.index_shards, s.k, s.rows_per_shard)
            self.stat_update("rows", value=rows)
        return
        yield


class NeighborsFinalize(PipelineStep):
    """`finalize` phase: ids, recall of the merged graph against exact search, manifest."""

    name = "🕸️ kNN graph: recall and manifest"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings, seed: int = 0):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings, self.seed = embed_dir, data_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.sharded import finalize

        manifest = finalize(self.embed_dir, self.data_dir, self.settings.index_shards, self.settings, self.seed)
        self.stat_update("n", value=manifest["n"], unit="run")
        self.stat_update("recall_at_k_x1e6", value=int(round(manifest["recall_at_k"] * 1e6)), unit="run")
        return
        yield


@register_stage("neighbors", settings=NeighborsSettings, kind="global")
def build_neighbors(settings: NeighborsSettings, ctx: StageContext) -> GlobalPlan:
    """k-nearest-neighbour graph of the embeddings (FAISS; exact when small, tuned IVF/HNSW above)."""
    embed_dir, graph_dir = ctx.upstream_data_dir("embed", "embed"), ctx.data_dir("search")
    if settings.index_shards > 1:
        # every phase writes into the `search` folder, where readers of the graph look for it
        return GlobalPlan(phases=[
            Phase("search", [NeighborsShardSearch(embed_dir, graph_dir, settings, ctx.seed)], tasks=settings.index_shards,
                  gpus=settings.gpus),
            Phase("merge", [NeighborsMerge(embed_dir, graph_dir, settings)], tasks=max(1, ctx.tasks)),
            Phase("finalize", [NeighborsFinalize(embed_dir, graph_dir, settings, ctx.seed)], tasks=1),
        ])
    step = NeighborsSearch(embed_dir, graph_dir, settings, ctx.seed)
    return GlobalPlan(phases=[Phase("search", [step], tasks=1, gpus=settings.gpus)])
