"""`neighbors`: the k-nearest-neighbour graph of the embedded corpus, with its measured recall.

Settings and the datatrove steps that wrap the algorithms; the algorithms live beside them:
- `method: join` (the default, `join.py`): phases `quantize` (1 task: k-means lists, probe count
  tuned to the target recall, vectors rewritten by list), `search` (`tasks` tasks: dense similarity
  blocks of each group of lists against its candidate lists, top-k per row) and `finalize` (1 task:
  ids, graph shards, recall against exact search, manifest). Exact (float32, every row against every
  row) up to `flat_max_rows`. No task holds the corpus: ~0.3 GB per search task plus 16 B x k per row
  it owns. Blocks run on CUDA when torch sees a GPU (`device`).
- `method: ivf` (`search.py`, `sharded.py`): the FAISS index search (Flat / tuned IVF or HNSW / the
  recipe's factory string) in one task, or `index_shards` database shards searched by their own tasks
  and merged per row. The task holds the corpus and its index.
The graph is written in the `search` phase's data folder in one format (`store.py`) either way.
"""

from __future__ import annotations

from typing import Literal

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.neighbors.search import build_knn_graph


class NeighborsSettings(StageSettings):
    k: int = Field(20, ge=1, description="neighbours per document (the ICLM paper uses 50)")
    method: Literal["auto", "join", "ivf"] = Field(
        "auto",
        description="'join': self-join of dense similarity blocks over k-means lists, spread over `tasks` "
        "tasks (exact up to flat_max_rows); 'ivf': FAISS index search (Flat/IVF/HNSW) in one task, or "
        "`index_shards` tasks; 'auto': 'ivf' when `index` names a factory string or index_shards > 1, else 'join'",
    )
    index: str = Field(
        "auto",
        description="ivf: 'auto' (Flat when small, else IVF sized to memory) or a FAISS factory string, "
        "e.g. 'IVF4096,Flat', 'IVF32768,PQ64', 'HNSW32'",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="'auto': GPU when there is one (join: torch sees CUDA; ivf: faiss has a GPU)")
    flat_max_rows: int = Field(
        0, ge=0, description="exact search up to this many rows; 0 = 50,000 (ivf on a GPU: 2,000,000)")
    rows_per_list: int = Field(
        1000, ge=2, description="join: average rows per k-means list (lists = rows / this); a group of lists "
        "is one block of work")
    probes: int = Field(
        0, ge=0, description="join: candidate lists per list (the lists its rows voted nearest); 0 = tuned "
        "with the extra lists, the cheapest count reaching target_recall on the recall sample")
    extra_lists: int = Field(
        8, ge=0, description="join: each row is also compared with its own nearest this-many lists that its list's "
        "probes leave out (rows far from their list's centre: at 2M rows 20 probes + 0.9 such lists per row "
        "reached the recall of 77 probes); 0 = off")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="join: dtype of the block products; 'auto' = float16 on a GPU, bfloat16 on CPUs "
        "with native bfloat16 (AVX512-BF16/AMX), else float32. The best k x rerank candidates are re-scored "
        "in float32, so written similarities are exact either way")
    tasks: int = Field(0, ge=0, description="join: tasks of the `search` phase; 0 = the run's executor.tasks")
    nprobe: int = Field(0, ge=0, description="ivf: IVF lists probed; 0 = tuned up to target_recall")
    ef_search: int = Field(0, ge=0, description="ivf: HNSW efSearch; 0 = tuned up to target_recall")
    target_recall: float = Field(
        0.96, gt=0, le=1, description="recall@k the tuning (probes and extra lists, nprobe, efSearch) aims for (0.96 "
        "+ the margin: recall@10 0.975 on MiniLM vectors of three news corpora, >= 0.96 on the 1M benchmark)")
    recall_margin: float = Field(
        0.01, ge=0, description="tune until the sample's recall reaches target_recall + this (sampling error)"
    )
    recall_sample: int = Field(1000, ge=1, description="rows on which recall@k is tuned and measured against exact search")
    max_probe_fraction: float = Field(
        0.25, gt=0, le=1,
        description="ivf, auto index only: if the tuned nprobe exceeds this share of the IVF lists, IVF is no "
        "faster than exact search, so search exactly (Flat) instead",
    )
    rerank: int = Field(
        0, ge=0, description="re-score this many candidates per neighbour exactly; 0 = join: 2 (low-precision "
        "blocks); ivf: 4 for PQ/SQ8 codes, 1 otherwise")
    memory_gb: float = Field(0, ge=0, description="ivf: memory the index may use; 0 = half of the available memory")
    train_per_list: int = Field(
        0, ge=0, description="training vectors per k-means list (seeded sample); 0 = 120 for the join's lists, 40 "
        "for IVF. The join's probe count depends on the lists' quality: at 2M rows 40 per list needed 41 probes "
        "(2.1% of pairs compared), 120 needed 16 (0.9%) for the same recall")
    rows_per_shard: int = Field(100_000, ge=1, description="graph rows per knn_*.npz file")
    threads: int = Field(0, ge=0, description="CPU threads of FAISS and torch per task; 0 = all cores (join search: the cores shared "
                         "among the tasks running at once)")
    gpus: int = Field(0, ge=0, description="GPUs to request from a cluster executor (per task of the GPU phases)")
    index_shards: int = Field(
        1, ge=1,
        description="ivf: split the corpus into this many database shards, each indexed and searched by its own "
        "task, results merged per row; 1 = one index over the whole corpus in one task",
    )

    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "ivf" if (self.index != "auto" or self.index_shards > 1) else "join"


