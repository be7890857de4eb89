"""A static embedding model distilled locally from a sentence-transformers model (opt-in, fast, coarser).

The method is model2vec's (Tulkens & van Dongen, 2024): every vocabulary token is embedded alone by
the teacher (`[CLS] token [SEP]`, the teacher's own pooling), the token vectors are centred and
rotated by PCA (optionally keeping fewer dimensions), and each is weighted down by how common the
token is (SIF weighting, a / (a + p), with p from a Zipf law over the vocabulary's rank order). A
document's vector is then the mean of its tokens' vectors: no attention, no length limit, a table
lookup per token, so it runs ~50-100x faster than the transformer on CPU and ignores word order.

model2vec itself is not used: its distillation extra pins older transformers / tokenizers /
huggingface_hub than this project's. The result is a plain sentence-transformers model
(`StaticEmbedding`), saved to a folder, so `embed` loads it like any other model.
"""

from __future__ import annotations

import os

import numpy as np

SIF_A = 1e-4  # model2vec's default SIF coefficient


def token_vectors(st, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, teacher vector of each token embedded alone), special tokens left out."""
    import torch

    from stages.embed.encoder import model_dimension
    from stages.embed.runtimes import model_inputs

    tok = st.tokenizer
    special = set(tok.all_special_ids)
    ids = np.array([i for i in range(len(tok)) if i not in special], dtype=np.int64)
    cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    out = np.zeros((len(ids), model_dimension(st)), dtype=np.float32)
    with torch.no_grad():
        for lo in range(0, len(ids), batch_size):
            chunk = torch.from_numpy(ids[lo : lo + batch_size])[:, None]
            cols = [chunk]
            if cls_id is not None:
                cols.insert(0, torch.full_like(chunk, cls_id))
            if sep_id is not None:
                cols.append(torch.full_like(chunk, sep_id))
            input_ids = torch.cat(cols, dim=1)
            features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
            if "token_type_ids" in model_inputs(st, ["probe"]):
                features["token_type_ids"] = torch.zeros_like(input_ids)
            out[lo : lo + len(chunk)] = st(features)["sentence_embedding"].float().numpy()
    return ids, out


def pca_rotate(x: np.ndarray, dims: int) -> np.ndarray:
    """Centre and rotate onto the principal axes, keeping `dims` (0 = all)."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    keep = vt[: dims or vt.shape[0]]
    return (centred @ keep.T).astype(np.float32)


def sif_weights(n_tokens: int, a: float = SIF_A) -> np.ndarray:
    """a / (a + p(rank)) with p a Zipf law over rank order (the vocabulary's id order as rank)."""
    ranks = np.arange(1, n_tokens + 1, dtype=np.float64)
    p = (1.0 / ranks) / (1.0 / ranks).sum()
    return (a / (a + p)).astype(np.float32)


def distill_static(st, folder: str, pca_dims: int = 256) -> str:
    """Distil `st` into a static model saved at `folder` (a sentence-transformers model folder)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding

    ids, vecs = token_vectors(st)
    vecs = pca_rotate(vecs, min(pca_dims, vecs.shape[1]) if pca_dims else 0)
    vecs *= sif_weights(len(ids))[:, None]
    table = np.zeros((len(st.tokenizer), vecs.shape[1]), dtype=np.float32)  # special tokens: zero vectors
    table[ids] = vecs
    static = SentenceTransformer(modules=[StaticEmbedding(st.tokenizer, embedding_weights=table), Normalize()],
                                 device="cpu")
    static.save(folder)
    return folder


def static_model_folder(teacher_path: str, pca_dims: int, folder: str = "", cache_dir: str = "") -> str:
    """The distilled model's folder: `folder` if given (distilled there when missing), else a cache
    folder keyed by the teacher's path and the PCA size. Distils on first use (atomically, locked)."""
    from stages.embed.runtimes import cached_build, default_cache_dir, export_key

    def build(tmp: str) -> None:
        from sentence_transformers import SentenceTransformer

        teacher = SentenceTransformer(teacher_path, device="cpu", local_files_only=True)
        distill_static(teacher, tmp, pca_dims)

    if folder:
        if os.path.isfile(os.path.join(folder, "modules.json")):
            return folder
        parent = os.path.dirname(os.path.abspath(folder))
        return cached_build(parent, os.path.basename(os.path.abspath(folder)), build)
    return cached_build(cache_dir or default_cache_dir(), export_key(teacher_path, f"static{pca_dims}"), build)
