"""`order`: arrange the kept documents along an approximate maximum-similarity path (ICLM ordering).

Phases (each a datatrove executor; the data lives under `OUT/<stage_id>.<phase>/data`):
1. `ids` (sharded, reads the current documents): the ids still present after semantic dedup.
2. `partition` (1 task): restricts the upstream kNN graph (`neighbors` stage) to those ids and splits
   them into partitions with FAISS k-means (one partition when the corpus is small); documents with
   no vector are listed apart and end up at the end of the path, counted.
3. `paths` (one task per group of partitions): orders each partition independently.
4. `stitch` (1 task): orders the partitions and orients them (`stitch`: `dp` or `ortools`, see
   `stages/order/stitch.py`), writes `order.parquet` (position, id; `stages/order/store.py`) and
   `quality.json` (MAC, bound ratio vs U2, kNN-edge fraction, label agreement, similarity at the
   seams between partitions; computed in `stages/order/quality.py`).
The document set itself is unchanged; `pack` reads the order through `stages/order/store.py`.
The algorithms are `OrderingAlgorithm`s (`stages/order/algorithms.py`); this wrapper only reads
their inputs, calls them and writes what they return.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Literal

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.atomic import write_json_atomic, write_numpy_atomic, write_parquet_atomic
from curate.figures import downsample, histogram, write_report_section
from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.neighbors.rowfiles import RowSubset
from stages.order.algorithms import ALGORITHMS
from stages.order.store import ORDER_FILE, ORDER_PHASE, QUALITY_FILE, order_path, write_order


class OrderSettings(StageSettings):
    algorithm: Literal["edge_matching", "iclm_greedy", "cluster_capped_walk", "random"] = Field(
        "edge_matching",
        description="edge_matching (default: greedy edge matching + local search), iclm_greedy (paper "
        "Algorithm 1), cluster_capped_walk (the paper's released code), random",
    )
    partition_size: int = Field(
        50_000, ge=0, description="documents per k-means partition ordered on its own (0 = never partition)"
    )
    search_k: int = Field(10, ge=1, description="kNN candidates per document in the local search")
    kicks_per_document: float = Field(
        20.0, ge=0, description="iterated-local-search kicks per document (quality vs time; 0 = plain local search)"
    )
    max_kicks: int = Field(10_000, ge=0, description="cap on kicks per partition (bounds time on big partitions)")
    stitch: Literal["dp", "ortools"] = Field(
        "dp", description="how partitions are ordered and oriented: dp (centroid path + exact directions; "
        "repeatable) or ortools (OR-tools routing, guided local search over the seams under a time limit: "
        "higher similarity at the seams, see stages/order/stitch.py)",
    )
    stitch_time_limit_s: float = Field(2.0, gt=0, description="ortools stitch: time limit of the guided local search")
    stitch_solutions: int = Field(
        0, ge=0, description="ortools stitch: stop after this many solutions (0 = at the time limit only; set it "
        "for byte-identical reruns)",
    )
    seed: int | None = Field(None, description="seed of the ordering (None = the run's seed)")


def _load_inputs(ctx_paths: dict):
    """(kNN table on disk, vectors memory-mapped in the table's row order) from the upstream stages.

    Nothing here is read into memory: each phase reads only the rows it works on.
    """
    from stages.embed.store import load_embeddings
    from stages.neighbors.store import KnnTable

    table = KnnTable(ctx_paths["neighbors"])
    # check=False: the neighbors stage already refused bad rows in these files; checking again
    # would read every vector in every ordering task
    emb_ids, vectors, _ = load_embeddings(ctx_paths["embed"], mmap=True, check=False)
    graph_ids = table.ids()
    if list(emb_ids) != graph_ids:
        raise ValueError(
            f"order: the embeddings in {ctx_paths['embed']} and the kNN graph in {ctx_paths['neighbors']} list "
            "different documents (was one of them rerun on its own?); rerun the neighbors stage"
        )
    return table, graph_ids, vectors


def _labels(ctx_paths: dict, table) -> list | None:
    from stages.embed.store import load_embeddings

    labels = table.labels()
    return labels if labels is not None else load_embeddings(ctx_paths["embed"], mmap=True, check=False)[2]


class OrderCollectIds(PipelineStep):
    name = "🧭 order: collect ids"
    type = "🔢 - ORDER"

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        ids = []
        for doc in data:
            ids.append(str(doc.id))
            self.stat_update("documents")
        write_parquet_atomic(pl.DataFrame({"id": ids}, schema={"id": pl.String}), os.path.join(self.output_dir, f"{rank:05d}.parquet"))
        return
        yield


class OrderPartition(PipelineStep):
    name = "🧭 order: partition"
    type = "🔢 - ORDER"

    def __init__(self, ids_dir: str, inputs: dict, output_dir: str, settings: OrderSettings, seed: int):
        super().__init__()
        self.ids_dir, self.inputs, self.output_dir, self.settings, self.seed = ids_dir, inputs, output_dir, settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        from stages.order.graph import RestrictedKnnTable
        from stages.order.partition import assign_partitions, refine_partitions_by_graph

        kept = pl.read_parquet(sorted(glob.glob(os.path.join(self.ids_dir, "*.parquet"))))["id"] if glob.glob(
            os.path.join(self.ids_dir, "*.parquet")) else pl.Series("id", [], dtype=pl.String)
        table, graph_ids, vectors = _load_inputs(self.inputs)
        # explicit types: with no vectors at all both columns would otherwise be typed null
        rows_of = pl.DataFrame({"id": graph_ids, "row": np.arange(len(graph_ids), dtype=np.int64)},
                               schema={"id": pl.String, "row": pl.Int64})
        joined = pl.DataFrame({"id": kept}, schema={"id": pl.String}).join(rows_of, on="id", how="left")
        missing = joined.filter(pl.col("row").is_null())["id"].sort()
        rows = np.sort(joined["row"].drop_nulls().to_numpy().astype(np.int64))
        self.stat_update("documents", value=len(kept))
        self.stat_update("documents_without_vector", value=len(missing))
        self.stat_update("removed_since_graph", value=len(graph_ids) - len(rows))
        size = self.settings.partition_size
        if not ALGORITHMS[self.settings.algorithm].partitioned or size == 0 or len(rows) <= size:
            part = np.zeros(len(rows), dtype=np.int64)
        else:
            part = assign_partitions(RowSubset(vectors, rows), size, self.seed)
            part = refine_partitions_by_graph(part, RestrictedKnnTable(table, rows))
        self.stat_update("partitions", value=int(part.max()) + 1 if len(part) else 0)
        write_parquet_atomic(pl.DataFrame({"row": rows, "partition": part}), os.path.join(self.output_dir, "members.parquet"))
        write_parquet_atomic(pl.DataFrame({"id": missing}), os.path.join(self.output_dir, "without_vector.parquet"))
        return
        yield


class OrderPaths(PipelineStep):
    name = "🧭 order: order partitions"
    type = "🔢 - ORDER"

    def __init__(self, partition_dir: str, inputs: dict, output_dir: str, settings: OrderSettings, seed: int):
        super().__init__()
        self.partition_dir, self.inputs, self.output_dir = partition_dir, inputs, output_dir
        self.settings, self.seed = settings, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        from stages.order.graph import RestrictedKnnTable
        from stages.order.partition import order_restricted

        members = pl.read_parquet(os.path.join(self.partition_dir, "members.parquet"))
        parts = members["partition"].to_numpy()
        mine = [p for p in range(int(parts.max()) + 1 if len(parts) else 0) if p % world_size == rank]
        if not mine:
            return
        table, _, vectors = _load_inputs(self.inputs)
        algorithm = ALGORITHMS[self.settings.algorithm]
        options = algorithm.options_from(self.settings)
        rows_all = members["row"].to_numpy()
        for p in mine:
            rows = rows_all[parts == p]
            n = len(rows)
            with self.track_time("partition"):
                nb, ns = RestrictedKnnTable(table, rows).rows(0, n)  # this partition's rows only
                path = order_restricted(algorithm, vectors, nb, ns, rows, self.seed + p, **options)
                del nb, ns
            write_numpy_atomic(path.astype(np.int64), os.path.join(self.output_dir, f"path_{p:05d}.npy"))
            self.stat_update("partitions")
            self.stat_update("documents", value=n)
        return
        yield

    def warm_up(self) -> None:
        """Load numba and the algorithm's compiled kernels by ordering a tiny made-up partition with the
        same array types as `run` (numba's start costs ~0.8 s in a fresh process, more than the whole
        phase on a small run). Changes nothing `run` computes: the kernels seed their own random state,
        per thread. A small in-process run calls this in the background (`curate/warm_up.py`)."""
        from stages.order.partition import order_restricted

        n, k = 16, 4
        rng = np.random.default_rng(0)
        vectors = rng.random((n, 8), dtype=np.float32)
        neighbors = (np.arange(n, dtype=np.int64)[:, None] + np.arange(1, k + 1, dtype=np.int64)) % n
        similarities = -np.sort(-rng.random((n, k), dtype=np.float32), axis=1)
        algorithm = ALGORITHMS[self.settings.algorithm]
        order_restricted(algorithm, vectors, neighbors, similarities, np.arange(n, dtype=np.int64), self.seed,
                         **algorithm.options_from(self.settings))


class OrderStitch(PipelineStep):
    name = "🧭 order: stitch"
    type = "🔢 - ORDER"

    def __init__(self, partition_dir: str, paths_dir: str, inputs: dict, output_dir: str, settings: OrderSettings,
                 seed: int, neighbors_manifest: str):
        super().__init__()
        self.partition_dir, self.paths_dir, self.inputs, self.output_dir = partition_dir, paths_dir, inputs, output_dir
        self.settings, self.seed, self.neighbors_manifest = settings, seed, neighbors_manifest

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        from stages.order.graph import RestrictedKnnTable
        from stages.order.quality import stitched_path_quality
        from stages.order.stitch import apply_plan, plan_stitch, seam_similarities

        st = self.settings
        members = pl.read_parquet(os.path.join(self.partition_dir, "members.parquet"))
        without = pl.read_parquet(os.path.join(self.partition_dir, "without_vector.parquet"))["id"].to_list()
        table, graph_ids, vectors = _load_inputs(self.inputs)
        labels = _labels(self.inputs, table)
        nparts = int(members["partition"].max()) + 1 if members.height else 0
        paths = [np.load(os.path.join(self.paths_dir, f"path_{p:05d}.npy")) for p in range(nparts)]
        paths = [p for p in paths if len(p)]
        with self.track_time("stitch"):
            plan = plan_stitch(vectors, paths, self.seed, st.stitch, st.stitch_time_limit_s, st.stitch_solutions) if paths else []
        path = apply_plan(paths, plan) if paths else np.empty(0, dtype=np.int64)
        seams = seam_similarities(vectors, paths, plan) if len(plan) > 1 else np.empty(0)
        rows = np.sort(members["row"].to_numpy())
        if not (len(path) == len(rows) and np.array_equal(np.sort(path), rows)):
            raise RuntimeError("order: stitched path is not a permutation of the kept documents")
        ids = [graph_ids[r] for r in path] + list(without)
        write_order(ids, self.output_dir)
        # quality, on the kept documents that have vectors
        figures, adjacent = stitched_path_quality(vectors, path, rows, RestrictedKnnTable(table, rows).chunks(), labels)
        try:
            with open(self.neighbors_manifest, encoding="utf-8") as f:
                man = json.load(f)
        except OSError:
            man = {}
        quality = {
            "algorithm": st.algorithm, "stitch": st.stitch, "documents": len(ids),
            "documents_without_vector": len(without), "partitions": nparts, **figures,
            "bound_exact": bool(man.get("index", "").lower().startswith("flat") or man.get("exact", False)),
            "seams": len(seams), "seam_mac": float(seams.mean()) if len(seams) else None,
        }
        write_json_atomic(quality, os.path.join(self.output_dir, QUALITY_FILE))
        self._publish(quality, adjacent, vectors, rows)
        self.stat_update("documents", value=len(ids))
        self.stat_update("documents_without_vector", value=len(without))
        for key in ("mac", "bound_ratio", "knn_edge_fraction", "label_agreement"):
            if quality.get(key) is not None:
                self.stat_update(f"{key}_x1e6", value=int(round(quality[key] * 1e6)))
        return
        yield

    def _publish(self, quality: dict, adjacent: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Figures and plots for `curate report`: adjacent similarity along the path and its
        histogram against the same documents in a random order."""
        from stages.order.quality import random_order_similarities

        random_adj = random_order_similarities(vectors, rows, self.seed)
        figures = {k: quality[k] for k in ("documents", "mac", "bound_ratio", "knn_edge_fraction",
                                            "label_agreement", "label_chance") if quality.get(k) is not None}
        figures["mac_random_order"] = float(random_adj.mean()) if len(random_adj) else 0.0
        hist = histogram(adjacent)
        hist.update(reference=histogram(random_adj)["counts"], x_label="cosine similarity of adjacent documents",
                    y_label="adjacent pairs", bars="the path", line="a random order")
        along = {"values": downsample(adjacent), "x_label": "position in the path (documents)",
                 "y_label": "cosine similarity to the next", "x_max": len(adjacent)}
        write_report_section(
            self.output_dir, f"Ordering quality ({quality['algorithm']})", figures,
            histograms={"similarity of adjacent documents (bars) vs a random order (line)": hist},
            series={"similarity of adjacent documents along the path": along},
        )


@register_stage("order", settings=OrderSettings, kind="global", requires=("embed", "neighbors"))
def build_order(settings: OrderSettings, ctx: StageContext) -> GlobalPlan:
    """Order documents along an approximate maximum-similarity path through the kNN graph (ICLM)."""
    inputs = {"embed": ctx.upstream_data_dir("embed", "embed"), "neighbors": ctx.upstream_data_dir("neighbors", "search")}
    seed = ctx.seed if settings.seed is None else settings.seed
    ids_dir, part_dir, paths_dir, out_dir = (ctx.data_dir(p) for p in ("ids", "partition", "paths", ORDER_PHASE))
    return GlobalPlan(phases=[
        Phase("ids", [OrderCollectIds(ids_dir)], reads_documents=True),
        Phase("partition", [OrderPartition(ids_dir, inputs, part_dir, settings, seed)], tasks=1),
        Phase("paths", [OrderPaths(part_dir, inputs, paths_dir, settings, seed)], tasks=max(1, ctx.tasks)),
        Phase(ORDER_PHASE, [OrderStitch(part_dir, paths_dir, inputs, out_dir, settings, seed,
                                        os.path.join(inputs["neighbors"], "manifest.json"))], tasks=1),
    ], outputs={ORDER_FILE: order_path(out_dir)})
