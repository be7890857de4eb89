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
import zipfile
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


def _mapped_member(path: str, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """A `.npy` member of an uncompressed `.npz`, memory-mapped in place (no copy, nothing read yet).

    Our shards are written ZIP_STORED, so each array's bytes lie contiguous in the file after the zip
    local header and the `.npy` header; `np.load` cannot map an `.npz`, so the offset is found here.
    """
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{path}: {name} is compressed; cannot map it")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: damaged zip header of {name}")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran:
        raise ValueError(f"{path}: {name} is Fortran-ordered")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


class KnnTable:
    """The kNN graph on disk, read by rows: every shard memory-mapped, nothing loaded up front.

    An ordering task touches only the rows it asks for (its partition's, or one chunk at a time), so
    its memory follows its share of the corpus, not the corpus (`load_knn_graph` is the whole table).
    """

    def __init__(self, data_dir: str):
        import polars as pl

        self.data_dir = data_dir
        manifest = read_manifest(data_dir)
        self.n, self.k = int(manifest["n"]), int(manifest["k"])
        self.shards: list[tuple[int, np.ndarray, np.ndarray]] = []
        for path in sorted(glob.glob(os.path.join(data_dir, "knn_*.npz"))):
            with zipfile.ZipFile(path) as zf:
                start = int(np.load(path)["row_start"])
                nb = _mapped_member(path, zf, "neighbors.npy")
                sims = _mapped_member(path, zf, "similarities.npy")
            self.shards.append((start, nb, sims))
        self.shards.sort(key=lambda s: s[0])
        covered = sum(len(s[1]) for s in self.shards)
        ids_rows = pl.scan_parquet(os.path.join(data_dir, IDS)).select(pl.len()).collect().item()
        if covered != self.n or ids_rows != self.n:
            raise ValueError(f"{data_dir}: graph covers {covered} rows, ids {ids_rows}, manifest n={self.n}")
        self._starts = np.array([s[0] for s in self.shards], dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def ids(self) -> list[str]:
        import polars as pl

        return pl.read_parquet(os.path.join(self.data_dir, IDS), columns=["id"])["id"].to_list()

    def labels(self) -> list | None:
        import polars as pl

        table = pl.read_parquet(os.path.join(self.data_dir, IDS))
        return table["label"].to_list() if "label" in table.columns else None

    def rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(neighbors int64 [m, k], similarities float16 [m, k]) of the global `rows`, in that order."""
        from stages.embed.store import rows_by_shard

        nb = np.full((len(rows), self.k), -1, dtype=np.int64)
        sims = np.full((len(rows), self.k), -np.inf, dtype=np.float16)
        for s, where, local in rows_by_shard(self._starts, rows, self.n):
            _, snb, ssims = self.shards[s]
            nb[where] = snb[local]
            sims[where] = ssims[local]
        return nb, sims

    def chunks(self, chunk: int = 1 << 17):
        """(first row, neighbors, similarities) in row order, `chunk` rows at a time."""
        for lo in range(0, self.n, chunk):
            rows = np.arange(lo, min(self.n, lo + chunk), dtype=np.int64)
            yield (lo, *self.rows(rows))