def set_threads(settings: NeighborsSettings, parallel: int = 1) -> None:
    """`threads` per task, or the cores shared among the `parallel` tasks running at once (threads
    that outnumber the cores spin-wait in every small torch/FAISS call: measured 10-100x slower)."""
    import os

    threads = settings.threads
    if not threads and parallel > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // parallel)
    if threads:
        import faiss
        import torch

        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)


class NeighborsQuantize(PipelineStep):
    """`quantize` phase of the join: k-means lists, probes tuned on the recall sample, vectors by list."""

    name = "🕸️ kNN graph: quantize"
    type = "🔢 - EMBED"
    _requires_dependencies = [("faiss", "faiss-cpu"), "torch"]

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings, seed: int = 0):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings, self.seed = embed_dir, data_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.quantize import quantize

        if rank != 0:
            return
        set_threads(self.settings)
        with self.track_time("quantize"):
            info = quantize(self.embed_dir, self.data_dir, self.settings, self.seed)
        for key in ("n", "lists", "probes", "extra_pairs", "comparisons", "list_rows_max"):
            self.stat_update(key, value=int(info[key]), unit="run")
        self.stat_update("tuned_recall_x1e6", value=int(round(info["tuned_recall"] * 1e6)), unit="run")
        return
        yield


class NeighborsJoin(PipelineStep):
    """`search` phase of the join: each task computes the top-k of the rows of its groups."""

    name = "🕸️ kNN graph: join blocks"
    type = "🔢 - EMBED"
    _requires_dependencies = ["torch"]

    def __init__(self, data_dir: str, settings: NeighborsSettings, parallel: int = 1):
        super().__init__()
        self.data_dir, self.settings, self.parallel = data_dir, settings, parallel

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.join import join_task

        set_threads(self.settings, self.parallel)
        with self.track_time("join"):
            result = join_task(self.data_dir, rank, world_size, self.settings)
        for key in ("groups", "rows", "comparisons"):
            self.stat_update(key, value=int(result[key]))
        return
        yield


class NeighborsJoinFinalize(PipelineStep):
    """`finalize` phase of the join: ids, graph shards, recall against exact search, manifest."""

    name = "🕸️ kNN graph: recall and manifest"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings, seed: int = 0):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings, self.seed = embed_dir, data_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.join import finalize_join

        if rank != 0:
            return
        manifest = finalize_join(self.embed_dir, self.data_dir, self.settings, self.seed)
        self.stat_update("n", value=manifest["n"], unit="run")
        self.stat_update("recall_at_k_x1e6", value=int(round(manifest["recall_at_k"] * 1e6)), unit="run")
        return
        yield


class NeighborsSearch(PipelineStep):
    """`method: ivf`, one task: the FAISS index search over the whole corpus (`search.py`)."""

    name = "🕸️ kNN graph"
    type = "🔢 - EMBED"
    _requires_dependencies = [("faiss", "faiss-cpu")]

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


class NeighborsShardSearch(PipelineStep):
    """`method: ivf`, `search` phase of the sharded graph: task j indexes database shard j and queries every row."""

    name = "🕸️ kNN graph: shard search"
    type = "🔢 - EMBED"

    def __init__(self, embed_dir: str, data_dir: str, settings: NeighborsSettings, seed: int = 0):
        super().__init__()
        self.embed_dir, self.data_dir, self.settings, self.seed = embed_dir, data_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.neighbors.sharded import search_one_shard

        set_threads(self.settings)
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
    """`finalize` phase of the sharded ivf search: ids, recall of the merged graph against exact search, manifest."""

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


@register_stage("neighbors", settings=NeighborsSettings, kind="global", requires=("embed",))
def build_neighbors(settings: NeighborsSettings, ctx: StageContext) -> GlobalPlan:
    """k-nearest-neighbour graph of the embeddings: a self-join of dense similarity blocks over k-means
    lists spread over tasks (exact when small), or FAISS IVF/HNSW search (`method: ivf`)."""
    embed_dir, graph_dir = ctx.upstream_data_dir("embed", "embed"), ctx.data_dir("search")
    gpus = settings.gpus
    if settings.resolved_method() == "join":
        tasks = settings.tasks or max(1, ctx.tasks)
        # every phase works in the `search` folder, where readers of the graph look for it
        return GlobalPlan(phases=[
            Phase("quantize", [NeighborsQuantize(embed_dir, graph_dir, settings, ctx.seed)], tasks=1, gpus=gpus),
            Phase("search", [NeighborsJoin(graph_dir, settings, min(max(1, ctx.workers), tasks))], tasks=tasks, gpus=gpus),
            Phase("finalize", [NeighborsJoinFinalize(embed_dir, graph_dir, settings, ctx.seed)], tasks=1),
        ])
    if settings.index_shards > 1:
        return GlobalPlan(phases=[
            Phase("search", [NeighborsShardSearch(embed_dir, graph_dir, settings, ctx.seed)], tasks=settings.index_shards,
                  gpus=gpus),
            Phase("merge", [NeighborsMerge(embed_dir, graph_dir, settings)], tasks=max(1, ctx.tasks)),
            Phase("finalize", [NeighborsFinalize(embed_dir, graph_dir, settings, ctx.seed)], tasks=1),
        ])
    step = NeighborsSearch(embed_dir, graph_dir, settings, ctx.seed)
    return GlobalPlan(phases=[Phase("search", [step], tasks=1, gpus=gpus)])
