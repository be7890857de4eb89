"""Dense similarity blocks with a running top-k: the compute kernel of the self-join graph builder.

`BlockTopK` takes a group of query rows and streams candidate chunks through it: one matrix product
per chunk (torch: oneDNN/BLAS on CPU, cuBLAS on CUDA), the chunk's best `keep` per query chosen by
`torch.topk` (compiled), re-scored exactly in float32 when the product ran in bfloat16/float16, and
merged into the running top-k. Self-matches are masked by position, not by value, so an exact
duplicate of a row is still its neighbour.

Why torch and not `faiss.knn` on the block: measured here (2 cores, 2,000 x 16,000 x 384), faiss'
brute force spends 0.36 s of its 0.47 s keeping heaps, while `a @ b.T` takes 0.11 s in float32 and
0.034 s in bfloat16 (AMX), and `torch.topk(k=21)` 0.03 s. The bfloat16 product keeps ~3 significant
digits, so the chunk's best `keep` = k x rerank candidates are re-scored in float32 (cost: keep / chunk
of the product) and the written similarities are exact. Symmetric blocks (one product A x B serving
the rows of A and of B) would save only the product, the cheap half once it runs in bfloat16, and
would make every row's list depend on other tasks' output, so each group computes its own.

Memory per group: the query rows (float32), one candidate chunk (`chunk_rows` x d in the stored
dtype, float32 and the product's dtype: 16,384 x 384 x 8 B = 50 MB) and one similarity block
(`query_rows` x `chunk_rows` x 2-4 B: 1,024 x 16,384 x 2 B = 32 MB in bfloat16) plus the re-scored
candidates (1,024 x keep x d x 4 B = 63 MB at keep 40), whatever the corpus.
"""

from __future__ import annotations

import numpy as np
from numba import njit

QUERY_ROWS = 1024
CHUNK_ROWS = 16384
GPU_QUERY_ROWS = 16384
GPU_CHUNK_ROWS = 65536


def torch_device(device: str) -> str:
    """"cuda" for a GPU run when torch sees one, else "cpu"."""
    import torch

    return "cuda" if device == "gpu" and torch.cuda.is_available() else "cpu"


def gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 / AMX); without it bfloat16 is
    emulated and slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """The product's dtype: 'auto' is float16 on a GPU, bfloat16 on a CPU that has it natively,
    float32 otherwise."""
    if precision != "auto":
        return precision
    if torch_device(device) == "cuda":
        return "float16"
    return "bfloat16" if native_bf16() else "float32"


