"""The first half of the ICLM recipe through the real runner: embed -> neighbors -> semantic_dedup, with
planted near-copies removed from the final documents and reported in the stats."""

from __future__ import annotations

import glob
import gzip
import json
import os

import numpy as np
import pytest
import yaml

from stages.embed.store import load_embeddings
from stages.neighbors.store import load_knn_graph


@pytest.mark.slow
def test_iclm_recipe_first_half_removes_near_copies(tmp_path, shared_data, repo_root):
    from curate.api import read_documents, run_recipe

    docs, seen = [], set()
    with gzip.open(shared_data / "bbc_news.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            if i % 150 == 0 and d["text"][:300] not in seen:  # every topic, distinct articles
                seen.add(d["text"][:300])
                docs.append({"id": f"a{len(docs):03d}", "text": d["text"][:400], "label": d["label"]})
    copies = [{"id": f"z{j}", "text": docs[j]["text"] + " (updated)", "label": docs[j]["label"]} for j in (1, 4)]
    path = tmp_path / "in" / "docs.jsonl.gz"
    os.makedirs(path.parent)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for d in docs + copies:
            f.write(json.dumps(d) + "\n")

    recipe = yaml.safe_load((repo_root / "recipes" / "iclm.yaml").read_text())
    names = [next(iter(s)) for s in recipe["stages"]]
    recipe["stages"] = recipe["stages"][: names.index("semantic_dedup") + 1]  # this half of the recipe
    recipe["input"]["paths"] = str(path)
    result = run_recipe(recipe, output=tmp_path / "out", tasks=2, workers=1)

    kept = {d["id"] for d in read_documents(result.final_documents)}
    assert kept == {d["id"] for d in docs}
    out = result.output_dir
    ids, vectors, labels = load_embeddings(f"{out}/embed.embed/data")
    assert sorted(ids) == sorted(d["id"] for d in docs + copies) and labels is not None
    graph = load_knn_graph(f"{out}/neighbors.search/data")
    assert graph.ids == ids and graph.neighbors.shape == (len(ids), 20)  # k=20 > n-1: padded with -1
    assert (graph.neighbors[:, : len(ids) - 1] >= 0).all() and (graph.neighbors[:, len(ids) - 1 :] == -1).all()
    row = {i: r for r, i in enumerate(ids)}
    assert graph.neighbors[row["z1"], 0] == row["a001"] and float(graph.similarities[row["z1"], 0]) > 0.95
    stats = json.load(open(glob.glob(f"{out}/semantic_dedup.apply/stats.json")[0]))
    filt = next(s for s in stats if "dropped_semantic_duplicate" in s["stats"])
    assert filt["stats"]["dropped_semantic_duplicate"] == 2
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1, atol=1e-2)
