"""On-disk format of the `embed` stage (other stages read it; keep it stable).

In the embed phase's data folder (`ctx.stage_data_dir(ctx.latest("embed"), "embed")`):
- `{rank:05d}.npy`: float16 or float32 array [n, d], rows L2-normalised, finite and non-zero (a document
  whose vector is NaN/inf/zero gets no row; `load_embeddings` refuses a shard that breaks this);
- `{rank:05d}.ids.parquet`: column `id` (string) and, when the run has a label key, `label` (string,
  null where a document has none), in the same row order as the vectors;
- `manifest.json`: {"model", "dim", "dtype", "normalized": true, ...}.
A task writes its three files atomically (vectors first, ids last), so a shard whose ids file exists
is complete. Shards concatenated in rank order give the corpus' global row order.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

MANIFEST = "manifest.json"
_SHARD = re.compile(r"^(\d{5})\.ids\.parquet$")


def shard_paths(data_dir: str, rank: int) -> tuple[str, str]:
    """(vectors path, ids path) of task `rank`'s shard."""
    return os.path.join(data_dir, f"{rank:05d}.npy"), os.path.join(data_dir, f"{rank:05d}.ids.parquet")


def write_shard(data_dir: str, rank: int, vectors: np.ndarray, ids: list[str], labels: list | None,
                manifest: dict) -> None:
    import polars as pl

    from curate.atomic import write_json_atomic, write_numpy_atomic, write_parquet_atomic

    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    vec_path, ids_path = shard_paths(data_dir, rank)
    write_numpy_atomic(np.ascontiguousarray(vectors), vec_path)
    columns = {"id": pl.Series("id", [str(i) for i in ids], dtype=pl.String)}
    if labels is not None:
        columns["label"] = pl.Series("label", [None if v is None else str(v) for v in labels], dtype=pl.String)
    # Every task writes the same manifest (it depends only on the settings), atomically.
    write_json_atomic(manifest, os.path.join(data_dir, MANIFEST))
    write_parquet_atomic(pl.DataFrame(columns), ids_path)


def read_manifest(data_dir: str) -> dict:
    with open(os.path.join(data_dir, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def list_shards(data_dir: str) -> list[int]:
    """Ranks of the complete shards in `data_dir`, ascending."""
    ranks = []
    for path in glob.glob(os.path.join(data_dir, "*.ids.parquet")):
        m = _SHARD.match(os.path.basename(path))
        if m:
            ranks.append(int(m.group(1)))
    return sorted(ranks)


def usable_rows(vectors: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(mask of rows that are finite and non-zero, count of non-finite rows, count of zero rows)."""
    v = np.asarray(vectors, dtype=np.float32)
    finite = np.isfinite(v).all(axis=1) if v.size else np.ones(len(v), dtype=bool)
    nonzero = np.zeros(len(v), dtype=bool)
    nonzero[finite] = np.abs(v[finite]).max(axis=1) > 0 if v.shape[1] else False
    return finite & nonzero, int((~finite).sum()), int((finite & ~nonzero).sum())


def check_shard(vectors: np.ndarray, path: str) -> None:
    """Refuse a shard with NaN/inf or all-zero rows: the embed stage never writes them, so the folder
    was changed (or written by something else) and every similarity computed from it would be garbage."""
    good, nonfinite, zero = usable_rows(vectors)
    if not good.all():
        rows = np.flatnonzero(~good)
        raise ValueError(
            f"{path}: {nonfinite} rows with NaN/inf and {zero} all-zero rows (first rows {rows[:5].tolist()}); "
            "embed never writes such rows, so this folder was modified after embedding: rerun the embed stage "
            "(delete its phase folder)"
        )


def load_embeddings(data_dir: str, mmap: bool = False) -> tuple[list[str], np.ndarray, list | None]:
    """All shards concatenated in rank order: (ids, vectors [n, d], labels or None).

    Labels are returned when any shard has a `label` column (None for documents without one).
    `mmap` memory-maps each shard before concatenating (saves a copy of the largest shard).
    """
    import polars as pl

    ranks = list_shards(data_dir)
    if not ranks:
        raise FileNotFoundError(f"no embedding shards in {data_dir}")
    manifest = read_manifest(data_dir)
    ids: list[str] = []
    labels: list | None = []
    any_labels = False
    parts = []
    for rank in ranks:
        vec_path, ids_path = shard_paths(data_dir, rank)
        table = pl.read_parquet(ids_path)
        vecs = np.load(vec_path, mmap_mode="r" if mmap else None)
        if len(vecs) != table.height:
            raise ValueError(f"shard {rank}: {len(vecs)} vectors but {table.height} ids")
        check_shard(vecs, vec_path)
        ids.extend(table["id"].to_list())
        if "label" in table.columns:
            any_labels = True
            labels.extend(table["label"].to_list())
        else:
            labels.extend([None] * table.height)
        parts.append(vecs)
    dim = int(manifest["dim"])
    dtype = np.dtype(manifest.get("dtype", parts[0].dtype))
    vectors = np.concatenate([p.reshape(-1, dim) for p in parts], axis=0).astype(dtype, copy=False)
    return ids, vectors, (labels if any_labels else None)
