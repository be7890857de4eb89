"""Faster CPU runtimes for a sentence-transformers model: its transformer exported to ONNX (locally, from
the offline weights; nothing is downloaded) and run by OpenVINO or ONNX Runtime.

Why not sentence-transformers' own `backend="onnx"/"openvino"`: those go through `optimum`, whose
releases pin older transformers / sentence-transformers / torch than this project's, so they cannot be
installed beside it. The runtimes themselves (`openvino`, `onnxruntime`, `onnx`) install cleanly (the
`fast-cpu` extra); the export here uses torch's own ONNX exporter.

Only the transformer runs in the other runtime. The model's remaining modules (pooling, dense,
normalize) are the model's own torch modules, applied to the runtime's token embeddings, so any
sentence-transformers model whose first module is a `Transformer` works unchanged.

Precisions:
- OpenVINO `bf16`: matrix products in bfloat16 on CPUs with AMX / AVX-512 BF16 (OpenVINO's own
  default on such CPUs), accumulation and normalisation in fp32. `fp32` forces full precision.
- OpenVINO `int8`: static int8 quantisation of the exported model's weight matrix products (QDQ
  format, ONNX Runtime's quantiser: weights symmetric per output channel, activations per tensor with
  ranges calibrated once at build time), compiled by OpenVINO, whose low-precision transformations
  run those products as int8 (VNNI / AMX) kernels; attention score products, softmax, GELU and layer
  norms stay in float (bf16 where the CPU has it), and so do each layer's first feed-forward
  product and the first layer (`INT8_FLOAT_PRODUCTS`: the most sensitive ones). Matrix-product
  outputs are not re-quantised (that would add a rounding before every bias add). Calibration texts
  are synthetic (`calibration_texts`: seeded Zipf-weighted draws of whole words from the model's own
  vocabulary), so the build needs no data and gives the same model on every machine.
- ONNX Runtime `fp32`; `int8`: dynamic quantisation of the weights (per output channel), activations
  quantised per batch.

Exports are cached in a folder (`cache_dir`, default `~/.cache/curate/models`), keyed by the model's
path and the export kind, written atomically under a file lock so parallel tasks export once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from typing import Sequence

import numpy as np

EXPORT_OPSET = 17


def default_cache_dir() -> str:
    """Where exported / distilled models live unless a folder is given: never inside the repository."""
    return os.environ.get("CURATE_MODEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "curate", "models")


def export_key(model_path: str, kind: str) -> str:
    """Folder name of one export: the model folder's name plus a hash of its absolute path and `kind`."""
    real = os.path.realpath(model_path)
    digest = hashlib.sha1(f"{real}\0{kind}".encode()).hexdigest()[:10]
    return f"{os.path.basename(real.rstrip(os.sep)) or 'model'}-{kind}-{digest}"


def cached_build(cache_dir: str, key: str, build) -> str:
    """The folder `cache_dir/key`, made by `build(tmp_folder)` if absent; atomic and locked, so parallel
    tasks build it once and a killed build leaves nothing behind."""
    from filelock import FileLock

    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, key)
    if os.path.isdir(final):
        return final
    with FileLock(final + ".lock"):
        if os.path.isdir(final):
            return final
        tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir)
        try:
            build(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def model_inputs(st, texts):
    """The model's tokenised features (`preprocess` in sentence-transformers >= 6, `tokenize` before)."""
    prepare = getattr(st, "preprocess", None) or st.tokenize
    return prepare(list(texts))


def _check_exportable(st) -> None:
    from sentence_transformers.models import Transformer

    if not isinstance(st[0], Transformer):
        raise ValueError(
            f"the onnx/openvino backends export the model's first module, which must be a sentence-transformers "
            f"Transformer; this model starts with {type(st[0]).__name__}"
        )


def export_onnx(st, folder: str) -> str:
    """Write `folder/model.onnx`: the transformer of `st` (float32), inputs as its tokenizer makes them,
    batch and sequence axes dynamic; output `token_embeddings`."""
    import torch

    _check_exportable(st)
    inner = st[0].auto_model.eval()
    probe = {k: v for k, v in model_inputs(st, ["an export probe", "a second, longer export probe text"]).items()
             if k in ("input_ids", "attention_mask", "token_type_ids")}
    names = list(probe)

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors)), return_dict=True).last_hidden_state

    path = os.path.join(folder, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(
            TokenEmbeddings(inner), tuple(probe[k] for k in names), path, input_names=names,
            output_names=["token_embeddings"], opset_version=EXPORT_OPSET, dynamo=False,
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in [*names, "token_embeddings"]},
        )
    return path


