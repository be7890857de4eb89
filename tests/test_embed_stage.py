"""`embed`: shards round-trip with their ids and labels, vectors equal a bare sentence-transformers
encode of the same texts, reruns reuse finished shards, long-document modes behave."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import bbc_interleaved, write_jsonl_gz
from stages.embed.encoder import choose_torch_device, encode_texts, load_model
from stages.embed.stage import EmbedDocuments, EmbedSettings
from stages.embed.store import load_embeddings, read_manifest


def _bbc_docs(shared_data, n: int, chars: int = 500) -> list[dict]:
    """n BBC articles with distinct texts, cut to `chars` characters so the test embeds quickly."""
    return bbc_interleaved(shared_data, n, chars)


@pytest.fixture(scope="module")
def model():
    return load_model(threads=2)


def _run_embed(tmp_path, docs, settings: EmbedSettings, tasks: int = 2, label_key="label"):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader

    inp = tmp_path / "in"
    for t in range(tasks):  # one input file per task so every task gets a shard
        write_jsonl_gz(inp / f"part{t}.jsonl.gz", docs[t::tasks])
    out = str(tmp_path / "embed")
    LocalPipelineExecutor(
        [JsonlReader(str(inp)), EmbedDocuments(out, settings, label_key=label_key, threads=2)],
        tasks=tasks, workers=1, logging_dir=str(tmp_path / "logs"),
    ).run()
    return out


def test_shards_round_trip_with_ids_labels_and_equal_bare_encode(tmp_path, shared_data, model):
    docs = _bbc_docs(shared_data, 24)
    out = _run_embed(tmp_path, docs, EmbedSettings(batch_size=8, dtype="float32"))
    ids, vectors, labels = load_embeddings(out)

    by_id = {d["id"]: d for d in docs}
    expected_order = [d["id"] for d in docs[0::2]] + [d["id"] for d in docs[1::2]]  # rank 0 then rank 1
    assert ids == expected_order
    assert labels == [by_id[i]["label"] for i in ids]
    assert vectors.dtype == np.float32 and vectors.shape == (24, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    bare = model.encode([by_id[i]["text"] for i in ids], batch_size=8, normalize_embeddings=True)
    # Same model, same texts: row i must be document i's vector (batching changes only rounding).
    assert np.min(np.sum(bare * vectors, axis=1)) > 0.9999
    manifest = read_manifest(out)
    assert manifest["dim"] == 384 and manifest["normalized"] is True and manifest["dtype"] == "float32"
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_rerun_does_not_reembed_finished_shards(tmp_path, shared_data):
    docs = _bbc_docs(shared_data, 8, chars=200)
    out = _run_embed(tmp_path, docs, EmbedSettings(), tasks=2, label_key=None)
    ids, vectors, labels = load_embeddings(out)
    assert labels is None and vectors.dtype == np.float16 and len(ids) == 8
    stamps = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)}
    _run_embed(tmp_path, docs, EmbedSettings(), tasks=2, label_key=None)  # same logging dir: completions
    assert {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)} == stamps


def test_empty_shard_is_written(tmp_path):
    from stages.embed.store import list_shards

    step = EmbedDocuments(str(tmp_path / "e"), EmbedSettings(), threads=2)
    list(step.run(iter([]), rank=3, world_size=4) or [])
    assert list_shards(str(tmp_path / "e")) == [3]
    with pytest.raises(FileNotFoundError):
        load_embeddings(str(tmp_path / "nothing"))
    ids, vectors, _ = load_embeddings(str(tmp_path / "e"))
    assert ids == [] and vectors.shape == (0, 384)


def test_chunk_mean_reads_past_the_window_and_equals_truncate_on_short_texts(shared_data, model):
    docs = _bbc_docs(shared_data, 60, chars=2000)
    sport = next(d["text"] for d in docs if d["label"] == "sport")
    tech = next(d["text"] for d in docs if d["label"] == "tech")
    model.max_seq_length = 48
    try:
        long_doc = sport + "\n\n" + tech
        trunc = encode_texts(model, [long_doc], long_documents="truncate")[0]
        chunked = encode_texts(model, [long_doc], long_documents="chunk_mean")[0]
        tech_vec = encode_texts(model, [tech], long_documents="chunk_mean")[0]
        # Truncation sees only the sport article; chunk_mean also sees the tech one.
        assert chunked @ tech_vec > trunc @ tech_vec + 0.1
        short = ["a short sentence about football.", "tiny"]
        np.testing.assert_allclose(
            encode_texts(model, short, long_documents="chunk_mean"), encode_texts(model, short), atol=1e-5
        )
        first_window_only = encode_texts(model, [long_doc], long_documents="chunk_mean", max_windows=1)[0]
        assert first_window_only @ trunc > 0.98
    finally:
        model.max_seq_length = 256


def test_device_is_cuda_only_when_torch_sees_a_gpu():
    import torch

    assert choose_torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_torch_device("cpu") == "cpu"
    m = load_model(device="auto", threads=2)
    assert m.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    # fp16 only on the GPU path
    assert next(m.parameters()).dtype == (torch.float16 if torch.cuda.is_available() else torch.float32)
