"""Row files of the join: reading and rewriting the corpus with memory bounded by a block, whatever
its size.

Why not plain memory maps: a map's pages count in the task's resident memory until dropped, and a
gather of rows spread over the whole file (a seeded training sample, the corpus sorted by list)
touches every page of it: the kernel maps 64 KB around each faulted row, so 80,000 sampled rows of a
2M x 384 float16 file (1.5 GB) made the `quantize` task 2.1 GB. Here every read is either a sequential
window of a map, dropped after use, or a plain file read; the sort by list is an external two-pass
bucket sort (rows appended to per-bucket files in corpus order, then each bucket put in list order),
so the task holds one window and one bucket.
"""

from __future__ import annotations

import mmap
import os
import shutil

import numpy as np

WINDOW = 65536  # corpus rows per sequential window
BUCKET_ROWS = 131072  # rows per bucket of the sort by list (a larger single list is its own bucket)
MAX_BUCKETS = 512  # open files during the first pass


def release_freed_memory(first: bool = True) -> None:
    """Keep a long task's resident memory at what it holds. Measured without this: +8 MB per group,
    which adds up over the groups (and tasks) a worker process runs. Two causes: glibc raises its
    mmap threshold after the first big free, so later per-chunk arrays come from a heap that
    fragments (fixed threshold, and `malloc_trim` after each group); and oneDNN caches a primitive
    per matrix shape (groups differ in shape), capped here before the first product."""
    import ctypes

    if first:
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    try:
        libc = ctypes.CDLL("libc.so.6")
        if first:
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (fixed, so no longer adjusted)
            libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def drop_pages(array) -> None:
    """Tell the OS this process no longer needs the pages of a memory-mapped array (they stay in the
    page cache), so reading a corpus through a map does not count against the task's memory."""
    for part in getattr(array, "parts", None) or [array]:
        base = part
        while base is not None and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
            base = getattr(base, "base", None)
        if base is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                base._mmap.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


def _npy_offset(path: str) -> tuple[int, np.dtype, tuple]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return f.tell(), dtype, shape


class NpyRows:
    """Rows lo..hi of a 2-D (or 1-D) `.npy` file by plain reads: nothing mapped, nothing cached."""

    def __init__(self, path: str):
        self.path = path
        self.offset, self.dtype, self.shape = _npy_offset(path)
        self.row_items = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1
        self.file = open(path, "rb")

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        count = max(0, hi - lo) * self.row_items
        self.file.seek(self.offset + lo * self.row_items * self.dtype.itemsize)
        out = np.fromfile(self.file, dtype=self.dtype, count=count)
        return out.reshape((max(0, hi - lo), *self.shape[1:]))

    def close(self) -> None:
        self.file.close()


def write_npy_stream(path: str, dtype, shape: tuple, blocks) -> None:
    """An `.npy` file written block by block (no memory map, so no dirty pages held), atomically."""
    from curate.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())


def windows(vectors, window: int = WINDOW):
    """(lo, rows lo..lo+window) of a (memory-mapped) corpus in order, each window's pages dropped
    once the caller is done with it."""
    for lo in range(0, len(vectors), window):
        block = np.asarray(vectors[lo : lo + window])
        drop_pages(vectors)
        yield lo, block