def quantize_onnx_int8(src: str, folder: str) -> str:
    """Dynamic int8 quantisation of an exported model's weights (per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = os.path.join(folder, "model_int8.onnx")
    quantize_dynamic(src, path, weight_type=QuantType.QInt8, per_channel=True)
    return path


CALIBRATION_TEXTS = 300
CALIBRATION_SEED = 0


def calibration_texts(tokenizer, n: int = CALIBRATION_TEXTS, seed: int = CALIBRATION_SEED) -> list[str]:
    """`n` seeded texts of 5-300 whole words drawn from the tokenizer's vocabulary with Zipf weights by
    id order (frequent words first in BERT-style vocabularies). Measured on MiniLM: calibrating on these
    gives the same cosine to fp32 as calibrating on real news or web text."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    special = set(getattr(tokenizer, "all_special_tokens", []))
    words = [w for w, _ in vocab if w.isalpha() and w not in special]
    if len(words) < 100:
        raise ValueError(f"int8 calibration needs a vocabulary with whole words; this tokenizer has {len(words)}")
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    return [" ".join(words[j] for j in rng.choice(len(words), size=int(rng.integers(5, 300)), p=p))
            for _ in range(n)]


# Products kept in float, by ONNX node name (regular expressions; BERT-family export names): the first
# feed-forward product of each layer (`intermediate`) and all of the first layer. Measured on MiniLM
# (mean cosine to fp32 on BBC / AG News / 20NG samples): every weight product int8 0.993 / 0.991 /
# 0.991 (AG News ordering share 0.9945 in one bench run, under 0.995); `intermediate` float 0.996 /
# 0.995 / 0.995; and layer 0 float too 0.997 / 0.996 / 0.996. Each float group costs some speed
# (all int8 ran 4.6x bare vs 4.2x with `intermediate` float, in one run).
INT8_FLOAT_PRODUCTS: tuple[str, ...] = (r"/intermediate/", r"/layer\.0/")


