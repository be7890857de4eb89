"""`neighbors` with `index_shards` > 1: database shards searched by separate datatrove tasks and
merged per row. Flat shards must give the exact graph; IVF shards must meet the recall target."""

from __future__ import annotations

import os

import numpy as np
from datatrove.executor import LocalPipelineExecutor

from stages.neighbors.sharded import merge_top_k, shard_bounds
from stages.neighbors.search import build_knn_graph
from stages.neighbors.stage import NeighborsFinalize, NeighborsMerge, NeighborsSettings, NeighborsShardSearch
from stages.neighbors.store import load_knn_graph, read_manifest
from tests.test_neighbors_graph import _embed_dir, _exact, clustered_vectors


def _run_sharded(embed_dir: str, graph_dir: str, settings: NeighborsSettings, tmp_path, merge_tasks: int = 2):
    phases = [
        ("search", NeighborsShardSearch(embed_dir, graph_dir, settings, 0), settings.index_shards),
        ("merge", NeighborsMerge(embed_dir, graph_dir, settings), merge_tasks),
        ("finalize", NeighborsFinalize(embed_dir, graph_dir, settings, 0), 1),
    ]
    for name, step, tasks in phases:
        LocalPipelineExecutor([step], tasks=tasks, workers=1, logging_dir=str(tmp_path / f"logs_{name}")).run()


def test_shard_bounds_cover_the_corpus_once():
    for n, s in ((10, 3), (7, 7), (3, 5), (100_000, 4)):
        b = shard_bounds(n, s)
        assert b[0][0] == 0 and b[-1][1] == n and all(b[i][1] == b[i + 1][0] for i in range(s - 1))
        assert max(hi - lo for lo, hi in b) - min(hi - lo for lo, hi in b) <= 1


def test_merge_keeps_best_k_with_deterministic_ties():
    sims = [np.array([[0.9, 0.5, -np.inf]]), np.array([[0.7, 0.5, 0.1]])]
    rows = [np.array([[4, 8, -1]]), np.array([[2, 3, 1]])]
    D, I = merge_top_k(sims, rows, 3)
    assert I.tolist() == [[4, 2, 3]] and np.allclose(D, [[0.9, 0.7, 0.5]])


def test_flat_shards_give_the_exact_graph(tmp_path):
    x = clustered_vectors(2500, 32, 25, 0.6, seed=3)
    x[2400] = x[7]  # a duplicate in another database shard
    embed_dir = _embed_dir(tmp_path, x)
    graph_dir = str(tmp_path / "graph")
    settings = NeighborsSettings(k=8, index="Flat", index_shards=3, rows_per_shard=600)
    _run_sharded(embed_dir, graph_dir, settings, tmp_path)
    g = load_knn_graph(graph_dir)
    exact_I, exact_S = _exact(x, np.arange(len(x)), 8)
    np.testing.assert_allclose(g.similarities.astype(np.float32), exact_S, atol=2e-3)
    assert (g.neighbors == exact_I).mean() > 0.995
    assert not (g.neighbors == np.arange(len(x))[:, None]).any()
    assert g.neighbors[7, 0] == 2400 and g.neighbors[2400, 0] == 7
    manifest = read_manifest(graph_dir)
    assert manifest["index_shards"] == 3 and manifest["recall_at_k"] == 1.0 and manifest["exact"]
    assert not os.path.exists(os.path.join(graph_dir, "partial"))  # the partial lists were removed
    # the same graph as the one-task path
    build_knn_graph(embed_dir, str(tmp_path / "one"), NeighborsSettings(k=8, rows_per_shard=600))
    one = load_knn_graph(str(tmp_path / "one"))
    assert (one.neighbors == g.neighbors).mean() > 0.995


def test_ivf_shards_meet_the_recall_target(tmp_path):
    x = clustered_vectors(12_000, 32, 60, 0.5, seed=4)
    embed_dir = _embed_dir(tmp_path, x)
    graph_dir = str(tmp_path / "graph")
    settings = NeighborsSettings(k=10, index="IVF32,Flat", index_shards=2, target_recall=0.9, recall_sample=300,
                                 rows_per_shard=5000)
    _run_sharded(embed_dir, graph_dir, settings, tmp_path)
    manifest = read_manifest(graph_dir)
    assert all(s["search_parameter"] == "nprobe" for s in manifest["shards"])
    g = load_knn_graph(graph_dir)
    rows = np.asarray(manifest["recall_sample_rows"])
    exact_I, _ = _exact(x, rows, 10)
    hits = np.mean([len(np.intersect1d(a, e)) / 10 for a, e in zip(g.neighbors[rows], exact_I)])
    assert abs(hits - manifest["recall_at_k"]) < 0.01  # the stated recall is the true one
    assert manifest["recall_at_k"] >= 0.88


def test_cluster_recipes_spread_the_knn_join_onto_gpu_tasks():
    """The shipped cluster recipes plan the self-join: quantize, 8 join tasks with GPUs, finalize."""
    from curate.recipe import load_recipe
    from curate.runner import plan_run

    for name in ("iclm_slurm", "iclm_ray"):
        phases = {p.id: p for p in plan_run(load_recipe(name)).phases}
        assert phases["neighbors.search"].tasks == 8 and phases["neighbors.search"].gpus == 1
        assert phases["neighbors.quantize"].tasks == 1 and phases["neighbors.quantize"].gpus == 1
        assert phases["embed.embed"].gpus == 1 and phases["order.paths"].gpus == 0
        assert phases["neighbors.finalize"].tasks == 1 and "neighbors.merge" not in phases
