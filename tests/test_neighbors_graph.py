"""`neighbors`: the graph equals exact search on small corpora, the approximate index states its true
recall, self-matches never appear, and GPU paths are chosen only when a GPU exists."""

from __future__ import annotations

import os

import numpy as np
import pytest

from stages.embed.store import write_shard
from stages.neighbors import index as knn
from stages.neighbors.search import build_knn_graph
from stages.neighbors.stage import NeighborsSettings
from stages.neighbors.store import load_knn_graph, read_manifest


def clustered_vectors(n: int, d: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d))
    x = centers[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def _embed_dir(tmp_path, x: np.ndarray, shards: int = 3, dtype: str = "float32") -> str:
    out = str(tmp_path / "embed")
    bounds = np.linspace(0, len(x), shards + 1).astype(int)
    for rank in range(shards):
        a, b = bounds[rank], bounds[rank + 1]
        write_shard(out, rank, x[a:b].astype(dtype), [f"doc{i:06d}" for i in range(a, b)],
                    [f"c{i % 3}" for i in range(a, b)], {"model": "synthetic", "dim": x.shape[1], "dtype": dtype,
                                                         "normalized": True})
    return out


def _exact(x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in numpy, self excluded: the independent reference."""
    sims = x[rows] @ x.T
    sims[np.arange(len(rows)), rows] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, 1)


def test_small_corpus_graph_equals_exact_search(tmp_path):
    x = clustered_vectors(3000, 48, 30, 0.6, seed=1)
    x[2999] = x[5]  # an exact duplicate: its self-match must still be excluded
    graph_dir = str(tmp_path / "graph")
    manifest = build_knn_graph(_embed_dir(tmp_path, x), graph_dir, NeighborsSettings(k=10, rows_per_shard=700))
    assert manifest["index"] == "Flat" and manifest["device"] == ("gpu" if knn.select_faiss_device() == "gpu" else "cpu")
    g = load_knn_graph(graph_dir)
    assert g.ids == [f"doc{i:06d}" for i in range(3000)] and g.labels[:4] == ["c0", "c1", "c2", "c0"]
    assert g.neighbors.dtype == np.int64 and g.similarities.dtype == np.float16
    assert not (g.neighbors == np.arange(3000)[:, None]).any()
    assert np.all(np.diff(g.similarities.astype(np.float32), axis=1) <= 0)
    exact_I, exact_S = _exact(x, np.arange(3000), 10)
    np.testing.assert_allclose(g.similarities.astype(np.float32), exact_S, atol=2e-3)
    same = (g.neighbors == exact_I).mean()
    assert same > 0.995  # differences only where two similarities tie within float rounding
    assert g.neighbors[5, 0] == 2999 and g.neighbors[2999, 0] == 5
    assert manifest["recall_at_k"] == 1.0 and len(os.listdir(graph_dir)) == 2 + 5  # ids, manifest, 5 shards


def test_stated_recall_of_approximate_index_is_the_true_recall(tmp_path):
    x = clustered_vectors(20000, 32, 200, 0.9, seed=2)
    graph_dir = str(tmp_path / "graph")
    settings = NeighborsSettings(k=10, index="IVF256,Flat", nprobe=2, recall_sample=400, rows_per_shard=6000)
    manifest = build_knn_graph(_embed_dir(tmp_path, x), graph_dir, settings, seed=7)
    g = load_knn_graph(graph_dir)
    rows = np.asarray(manifest["recall_sample_rows"])
    assert len(rows) == 400 and manifest["search_parameter"] == "nprobe" and manifest["search_parameter_value"] == 2
    exact_I, _ = _exact(x, rows, 10)
    recomputed = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(g.neighbors[rows], exact_I)])
    assert recomputed == pytest.approx(manifest["recall_at_k"], abs=1e-9)
    assert 0.3 < recomputed < 0.99  # nprobe=2 of 256 lists really is approximate
    # The sample is representative: recall on other rows agrees within sampling error.
    others = np.random.default_rng(0).choice(20000, 400, replace=False)
    exact_o, _ = _exact(x, others, 10)
    other_recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(g.neighbors[others], exact_o)])
    assert abs(other_recall - recomputed) < 0.06


def test_tuning_raises_nprobe_until_target_recall(tmp_path):
    x = clustered_vectors(20000, 32, 200, 0.9, seed=3)
    settings = NeighborsSettings(k=10, index="IVF256,Flat", target_recall=0.95, recall_sample=300)
    manifest = build_knn_graph(_embed_dir(tmp_path, x), str(tmp_path / "g"), settings)
    trace = manifest["tuning_trace"]
    assert manifest["recall_at_k"] >= 0.96  # target + the default margin of 0.01
    values = [v for v, _ in trace]
    assert values[0] == 8 and all(b == round(a * 1.5) for a, b in zip(values, values[1:]))
    assert all(r < 0.96 for _, r in trace[:-1])


def test_hnsw_factory_string_is_tuned_and_reported(tmp_path):
    x = clustered_vectors(5000, 32, 50, 0.8, seed=4)
    settings = NeighborsSettings(k=5, index="HNSW16", recall_sample=200, target_recall=0.97)
    manifest = build_knn_graph(_embed_dir(tmp_path, x, dtype="float16"), str(tmp_path / "g"), settings)
    assert manifest["index"] == "HNSW16" and manifest["search_parameter"] == "efSearch"
    assert manifest["device"] == "cpu"  # HNSW has no GPU implementation
    assert manifest["recall_at_k"] >= 0.97


def test_index_choice_follows_size_and_memory():
    assert knn.choose_index_key(10_000, 384, 1e9, 50_000) == "Flat"
    big = knn.choose_index_key(1_000_000, 384, 64 * 2**30, 50_000)
    assert big.startswith("IVF") and big.endswith(",Flat")
    assert knn.choose_index_key(1_000_000, 384, 1.5 * 2**30, 50_000).endswith("SQfp16")
    assert ",PQ" in knn.choose_index_key(1_000_000, 384, 0.9 * 2**30, 50_000)
    assert knn.ivf_lists_for(1_000_000) == 2048 and knn.ivf_lists_for(100_000) == 512


def test_gpu_paths_only_when_a_gpu_exists():
    import faiss

    assert knn.select_faiss_device(num_gpus=0, has_gpu_api=True) == "cpu"
    assert knn.select_faiss_device(num_gpus=2, has_gpu_api=False) == "cpu"  # faiss-cpu build
    assert knn.select_faiss_device(num_gpus=1, has_gpu_api=True, index_key="HNSW32") == "cpu"
    assert knn.select_faiss_device(num_gpus=1, has_gpu_api=True, index_key="IVF1024,PQ32") == "gpu"
    here = faiss.get_num_gpus() > 0 and hasattr(faiss, "StandardGpuResources")
    assert knn.select_faiss_device() == ("gpu" if here else "cpu")


def test_tiny_corpus_pads_missing_neighbours(tmp_path):
    x = clustered_vectors(4, 8, 2, 0.5, seed=5)
    manifest = build_knn_graph(_embed_dir(tmp_path, x, shards=2), str(tmp_path / "g"), NeighborsSettings(k=6))
    g = load_knn_graph(str(tmp_path / "g"))
    assert manifest["n"] == 4 and g.neighbors.shape == (4, 6)
    assert (g.neighbors[:, :3] >= 0).all() and (g.neighbors[:, 3:] == -1).all()
    assert np.isneginf(g.similarities[:, 3:].astype(np.float32)).all()
    assert read_manifest(str(tmp_path / "g"))["metric"] == "ip"


def test_auto_index_falls_back_to_exact_when_ivf_cannot_beat_it(tmp_path):
    # Structureless vectors: IVF needs most of its lists for the target recall, so exact search wins.
    x = np.random.default_rng(6).standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    settings = NeighborsSettings(k=5, flat_max_rows=1000, recall_sample=200)
    manifest = build_knn_graph(_embed_dir(tmp_path, x), str(tmp_path / "g"), settings)
    assert manifest["fell_back_to_exact"] and manifest["index"] == "Flat" and manifest["recall_at_k"] == 1.0
    assert manifest["tuning_trace"][-1][0] > 0.25 * knn.ivf_lists_for(3000)
    exact_I, _ = _exact(x, np.arange(3000), 5)
    assert (load_knn_graph(str(tmp_path / "g")).neighbors == exact_I).mean() > 0.999


def test_rerun_gives_byte_identical_graph(tmp_path):
    x = clustered_vectors(6000, 32, 60, 0.8, seed=8)
    embed_dir = _embed_dir(tmp_path, x)
    settings = NeighborsSettings(k=5, index="IVF64,Flat", recall_sample=100, rows_per_shard=2500)
    outs = [str(tmp_path / f"g{i}") for i in range(2)]
    for out in outs:
        build_knn_graph(embed_dir, out, settings, seed=3)
    for name in sorted(os.listdir(outs[0])):
        assert open(os.path.join(outs[0], name), "rb").read() == open(os.path.join(outs[1], name), "rb").read(), name