class BlockTopK:
    """Running top-k of a group of query rows over candidate chunks (exact float32 similarities).

    queries: float32 [m, d]; k: neighbours kept; keep: candidates per query taken from each chunk's
    low-precision product before the exact re-score (ignored in float32).
    Feed chunks with `add(chunk, ids, self_cols)`; `result()` gives (sims float32 [m, k] descending,
    ids int64 [m, k], -1 / -inf where fewer than k candidates existed).
    """

    compiled_cpu = True  # CPU bfloat16: the compiled selection and re-score (False: torch's, for bench/join_blocks.py)

    def __init__(self, queries: np.ndarray, k: int, keep: int, precision: str = "float32", device: str = "cpu",
                 query_rows: int = 0):
        import torch

        self.torch = torch
        self.dev = torch_device(device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
        self.exact = precision == "float32"
        self.k, self.keep = k, max(k, keep)
        self.q32 = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.dev)
        self.q = self.q32 if self.exact else self.q32.to(self.dtype)
        m = len(queries)
        self.best_s = torch.full((m, k), float("-inf"), dtype=torch.float32, device=self.dev)
        self.best_i = torch.full((m, k), -1, dtype=torch.int64, device=self.dev)
        self.query_rows = query_rows or (GPU_QUERY_ROWS if self.dev == "cuda" else QUERY_ROWS)

    def add(self, chunk: np.ndarray, ids: np.ndarray, self_cols: np.ndarray | None = None) -> None:
        """One candidate chunk: vectors [c, d], their ids int64 [c]; `self_cols[i]` is the column of
        query i inside this chunk (-1: not in it), masked so that no row lists itself."""
        torch = self.torch
        if len(chunk) == 0:
            return
        if self.dev == "cpu" and self.dtype == torch.bfloat16 and self.compiled_cpu:
            self._add_cpu_bf16(chunk, ids, self_cols)
            return
        c32 = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(self.dev)
        c = c32 if self.exact else c32.to(self.dtype)
        cid = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.dev)
        mask = None if self_cols is None else torch.from_numpy(np.asarray(self_cols, dtype=np.int64)).to(self.dev)
        for lo in range(0, len(self.q), self.query_rows):
            hi = min(len(self.q), lo + self.query_rows)
            sims = self.q[lo:hi] @ c.T
            if mask is not None:
                rows = torch.nonzero(mask[lo:hi] >= 0).flatten()
                if len(rows):
                    sims[rows, mask[lo:hi][rows]] = float("-inf")
            take = min(self.k if self.exact else self.keep, sims.shape[1])
            top_s, top_j = torch.topk(sims, take, dim=1)
            if self.exact:
                top_s = top_s.float()
            else:  # re-score the chunk's best in float32: the written similarities are exact
                if self.dev == "cpu":  # compiled, without the [rows, keep, d] gather (measured 7x its cost)
                    exact = torch.from_numpy(rescore(self.q32[lo:hi].numpy(), c32.numpy(), top_j.numpy()))
                else:
                    exact = torch.bmm(c32[top_j], self.q32[lo:hi, :, None])[:, :, 0]
                top_s = torch.where(torch.isneginf(top_s.float()), top_s.float(), exact)
            top_i = torch.where(torch.isneginf(top_s), torch.full_like(top_j, -1), cid[top_j])
            self._merge(lo, hi, top_s, top_i)

    def _add_cpu_bf16(self, chunk: np.ndarray, ids: np.ndarray, self_cols: np.ndarray | None) -> None:
        """`add` on a CPU in bfloat16 with compiled kernels: the chunk goes to bfloat16 in one cast
        (float16 -> float32 -> bfloat16 cost 2.5x that), each row's best `keep` columns are chosen by
        `select_top_bf16` (one pass with a rising threshold; torch.topk sorted the whole block, as
        costly as the product itself), then re-scored in float32 straight from the stored rows."""
        torch = self.torch
        chunk = np.ascontiguousarray(chunk)
        c = torch.from_numpy(chunk).to(torch.bfloat16)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        skip = np.full(len(self.q), -1, dtype=np.int64) if self_cols is None else np.asarray(self_cols, dtype=np.int64)
        q32 = self.q32.numpy()
        for lo in range(0, len(self.q), self.query_rows):
            hi = min(len(self.q), lo + self.query_rows)
            bits = (self.q[lo:hi] @ c.T).view(torch.int16).numpy()
            cols = select_top_bf16(bits, min(self.keep, len(chunk)), skip[lo:hi])
            if chunk.dtype == np.float16:
                exact = rescore_f16(q32[lo:hi], chunk.view(np.uint16), cols, F16_TO_F32)
            else:
                exact = rescore(q32[lo:hi], np.ascontiguousarray(chunk, dtype=np.float32), cols)
            top_i = np.where(cols >= 0, ids[np.maximum(cols, 0)], -1)
            self._merge(lo, hi, torch.from_numpy(exact), torch.from_numpy(top_i))

    def _merge(self, lo: int, hi: int, s, i) -> None:
        torch = self.torch
        all_s = torch.cat([self.best_s[lo:hi], s], dim=1)
        all_i = torch.cat([self.best_i[lo:hi], i], dim=1)
        top_s, pos = torch.topk(all_s, self.k, dim=1)
        self.best_s[lo:hi] = top_s
        self.best_i[lo:hi] = torch.gather(all_i, 1, pos)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.best_s.cpu().numpy()
        i = self.best_i.cpu().numpy()
        i[np.isneginf(s)] = -1
        return s, i


