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


def check_shard(vectors: np.ndarray, path: str, block: int = 65536) -> None:
    """Refuse a shard with NaN/inf or all-zero rows: the embed stage never writes them, so the folder
    was changed (or written by something else) and every similarity computed from it would be garbage.
    Checked a block at a time, so a memory-mapped shard is never converted whole."""
    bad, nonfinite, zero = [], 0, 0
    for lo in range(0, len(vectors), block):
        good, nf, z = usable_rows(vectors[lo : lo + block])
        bad.append(lo + np.flatnonzero(~good))
        nonfinite, zero = nonfinite + nf, zero + z
    if nonfinite or zero:
        rows = np.concatenate(bad)
        raise ValueError(
            f"{path}: {nonfinite} rows with NaN/inf and {zero} all-zero rows (first rows {rows[:5].tolist()}); "
            "embed never writes such rows, so this folder was modified after embedding: rerun the embed stage "
            "(delete its phase folder)"
        )


def rows_by_shard(starts: np.ndarray, rows: np.ndarray, n: int):
    """For reading global `rows` from row-sharded files (shard i holds rows starts[i]..): yields
    (shard, positions in `rows`, rows local to the shard), local rows ascending so each memory-mapped
    file is read forwards once. Used for the embedding shards and the kNN graph shards."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    if rows.min() < 0 or rows.max() >= n:
        raise IndexError(f"row out of range 0..{n - 1}")
    shard_of = np.searchsorted(starts, rows, side="right") - 1
    for s in np.unique(shard_of):
        where = np.flatnonzero(shard_of == s)
        local = rows[where] - starts[s]
        by_row = np.argsort(local, kind="stable")
        yield int(s), where[by_row], local[by_row]


class ShardedVectors:
    """The embed shards as one read-only [n, d] matrix, without concatenating them.

    Rows are read from each memory-mapped shard when indexed (`x[rows]`, `x[lo:hi]`, `x[i]`), so a
    task holds only the rows it asks for; `np.asarray(x)` still builds the whole matrix.
    """

    def __init__(self, parts: list[np.ndarray], dtype):
        self.parts = parts
        self.dtype = np.dtype(dtype)
        self.starts = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
        self.shape = (int(self.starts[-1]), int(parts[0].shape[1]) if parts else 0)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        rows = np.where(rows < 0, rows + len(self), rows)
        for s, where, local in rows_by_shard(self.starts, rows, len(self)):
            out[where] = self.parts[s][local]
        return out

    def __getitem__(self, item):
        if isinstance(item, tuple):
            return self[item[0]][(slice(None), *item[1:])]
        if isinstance(item, (int, np.integer)):
            return self._rows(np.array([int(item)]))[0]
        if isinstance(item, slice):
            return self._rows(np.arange(*item.indices(len(self)), dtype=np.int64))
        rows = np.asarray(item)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return self._rows(rows.astype(np.int64, copy=False).reshape(-1)).reshape(*rows.shape, self.shape[1])


def load_embeddings(data_dir: str, mmap: bool = False, check: bool = True):
    """All shards in rank order: (ids, vectors [n, d], labels or None).

    Labels are returned when any shard has a `label` column (None for documents without one).
    `mmap`: nothing is loaded; the vectors are a `ShardedVectors` view (the single shard's memory
    map when there is one) that reads rows when indexed. `check`: refuse NaN/inf/zero rows (reads
    every row once, a block at a time); a stage reading vectors the `neighbors` stage already read
    in the same run can skip it.
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
    dim = int(manifest["dim"])
    for rank in ranks:
        vec_path, ids_path = shard_paths(data_dir, rank)
        table = pl.read_parquet(ids_path)
        vecs = np.load(vec_path, mmap_mode="r" if mmap else None)
        if vecs.ndim != 2 or vecs.shape[1] != dim:
            if vecs.size:  # an empty shard may be stored flat
                raise ValueError(f"{vec_path}: vectors of shape {tuple(vecs.shape)}, but the embed manifest says "
                                 f"dimension {dim}; this shard was not written by this embed stage: rerun it")
            vecs = vecs.reshape(-1, dim)
        if len(vecs) != table.height:
            raise ValueError(f"shard {rank}: {len(vecs)} vectors but {table.height} ids")
        if check:
            check_shard(vecs, vec_path)
        ids.extend(table["id"].to_list())
        if "label" in table.columns:
            any_labels = True
            labels.extend(table["label"].to_list())
        else:
            labels.extend([None] * table.height)
        parts.append(vecs)
    dtype = np.dtype(manifest.get("dtype", parts[0].dtype))
    if mmap:
        if len(parts) == 1 and parts[0].dtype == dtype:
            vectors = parts[0]
        else:
            vectors = ShardedVectors(parts, dtype)
    else:
        vectors = np.concatenate(parts, axis=0).astype(dtype, copy=False)
    return ids, vectors, (labels if any_labels else None)