def quantize_onnx_static_int8(st, src: str, folder: str, batch_size: int = 16,
                              float_products: Sequence[str] | None = None) -> str:
    """Static int8 QDQ model of an exported transformer: every MatMul / Gemm with a constant weight is
    quantised (weights symmetric per output channel, activations asymmetric per tensor, min-max ranges
    from `calibration_texts`), except those named by `float_products` (default `INT8_FLOAT_PRODUCTS`);
    MatMuls of two activations (attention scores) stay float."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    graph = onnx.load(src, load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    products = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    float_products = INT8_FLOAT_PRODUCTS if float_products is None else float_products
    kept_float = [n.name for n in products if not any(i in constants for i in n.input)
                       or any(re.search(f, n.name) for f in float_products)]
    texts = sorted(calibration_texts(st.tokenizer), key=len)  # similar lengths per batch: little padding
    names = [i.name for i in graph.input]

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(texts), batch_size))

        def get_next(self):
            lo = next(self.batches, None)
            if lo is None:
                return None
            features = model_inputs(st, texts[lo : lo + batch_size])
            return {k: features[k].numpy().astype(np.int64) for k in names}

    path = os.path.join(folder, "model_int8_static.onnx")
    quantize_static(
        src, path, Batches(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=kept_float, per_channel=True, weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                       "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
    )
    return path


class ExportedEncoder:
    """Duck-types the part of `SentenceTransformer` that `encode_texts` uses (`encode`, `tokenizer`,
    `max_seq_length`, `tokenize`) with the transformer run by OpenVINO or ONNX Runtime."""

    def __init__(self, st, backend: str, precision: str, threads: int = 0, cache_dir: str = "",
                 model_path: str = ""):
        self.st = st
        self.backend, self.precision = backend, precision
        self.tokenizer = st.tokenizer
        cache = cache_dir or default_cache_dir()
        base = model_path or getattr(st, "_curate_model_path", "") or "model"
        onnx_dir = cached_build(cache, export_key(base, "onnx"), lambda tmp: export_onnx(st, tmp))
        onnx_path = os.path.join(onnx_dir, "model.onnx")
        if backend == "onnx" and precision == "int8":
            q_dir = cached_build(cache, export_key(base, "onnx-int8"), lambda tmp: quantize_onnx_int8(onnx_path, tmp))
            onnx_path = os.path.join(q_dir, "model_int8.onnx")
        if backend == "openvino" and precision == "int8":
            # the recipe (float products, calibration) is part of the key: a changed recipe builds anew
            recipe = repr((INT8_FLOAT_PRODUCTS, CALIBRATION_TEXTS, CALIBRATION_SEED))
            recipe = hashlib.sha1(recipe.encode()).hexdigest()[:6]
            q_dir = cached_build(cache, export_key(base, f"onnx-int8-static-{recipe}"),
                                 lambda tmp: quantize_onnx_static_int8(st, onnx_path, tmp))
            onnx_path = os.path.join(q_dir, "model_int8_static.onnx")
        self._run, self._inputs = self._compile(onnx_path, threads)

    def _compile(self, onnx_path: str, threads: int):
        if self.backend == "openvino":
            import openvino as ov

            config = {"PERFORMANCE_HINT": "LATENCY"}
            if threads > 0:
                config["INFERENCE_NUM_THREADS"] = threads
            # int8: the quantised products run as int8 whatever the hint; the rest takes OpenVINO's
            # default (bf16 where the CPU has it), as `auto` does.
            if self.precision in ("bf16", "fp32"):
                config["INFERENCE_PRECISION_HINT"] = {"bf16": "bf16", "fp32": "f32"}[self.precision]
            core = ov.Core()
            compiled = core.compile_model(core.read_model(onnx_path), "CPU", config)
            inputs = [p.get_any_name() for p in compiled.inputs]
            out = compiled.outputs[0]
            return (lambda feed: compiled(feed)[out]), inputs
        if self.backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads > 0:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            inputs = [i.name for i in session.get_inputs()]
            return (lambda feed: session.run(None, feed)[0]), inputs
        raise ValueError(f"unknown exported backend {self.backend!r}")

    @property
    def max_seq_length(self) -> int:
        return self.st.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.st.max_seq_length = value

    def tokenize(self, texts):
        return model_inputs(self.st, texts)

    def get_embedding_dimension(self):
        getter = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        return getter()

    get_sentence_embedding_dimension = get_embedding_dimension

    def encode(self, texts: Sequence[str], batch_size: int = 64, convert_to_numpy: bool = True,
               normalize_embeddings: bool = False, **_ignored) -> np.ndarray:
        """Vectors in input order; inputs are sorted by length (longest first) and batched so each batch
        pads to its own longest member, as sentence-transformers does."""
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        by_length = np.argsort([-len(t) for t in texts], kind="stable")
        for lo in range(0, len(texts), batch_size):
            rows = by_length[lo : lo + batch_size]
            features = model_inputs(self.st, [texts[i] for i in rows])
            feed = {k: features[k].numpy().astype(np.int64) for k in self._inputs}
            tokens = torch.from_numpy(np.asarray(self._run(feed), dtype=np.float32))
            features = {"token_embeddings": tokens, "attention_mask": features["attention_mask"]}
            with torch.no_grad():
                for module in list(self.st)[1:]:
                    features = module(features)
            vecs = features["sentence_embedding"].float().numpy()
            if normalize_embeddings:
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            out[rows] = vecs
        return out