@njit(cache=True, nogil=True, fastmath=True)
def rescore(queries: np.ndarray, chunk: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 inner products of query i with chunk rows cols[i, :] ([m, keep]); -inf where cols < 0."""
    m, keep = cols.shape
    d = queries.shape[1]
    out = np.empty((m, keep), dtype=np.float32)
    for i in range(m):
        for j in range(keep):
            row = cols[i, j]
            if row < 0:
                out[i, j] = -np.inf
                continue
            acc = np.float32(0.0)
            for t in range(d):
                acc += queries[i, t] * chunk[row, t]
            out[i, j] = acc
    return out


# float32 value of every float16 bit pattern: numba has no float16, so the kernel reads stored float16
# rows as uint16 and looks each up (a 256 KB table that stays in cache)
F16_TO_F32 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, nogil=True, fastmath=True)
def rescore_f16(queries: np.ndarray, chunk_bits: np.ndarray, cols: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`rescore` with the chunk's rows stored as float16 (their bits, uint16)."""
    m, keep = cols.shape
    d = queries.shape[1]
    out = np.empty((m, keep), dtype=np.float32)
    for i in range(m):
        for j in range(keep):
            row = cols[i, j]
            if row < 0:
                out[i, j] = -np.inf
                continue
            acc = np.float32(0.0)
            for t in range(d):
                acc += queries[i, t] * table[chunk_bits[row, t]]
            out[i, j] = acc
    return out


@njit(cache=True, nogil=True)
def select_top_bf16(bits: np.ndarray, keep: int, skip: np.ndarray) -> np.ndarray:
    """Columns of each row's `keep` largest bfloat16 values (given as their int16 bits), best first,
    ties to the lower column; column skip[i] of row i is never chosen; -1 pads a row with fewer
    columns. One pass per row: values at or below the current keep-th best are skipped, the rest
    go to a buffer of 2 x keep that is cut back to the best keep when full."""
    m, c = bits.shape
    out = np.full((m, keep), -1, dtype=np.int64)
    if keep <= 0:
        return out
    buf = np.empty(2 * keep, dtype=np.int64)
    for i in range(m):
        threshold = np.iinfo(np.int64).min
        fast = -32769  # once the keep-th best is >= 0, its raw bits: anything at or below them loses
        filled = 0
        row = bits[i]
        for j in range(c):
            b = np.int64(row[j])
            if b <= fast or j == skip[i]:
                continue
            # bfloat16 bits -> an integer of the same order: positive values as they are, negative
            # ones mirrored below zero; then the column in the low 32 bits (lower column wins a tie)
            key = b if b >= 0 else -(b & 0x7FFF) - 1
            ranked = (key << 32) | (0xFFFFFFFF - j)
            if ranked <= threshold:
                continue
            buf[filled] = ranked
            filled += 1
            if filled == 2 * keep:
                buf[:] = np.sort(buf)[::-1]
                filled = keep
                threshold = buf[keep - 1]
                if threshold >= 0:
                    fast = threshold >> 32
        best = np.sort(buf[:filled])[::-1]
        for t in range(min(keep, filled)):
            out[i, t] = 0xFFFFFFFF - (best[t] & 0xFFFFFFFF)
    return out


def exact_topk(queries: np.ndarray, query_rows: np.ndarray, vectors, k: int, device: str = "cpu",
               chunk_rows: int = 65536, after_chunk=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (float32, self excluded) of `queries` (global rows `query_rows`)
    over the whole corpus `vectors` (any array-like of rows), streamed `chunk_rows` at a time;
    `after_chunk()` runs after each chunk (e.g. to drop the pages of a memory map)."""
    n = len(vectors)
    top = BlockTopK(queries, k, k, "float32", device)
    where = np.argsort(query_rows, kind="stable")
    sorted_rows = np.asarray(query_rows)[where]
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        cols = np.full(len(queries), -1, dtype=np.int64)
        a, b = np.searchsorted(sorted_rows, [lo, hi])
        cols[where[a:b]] = sorted_rows[a:b] - lo
        top.add(np.asarray(vectors[lo:hi], dtype=np.float32), np.arange(lo, hi, dtype=np.int64), cols)
        if after_chunk is not None:
            after_chunk()
    return top.result()
