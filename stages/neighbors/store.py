"""On-disk format of the `neighbors` stage (ordering and semantic dedup read it; keep it stable).

In the `search` phase's data folder (`ctx.stage_data_dir(ctx.latest("neighbors"), "search")`):
- `ids.parquet`: column `id` (string) and optional `label` (string), in global row order (the embed
  shards concatenated in rank order);
- `knn_{shard:05d}.npz`: `neighbors` int64 [m, k] (global row indices; -1 = no neighbour),
  `similarities` float16 [m, k] sorted descending (-inf where the neighbour is -1), `row_start`
  (the global row of the shard's first row); a row never lists itself;
- `manifest.json`: {"n", "k", "index", "recall_at_k", "metric": "ip", ...} with the recall sample's
  rows in `recall_sample_rows` so anyone can recompute the stated recall.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import numpy as np

MANIFEST = "manifest.json"
IDS = "ids.parquet"


@dataclass
class KnnGraph:
    ids: list[str]
    neighbors: np.ndarray  # int64 [n, k]
    similarities: np.ndarray  # float16 [n, k]
    labels: list | None = None

    @property
    def k(self) -> int:
        return int(self.neighbors.shape[1])


def knn_shard_path(data_dir: str, shard: int) -> str:
    return os.path.join(data_dir, f"knn_{shard:05d}.npz")


def write_knn_shard(data_dir: str, shard: int, row_start: int, neighbors: np.ndarray, similarities: np.ndarray) -> None:
    """An `.npz` that `np.load` reads, written with fixed zip timestamps so reruns are byte-identical
    (`np.savez` stamps the current time into the archive)."""
    import zipfile

    from curate.atomic import atomic_path

    arrays = {
        "neighbors": np.ascontiguousarray(neighbors, dtype=np.int64),
        "similarities": np.ascontiguousarray(similarities, dtype=np.float16),
        "row_start": np.asarray(row_start, dtype=np.int64),
    }
    with atomic_path(knn_shard_path(data_dir, shard)) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)


def read_manifest(data_dir: str) -> dict:
    with open(os.path.join(data_dir, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def load_knn_graph(data_dir: str) -> KnnGraph:
    """The whole graph in memory: shards concatenated by `row_start`, checked to cover every row."""
    import polars as pl

    table = pl.read_parquet(os.path.join(data_dir, IDS))
    manifest = read_manifest(data_dir)
    n, k = int(manifest["n"]), int(manifest["k"])
    neighbors = np.full((n, k), -1, dtype=np.int64)
    similarities = np.full((n, k), -np.inf, dtype=np.float16)
    covered = 0
    for path in sorted(glob.glob(os.path.join(data_dir, "knn_*.npz"))):
        with np.load(path) as z:
            start = int(z["row_start"])
            m = len(z["neighbors"])
            neighbors[start : start + m] = z["neighbors"]
            similarities[start : start + m] = z["similarities"]
            covered += m
    if covered != n or table.height != n:
        raise ValueError(f"{data_dir}: graph covers {covered} rows, ids {table.height}, manifest n={n}")
    labels = table["label"].to_list() if "label" in table.columns else None
    return KnnGraph(table["id"].to_list(), neighbors, similarities, labels)