def gather_rows(vectors, rows: np.ndarray, dtype=None, window: int = WINDOW) -> np.ndarray:
    """vectors[rows] for sorted, distinct `rows` spread over the corpus, read one sequential window
    at a time, so the task holds one window and the result (not every page the rows lie on)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), vectors.shape[1]), dtype=dtype or vectors.dtype)
    for lo in range(0, len(vectors), window):
        a, b = np.searchsorted(rows, [lo, lo + window])
        if b > a:
            out[a:b] = vectors[rows[a:b]]
            drop_pages(vectors)
    return out


def bucket_edges(offsets: np.ndarray, bucket_rows: int = BUCKET_ROWS) -> np.ndarray:
    """List boundaries of the buckets: consecutive lists of about `bucket_rows` rows together (at most
    MAX_BUCKETS buckets); a list larger than a bucket is a bucket of its own."""
    n = int(offsets[-1])
    bucket_rows = max(bucket_rows, -(-n // MAX_BUCKETS))
    edges, start = [0], 0
    for lst in range(len(offsets) - 1):
        if offsets[lst + 1] - offsets[start] >= bucket_rows:
            edges.append(lst + 1)
            start = lst + 1
    if edges[-1] != len(offsets) - 1:
        edges.append(len(offsets) - 1)
    return np.asarray(edges, dtype=np.int64)


def write_sorted_by_list(vectors, list_of_row: np.ndarray, order: np.ndarray, offsets: np.ndarray,
                         path: str, work_dir: str, bucket_rows: int = BUCKET_ROWS) -> None:
    """`path` = the corpus rows in `order` (rows sorted by list, stable), as an `.npy`, by an external
    bucket sort: pass 1 reads the corpus in sequential windows and appends each row to its bucket's
    file (so a bucket holds its rows in corpus order); pass 2 reads one bucket at a time, puts it in
    list order and appends it to the output. Memory: one window and one bucket (a bucket spanning
    several lists holds < 2 x bucket_rows rows; one big list is copied through in windows)."""
    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    dtype = np.dtype(vectors.dtype)
    edges = bucket_edges(offsets, bucket_rows)
    bucket_of_list = np.repeat(np.arange(len(edges) - 1), np.diff(edges))
    os.makedirs(work_dir, exist_ok=True)
    names = [os.path.join(work_dir, f"bucket_{b:05d}.bin") for b in range(len(edges) - 1)]
    files = [open(name, "wb") for name in names]
    try:
        for lo, block in windows(vectors):
            bucket = bucket_of_list[list_of_row[lo : lo + len(block)]]
            by_bucket = np.argsort(bucket, kind="stable")
            cut = np.searchsorted(bucket[by_bucket], np.arange(len(files) + 1))
            for b in np.flatnonzero(np.diff(cut)):
                files[b].write(np.ascontiguousarray(block[by_bucket[cut[b] : cut[b + 1]]], dtype=dtype).tobytes())
    finally:
        for f in files:
            f.close()

    def sorted_blocks():
        for b, name in enumerate(names):
            lo, hi = int(offsets[edges[b]]), int(offsets[edges[b + 1]])
            if edges[b + 1] - edges[b] == 1:  # one list: its rows are already in corpus order
                with open(name, "rb") as f:
                    for _ in range(lo, hi, WINDOW):
                        yield np.fromfile(f, dtype=dtype, count=WINDOW * d).reshape(-1, d)
            elif hi > lo:
                rows = order[lo:hi]  # by list, then corpus row; the file holds them by corpus row
                block = np.fromfile(name, dtype=dtype).reshape(-1, d)
                yield block[np.searchsorted(np.sort(rows), rows)]
                del block
            os.unlink(name)

    try:
        write_npy_stream(path, dtype, (n, d), sorted_blocks())
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def read_rows(vectors, rows, dtype=None) -> np.ndarray:
    """vectors[rows] for any rows (unsorted, repeated), with `gather_rows`' bounded memory."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) == 0:
        return np.empty((0, vectors.shape[1]), dtype=dtype or vectors.dtype)
    if isinstance(vectors, np.ndarray) and not isinstance(vectors, np.memmap) and getattr(vectors, "base", None) is None:
        return np.asarray(vectors[rows], dtype=dtype)  # in memory already: nothing to bound
    uniq, inverse = np.unique(rows, return_inverse=True)
    got = gather_rows(vectors, uniq, dtype)
    return got if len(uniq) == len(rows) and np.array_equal(uniq, rows) else got[inverse]


class RowSubset:
    """Rows `rows` (ascending) of a memory-mapped corpus as a read-only [len(rows), d] matrix: slices
    and index arrays are read through `read_rows`, so a task working on most of the corpus holds
    what it asks for, not the corpus (`np.asarray(vectors[rows])` would copy all of it)."""

    def __init__(self, vectors, rows: np.ndarray):
        self.vectors = vectors
        self.rows = np.asarray(rows, dtype=np.int64)
        self.dtype = np.dtype(vectors.dtype)
        self.shape = (len(self.rows), int(vectors.shape[1]))
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            return read_rows(self.vectors, self.rows[[int(item)]])[0]
        return read_rows(self.vectors, self.rows[item])
