"""`embed` backends: OpenVINO / ONNX Runtime runs of the locally exported MiniLM give the torch fp32
vectors (bf16 and int8 within their tolerance), the export is cached and reused, OpenVINO int8 runs
int8 kernels and its quantised model is built once, bad backend / precision pairs are refused, the
distilled static model separates topics, progress counts embedded documents, and the order
partitioning asks FAISS for its GPU k-means when faiss has a GPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import bbc_interleaved

from stages.embed.encoder import check_backend, encode_texts, load_model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("model_cache"))


@pytest.fixture(scope="module")
def texts(shared_data):
    docs = bbc_interleaved(shared_data, 10, 1500)
    # an empty text and one far past the 256-token window: padding and truncation paths
    return [d["text"] for d in docs] + ["", docs[0]["text"] * 6]


@pytest.fixture(scope="module")
def reference(texts):
    return encode_texts(load_model(threads=2), texts, batch_size=4)


@pytest.mark.parametrize(
    "backend,precision,min_cos",
    [pytest.param("openvino", "fp32", 0.9999, marks=pytest.mark.slow), ("openvino", "bf16", 0.995),
     ("openvino", "int8", 0.98),
     pytest.param("onnx", "fp32", 0.9999, marks=pytest.mark.slow), pytest.param("onnx", "int8", 0.95, marks=pytest.mark.slow),
     ("torch", "bf16", 0.995)],
)
def test_backend_vectors_match_torch_fp32(backend, precision, min_cos, texts, reference, cache):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the fast-cpu extra is not installed")
    if backend == "onnx":
        pytest.importorskip("onnxruntime", reason="the fast-cpu extra is not installed")
    model = load_model(backend=backend, precision=precision, threads=2, model_cache=cache)
    vecs = encode_texts(model, texts, batch_size=4)
    assert vecs.shape == reference.shape and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    cos = (vecs * reference).sum(axis=1)
    assert cos.min() >= min_cos, (backend, precision, cos.min())
    # chunk_mean runs through the same encoder (windows cut by the model's tokenizer)
    chunked = encode_texts(model, texts[-2:], batch_size=4, long_documents="chunk_mean")
    assert chunked.shape == (2, reference.shape[1]) and np.isfinite(chunked).all()


def test_export_is_cached_and_reused(cache, texts):
    pytest.importorskip("onnxruntime", reason="the fast-cpu extra is not installed")
    load_model(backend="onnx", precision="fp32", threads=2, model_cache=cache)
    exports = sorted(e for e in os.listdir(cache) if not e.endswith(".lock") and not e.startswith("."))
    assert any("-onnx-" in e for e in exports)
    stamp = {e: os.path.getmtime(os.path.join(cache, e)) for e in exports}
    load_model(backend="onnx", precision="fp32", threads=2, model_cache=cache)
    assert {e: os.path.getmtime(os.path.join(cache, e)) for e in exports} == stamp
    # no half-written temporary folders left behind
    assert not [e for e in os.listdir(cache) if e.startswith(".")]


def test_openvino_int8_runs_int8_products_and_is_built_once(cache, texts, reference):
    """The int8 model holds QDQ-quantised weight products (all but the ones kept float),
    OpenVINO compiles them into int8 FullyConnected kernels, its vectors stay close to fp32 on average,
    and the quantised model is built once into the cache and reused."""
    pytest.importorskip("openvino", reason="the fast-cpu extra is not installed")
    import onnx
    import openvino as ov

    from stages.embed.runtimes import calibration_texts

    model = load_model(backend="openvino", precision="int8", threads=2, model_cache=cache)
    built = [e for e in os.listdir(cache) if "-onnx-int8-static-" in e and not e.endswith(".lock")]
    assert len(built) == 1
    path = os.path.join(cache, built[0], "model_int8_static.onnx")
    graph = onnx.load(path).graph
    quantised_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    weight_products = [n for n in graph.node if n.op_type == "MatMul" and "/attention/self/MatMul" not in n.name]
    int8_products = [n.name for n in weight_products if all(i in quantised_inputs for i in n.input)]
    # MiniLM-L6: 6 layers x (query, key, value, attention output, 2 feed-forward) = 36; the first
    # layer's 6 and the other 5 layers' first feed-forward products stay float
    assert len(weight_products) == 36 and len(int8_products) == 25
    assert not any("/intermediate/" in n or "/layer.0/" in n for n in int8_products)
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 2})
    runtime = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    int8_kernels = [rt for rt in runtime if rt["layerType"].astype(str).startswith("FullyConnected")
                    and rt["runtimePrecision"].astype(str) in ("u8", "i8")]
    assert len(int8_kernels) == 25
    vecs = encode_texts(model, texts, batch_size=4)
    assert (vecs * reference).sum(axis=1).mean() >= 0.99
    stamp = os.path.getmtime(path)
    load_model(backend="openvino", precision="int8", threads=2, model_cache=cache)
    assert os.path.getmtime(path) == stamp
    assert not [e for e in os.listdir(cache) if e.startswith(".")]
    # the calibration is seeded: the same texts on every build
    tok = model.tokenizer
    assert calibration_texts(tok, 5) == calibration_texts(tok, 5) != calibration_texts(tok, 5, seed=1)


@pytest.mark.parametrize("backend,precision", [("onnx", "bf16"), ("static", "fp32"), ("torch", "int8"), ("jax", "auto")])
def test_bad_backend_precision_pairs_are_refused(backend, precision):
    with pytest.raises(ValueError, match="backend"):
        check_backend(backend, precision)


def test_settings_refuse_unknown_backend():
    from pydantic import ValidationError

    from stages.embed.stage import EmbedSettings

    with pytest.raises(ValidationError):
        EmbedSettings(backend="tensorrt")


def test_progress_reports_documents_embedded_not_read(texts):
    from stages.embed.encoder import encode_texts as enc

    calls = []
    model = load_model(threads=2)
    enc(model, texts, batch_size=2, on_progress=calls.append, progress_batches=2)
    assert sum(calls) == len(texts) and max(calls) <= 4 and len(calls) == -(-len(texts) // 4)


def test_embed_phase_counts_its_own_progress(tmp_path, shared_data):
    """The runner adds no read counter to the embed phase; the embed step writes the count itself,
    and after the run it equals the documents embedded."""
    from helpers import write_jsonl_gz

    from curate.progress import ProgressCounter, read_progress
    from curate.recipe import load_recipe
    from curate.runner import plan_run

    docs = bbc_interleaved(shared_data, 12, 300)
    write_jsonl_gz(tmp_path / "in" / "docs.jsonl.gz", docs)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: t\ninput: {{format: jsonl, paths: {tmp_path / 'in'}}}\noutput: {tmp_path / 'out'}\n"
        "executor: {kind: local, tasks: 1, workers: 1}\nstages:\n  - embed: {batch_size: 4, block_documents: 5}\n"
    )
    plan = plan_run(load_recipe(recipe))
    embed = next(p for p in plan.phases if p.id == "embed.embed")
    assert not any(isinstance(s, ProgressCounter) for s in embed.pipeline)
    step = embed.pipeline[-1]
    assert step.progress_dir == os.path.join(plan.output_dir, "embed.embed", "progress")
    from curate.api import run_recipe

    run_recipe(str(recipe))
    assert read_progress(os.path.join(plan.output_dir, "embed.embed")) == len(docs)


def test_partition_kmeans_asks_faiss_for_the_gpu_when_it_has_one(monkeypatch):
    """assign_partitions (gpu=None) follows select_faiss_device like semdedup does: faiss.Kmeans gets
    gpu=True exactly when faiss reports a GPU. (No GPU here: the recording Kmeans trains on the CPU.)"""
    import faiss

    from stages.neighbors import index
    from stages.order.partition import assign_partitions

    seen = []
    real = faiss.Kmeans

    def recording(*args, **kw):
        seen.append(kw.get("gpu"))
        kw["gpu"] = False
        return real(*args, **kw)

    monkeypatch.setattr(faiss, "Kmeans", recording)
    x = np.random.default_rng(0).standard_normal((600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(index, "select_faiss_device", lambda *a, **k: "gpu")
    assign_partitions(x, 100)
    monkeypatch.setattr(index, "select_faiss_device", lambda *a, **k: "cpu")
    assign_partitions(x, 100)
    assert seen and seen[0] is True and seen[-1] is False


@pytest.mark.slow
def test_static_model_is_distilled_locally_and_separates_topics(tmp_path, shared_data):
    """Distilling the static model takes ~1-2 min on two cores (every vocabulary token through MiniLM)."""
    docs = bbc_interleaved(shared_data, 60, 3000)
    folder = tmp_path / "static"
    model = load_model(backend="static", static_model=str(folder), static_dims=128)
    assert (folder / "modules.json").exists()
    vecs = encode_texts(model, [d["text"] for d in docs], batch_size=64)
    assert vecs.shape == (60, 128) and np.isfinite(vecs).all()
    labels = np.array([d["label"] for d in docs])
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    same_topic_nearest = (labels[sims.argmax(axis=1)] == labels).mean()
    assert same_topic_nearest >= 0.7, same_topic_nearest  # chance is ~0.2 (5 topics)
    # a second load reuses the folder
    stamp = os.path.getmtime(folder / "modules.json")
    load_model(backend="static", static_model=str(folder), static_dims=128)
    assert os.path.getmtime(folder / "modules.json") == stamp
