"""Packing token sequences into fixed-length context windows (plain functions, no datatrove).

- `pack_concat` (the paper's): documents in path order, each followed by the separator, are
  concatenated and cut every `context_length` tokens; documents may be split across windows. Only
  the very last window can be short; it is padded (`pad_last=True`) or dropped.
- `pack_whole`: documents are never split: a window is closed (padded) when the next document does
  not fit. A document longer than a window is, by `too_long`, either "split" (it fills whole windows
  of its own, its remainder opens the next window) or "drop"ped (counted).
Each window records which documents it holds, where each piece starts in the window
(`doc_offsets`) and where the piece starts inside its document (`doc_token_starts`), so every token
can be traced back, and `pad` (padding tokens at its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Window:
    tokens: np.ndarray  # int32 [context_length]
    doc_ids: list[str] = field(default_factory=list)
    doc_offsets: list[int] = field(default_factory=list)
    doc_token_starts: list[int] = field(default_factory=list)
    pad: int = 0


def _with_separator(tokens, sep: int | None) -> np.ndarray:
    arr = np.asarray(tokens, dtype=np.int32)
    return arr if sep is None else np.append(arr, np.int32(sep))


def pack_concat(docs: list, ids: list[str], context_length: int, sep: int | None, pad_id: int,
                pad_last: bool = True) -> tuple[list[Window], dict]:
    """Cut the concatenation of `docs` (token lists, in order) into windows of `context_length`."""
    pieces = [_with_separator(t, sep) for t in docs]
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    total = int(starts[-1])
    flat = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int32)
    windows: list[Window] = []
    stats = {"documents": len(docs), "tokens": total, "pad_tokens": 0, "dropped_tail_tokens": 0, "split_documents": 0}
    nwin = total // context_length + (1 if total % context_length and pad_last else 0)
    for w in range(nwin):
        lo, hi = w * context_length, min((w + 1) * context_length, total)
        tokens = np.full(context_length, pad_id, dtype=np.int32)
        tokens[: hi - lo] = flat[lo:hi]
        first = int(np.searchsorted(starts, lo, side="right")) - 1
        last = int(np.searchsorted(starts, hi, side="left")) - 1
        win = Window(tokens, pad=context_length - (hi - lo))
        for d in range(first, last + 1):
            if lengths[d] == 0:
                continue
            win.doc_ids.append(ids[d])
            win.doc_offsets.append(int(max(starts[d], lo) - lo))
            win.doc_token_starts.append(int(max(lo - starts[d], 0)))
        windows.append(win)
        stats["pad_tokens"] += win.pad
    if total % context_length and not pad_last:
        stats["dropped_tail_tokens"] = total % context_length
    boundaries = np.arange(context_length, total, context_length)
    inner = (np.searchsorted(starts, boundaries, side="right") - 1)
    cut_inside = starts[inner] != boundaries
    stats["split_documents"] = int(len(np.unique(inner[cut_inside])))
    return windows, stats


def pack_whole(docs: list, ids: list[str], context_length: int, sep: int | None, pad_id: int,
               too_long: str = "split") -> tuple[list[Window], dict]:
    """Fill windows with whole documents in order; never split one unless it exceeds a window."""
    windows: list[Window] = []
    stats = {"documents": len(docs), "tokens": 0, "pad_tokens": 0, "dropped_too_long": 0, "split_documents": 0}
    cur: list[np.ndarray] = []
    cur_ids: list[str] = []
    cur_offsets: list[int] = []
    cur_starts: list[int] = []
    used = 0

    def close():
        nonlocal cur, cur_ids, cur_offsets, cur_starts, used
        if not cur:
            return
        tokens = np.full(context_length, pad_id, dtype=np.int32)
        tokens[:used] = np.concatenate(cur)
        windows.append(Window(tokens, cur_ids, cur_offsets, cur_starts, context_length - used))
        stats["pad_tokens"] += context_length - used
        cur, cur_ids, cur_offsets, cur_starts, used = [], [], [], [], 0

    for doc_id, toks in zip(ids, docs):
        piece = _with_separator(toks, sep)
        n = len(piece)
        if n > context_length:
            if too_long == "drop":
                stats["dropped_too_long"] += 1
                continue
            close()
            stats["split_documents"] += 1
            for lo in range(0, n, context_length):
                part = piece[lo : lo + context_length]
                cur, cur_ids, cur_offsets, cur_starts, used = [part], [doc_id], [0], [lo], len(part)
                if used == context_length:
                    close()
            stats["tokens"] += n
            continue
        if used + n > context_length:
            close()
        cur.append(piece)
        cur_ids.append(doc_id)
        cur_offsets.append(used)
        cur_starts.append(0)
        used += n
        stats["tokens"] += n
    close()
    return windows, stats


def window_coherences(vectors: np.ndarray, windows_rows: list[np.ndarray]) -> np.ndarray:
    """Per window with >= 2 distinct documents: the mean pairwise cosine of its documents."""
    vals = []
    for rows in windows_rows:
        rows = np.unique(rows)
        m = len(rows)
        if m < 2:
            continue
        v = np.asarray(vectors[rows], dtype=np.float32)
        s = v.sum(axis=0)
        vals.append((float(s @ s) - float(np.einsum("ij,ij->", v, v))) / (m * (m - 1)))
    return np.asarray(vals, dtype=np.float64)


def window_coherence(vectors: np.ndarray, windows_rows: list[np.ndarray]) -> float:
    """Mean over windows (with >= 2 distinct documents) of the mean pairwise cosine of their documents."""
    vals = window_coherences(vectors, windows_rows)
    return float(vals.mean()) if len(vals) else float("nan")


def random_windows_like(windows_rows: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Windows holding as many documents as the given ones, filled from a random permutation."""
    flat = np.concatenate([np.unique(r) for r in windows_rows]) if windows_rows else np.empty(0, dtype=np.int64)
    perm = rng.permutation(flat)
    out, at = [], 0
    for r in windows_rows:
        m = len(np.unique(r))
        out.append(perm[at : at + m])
        at += m
    return out
