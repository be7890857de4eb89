"""Semantic dedup on real model embeddings of real text: planted near-copies and paraphrases are removed
(the original, with the smaller id, survives), distinct articles are all kept; the datatrove chain
embed -> neighbors -> dedup -> apply filter runs end to end."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from helpers import bbc_interleaved
from stages.dedup.common import ListedDuplicatesFilter
from stages.dedup.semantic import (
    DUPLICATES,
    SemanticDedupFind,
    SemanticDedupSettings,
    SemDeDupSettings,
    semantic_duplicate_groups,
    semdedup,
)
from stages.embed.encoder import encode_texts, load_model

# Hand-written paraphrase pairs (same content, reworded; MiniLM cosine 0.93-0.97, while the distinct
# articles below are at most 0.75 apart); each pair's first id is smaller.
PARAPHRASES = [
    ("para_1a", "The city council voted on Tuesday to close the old swimming pool next spring because repairs "
                "would cost more than building a new one.",
     "para_1b", "On Tuesday the city council voted to shut the old swimming pool next spring, as repairing it "
                "would cost more than building a new pool."),
    ("para_2a", "The chip maker said quarterly profit doubled as demand for its graphics processors from data "
                "centres kept rising.",
     "para_2b", "The chipmaker said its quarterly profit doubled because demand from data centres for its "
                "graphics processors continued to rise."),
    ("para_3a", "Heavy rain flooded hundreds of homes in the valley overnight and the main railway line was "
                "closed until the water recedes.",
     "para_3b", "Hundreds of homes in the valley were flooded by heavy overnight rain, and the main railway "
                "line is closed until the water goes down."),
]


def _distinct_bbc(shared_data, n: int, chars: int = 600) -> list[dict]:
    return [{"id": f"bbc_{d['id']}", "text": d["text"]} for d in bbc_interleaved(shared_data, n, chars, 200)]


def _near_copies(docs: list[dict]) -> list[tuple[dict, str]]:
    """Edited copies of four articles: (copy, id of its original)."""
    a, b, c, d = docs[0], docs[7], docs[14], docs[21]
    sentences = re.split(r"(?<=\.)\s+", c["text"])
    return [
        ({"id": "zz_copy_1", "text": a["text"].replace(" the ", " a ", 2) + " "}, a["id"]),
        ({"id": "zz_copy_2", "text": "  ".join(b["text"].split(" ")) + "\nShare this article."}, b["id"]),
        ({"id": "zz_copy_3", "text": " ".join(sentences[1:] + sentences[:1])}, c["id"]),
        ({"id": "zz_copy_4", "text": d["text"][: int(len(d["text"]) * 0.85)]}, d["id"]),
    ]


@pytest.fixture(scope="module")
def corpus(shared_data):
    """(ids, L2-normalised MiniLM vectors, {planted duplicate id: id that must survive}, distinct ids)."""
    base = _distinct_bbc(shared_data, 30)
    copies = _near_copies(base)
    docs = base + [c for c, _ in copies]
    planted = {c["id"]: orig for c, orig in copies}
    for ia, ta, ib, tb in PARAPHRASES:
        docs += [{"id": ia, "text": ta}, {"id": ib, "text": tb}]
        planted[ib] = ia
    model = load_model(threads=2)
    vectors = encode_texts(model, [d["text"] for d in docs], batch_size=16)
    ids = [d["id"] for d in docs]
    distinct = [i for i in ids if i not in planted]
    return ids, vectors, planted, distinct


def _knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from stages.neighbors.index import build_index, search_rows

    index = build_index(vectors, "Flat")
    D, I = search_rows(index, vectors, np.arange(len(vectors)), k)
    return I, D.astype(np.float16)


def test_iclm_semantic_dedup_removes_planted_and_keeps_distinct(corpus):
    ids, vectors, planted, distinct = corpus
    I, S = _knn(vectors, 10)
    dups, groups = semantic_duplicate_groups(ids, I, S, threshold=0.85)
    removed = dict(zip(dups["id"].to_list(), dups["kept_id"].to_list()))
    assert removed == planted
    assert set(groups["id"].to_list()) == set(planted) | set(planted.values())
    # Deterministic whatever the row order: shuffle rows, same answer.
    perm = np.random.default_rng(0).permutation(len(ids))
    inv = np.argsort(perm)
    I2 = np.where(I[perm] >= 0, inv[I[perm]], -1)
    dups2, _ = semantic_duplicate_groups([ids[p] for p in perm], I2, S[perm], threshold=0.85)
    assert dups2.equals(dups)


def test_semdedup_removes_planted_and_keeps_distinct(corpus):
    ids, vectors, planted, distinct = corpus
    dups, groups = semdedup(ids, vectors, eps=0.15, clusters=4, seed=0)
    assert dict(zip(dups["id"].to_list(), dups["kept_id"].to_list())) == planted
    assert set(distinct) & set(dups["id"].to_list()) == set()
    assert groups["cluster"].dtype == pl.Int64
    # A strict eps keeps the paraphrases (similar, not near-identical) but still finds the copies.
    strict, _ = semdedup(ids, vectors, eps=0.02, clusters=4, seed=0)
    assert set(strict["id"].to_list()) <= set(planted) and not any(i.startswith("para") for i in strict["id"])
    assert len(strict) >= 2


def test_greedy_keeps_an_item_whose_only_match_was_removed():
    from stages.dedup.semantic import _greedy_keep

    # a ~ b (0.95), b ~ c (0.95), a !~ c (0.8): b goes (matches kept a); c stays (its match b is gone).
    ang = np.deg2rad([0.0, 18.19, 36.87])
    x = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    kept, match, _ = _greedy_keep(x, threshold=0.9)
    assert kept.tolist() == [True, False, True] and match[1] == 0


def test_chain_from_graph_to_filter(tmp_path, corpus):
    """Graph on disk -> SemanticDedupFind -> ListedDuplicatesFilter in a datatrove pipeline."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor

    from stages.embed.store import write_shard
    from stages.neighbors.search import build_knn_graph
    from stages.neighbors.stage import NeighborsSettings

    ids, vectors, planted, distinct = corpus
    embed_dir, graph_dir, out = str(tmp_path / "embed"), str(tmp_path / "graph"), str(tmp_path / "groups")
    write_shard(embed_dir, 0, vectors.astype(np.float16), ids, None,
                {"model": "all-MiniLM-L6-v2", "dim": 384, "dtype": "float16", "normalized": True})
    build_knn_graph(embed_dir, graph_dir, NeighborsSettings(k=8))
    LocalPipelineExecutor([SemanticDedupFind("semantic_dedup", graph_dir, out, SemanticDedupSettings(threshold=0.85))],
                          tasks=1, logging_dir=str(tmp_path / "logs1")).run()
    docs = [Document(text="x", id=i) for i in ids]
    filt = ListedDuplicatesFilter(out, "semantic_duplicate", pattern=DUPLICATES)
    kept = [d.id for d in filt.run(iter(docs))]
    assert sorted(kept) == sorted(distinct)
    assert filt.stats["dropped_semantic_duplicate"].total == len(planted)
    # SemDeDup from the embed shards directly.
    out2 = str(tmp_path / "clusters")
    LocalPipelineExecutor([SemanticDedupFind("semdedup", embed_dir, out2, SemDeDupSettings(eps=0.15, clusters=4))],
                          tasks=1, logging_dir=str(tmp_path / "logs2")).run()
    assert set(pl.read_parquet(f"{out2}/duplicates.parquet")["id"].to_list()) == set(planted)
