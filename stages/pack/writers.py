"""Writers of packed windows: a table (parquet / jsonl.gz) and datatrove's tokenized `.ds` format."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np

from curate.atomic import atomic_path


def write_window_table(windows, output_dir: str, rank: int, fmt: str) -> str:
    """One row per window: window (index in this file), input_ids, doc_ids, doc_offsets,
    doc_token_starts, pad. Returns the path written."""
    if fmt == "parquet":
        import polars as pl

        path = os.path.join(output_dir, f"{rank:05d}.parquet")
        df = pl.DataFrame(
            {
                "window": np.arange(len(windows), dtype=np.int64),
                "input_ids": [w.tokens.tolist() for w in windows],
                "doc_ids": [w.doc_ids for w in windows],
                "doc_offsets": [w.doc_offsets for w in windows],
                "doc_token_starts": [w.doc_token_starts for w in windows],
                "pad": [w.pad for w in windows],
            },
            schema={"window": pl.Int64, "input_ids": pl.List(pl.Int32), "doc_ids": pl.List(pl.String),
                    "doc_offsets": pl.List(pl.Int32), "doc_token_starts": pl.List(pl.Int32), "pad": pl.Int32},
        )
        with atomic_path(path) as tmp:
            df.write_parquet(tmp)
        return path
    path = os.path.join(output_dir, f"{rank:05d}.jsonl.gz")
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for i, w in enumerate(windows):
                f.write(json.dumps({"window": i, "input_ids": w.tokens.tolist(), "doc_ids": w.doc_ids,
                                    "doc_offsets": w.doc_offsets, "doc_token_starts": w.doc_token_starts,
                                    "pad": w.pad}) + "\n")
    return path


def read_window_table(path: str) -> list:
    """The windows of a parquet file written by `write_window_table`, in its row order."""
    import polars as pl

    from stages.pack.packing import Window

    df = pl.read_parquet(path)
    if df.height == 0:
        return []
    # every window is exactly context_length tokens (the last ones are padded): one 2-D array
    tokens = df["input_ids"].explode().to_numpy().astype(np.int32).reshape(df.height, -1)
    return [Window(tokens[i], list(ids), list(offs), list(starts), int(pad))
            for i, (ids, offs, starts, pad) in enumerate(df.select("doc_ids", "doc_offsets", "doc_token_starts", "pad")
                                                         .iter_rows())]


def write_datatrove_windows(windows, output_dir: str, rank: int, token_size: int = 2,
                            tokenizer_name: str | None = None) -> str:
    """`{rank:05d}_windows.ds` with datatrove's TokenizedFile: windows back to back, the `.index`
    holding the end of every document piece (and of the padding), so positions restart at document
    boundaries for trainers that use them. Written under a temporary name, then renamed."""
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    os.makedirs(output_dir, exist_ok=True)
    name = f"{rank:05d}_windows.ds"
    tmp_name = f"{name}.tmp-{os.getpid()}"
    dtype = np.uint16 if token_size == 2 else np.uint32
    tf = TokenizedFile(output_dir, tmp_name, save_index=True, tokenizer_name_or_path=tokenizer_name,
                       save_final_metadata=True, token_size=token_size)
    for w in windows:
        length = len(w.tokens)
        ends = [int(o) for o in w.doc_offsets[1:]] + [length - w.pad]
        if w.pad:
            ends.append(length)
        ends = [e for e in sorted(set(ends)) if e > 0]
        tf.write_bytes(np.asarray(w.tokens, dtype=dtype).tobytes(), doc_ends=ends)
    tf.close()
    for suffix in ("", ".index", ".metadata"):
        src = os.path.join(output_dir, tmp_name + suffix)
        if os.path.exists(src):
            os.replace(src, os.path.join(output_dir, name + suffix))
    return os.path.join(output_dir, name)
