"""Embedding throughput and faithfulness, side by side in one run.

Default (`--options`): every CPU embedding option of the `embed` stage against bare
`SentenceTransformer.encode` (fp32, batch 64, the same texts, same threads), round-robin, best of
`--repeats` (the machine is shared, so only ratios within one run mean anything). For each option:
docs/s on a BBC sample (long articles, most cut at 256 tokens), speed vs bare, cosine to the fp32
vectors, and its effect on ordering: on BBC, AG News and mini 20 Newsgroups (seeded samples), the
order built by the project's default ordering (`edge_matching` on an exact k=20 graph of the option's
vectors) is scored by MAC with the fp32 vectors, as a share of the MAC of the order built from the
fp32 vectors themselves. `seed_noise_share` is the same share for the fp32 order with another seed:
differences below it are noise of the ordering heuristic, not of the vectors.

Options: torch bf16 autocast; OpenVINO bf16 / fp32 / int8 (static, calibrated); ONNX Runtime fp32 /
int8 (dynamic); the static model distilled locally (opt-in); and, for the best runtime, shorter
token windows (128), other batch sizes and batches without length sorting. Exports and the
static model are built first (one-time cost, reported) in `--model-cache` (default: the stage's cache folder, outside the repository).
Target: the best faithful option >= 2x bare docs/s with share >= 0.995 on all three corpora.

`--stage`: the older check that the `embed` stage (reader + EmbedDocuments, one task) encodes within
10% of bare encode on the same documents.

    python bench/embed.py [--quick] [--repeats 2] [--bbc 400 --ag 1200 --ng 400]
    python bench/embed.py --stage --limit 300
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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



def corpus_sample(name: str, n: int, seed: int = 0) -> list[str]:
    """A seeded sample of `n` texts of a shared corpus (all when n <= 0 or n >= its size)."""
    import numpy as np
    from _corpus_cache import read_corpus

    _, texts, _ = read_corpus(name)
    if 0 < n < len(texts):
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def order_of(vectors, seed: int = 0):
    """The project's default ordering of `vectors` on their exact k=20 graph."""
    from _corpus_cache import exact_knn

    from stages.order.algorithms import ALGORITHMS

    nbrs, sims = exact_knn(vectors, 20)
    return ALGORITHMS["edge_matching"](vectors, nbrs, sims, seed)


# name -> (load_model keyword arguments, encode_texts batch size, length-sorted)
OPTIONS = {
    "torch_bf16_autocast": ({"backend": "torch", "precision": "bf16"}, 64, True),
    "openvino_bf16": ({"backend": "openvino", "precision": "bf16"}, 64, True),
    "openvino_fp32": ({"backend": "openvino", "precision": "fp32"}, 64, True),
    "openvino_int8": ({"backend": "openvino", "precision": "int8"}, 64, True),
    "onnx_fp32": ({"backend": "onnx", "precision": "fp32"}, 64, True),
    "onnx_int8": ({"backend": "onnx", "precision": "int8"}, 64, True),
    "static": ({"backend": "static"}, 1024, True),
    # token length, batch size and length sorting, on the fastest faithful runtime
    "openvino_bf16_128_tokens": ({"backend": "openvino", "precision": "bf16", "max_tokens": 128}, 64, True),
    "openvino_bf16_batch_16": ({"backend": "openvino", "precision": "bf16"}, 16, True),
    "openvino_bf16_batch_128": ({"backend": "openvino", "precision": "bf16"}, 128, True),
    "openvino_bf16_unsorted": ({"backend": "openvino", "precision": "bf16"}, 64, False),
    "torch_fp32_unsorted": ({"backend": "torch", "precision": "fp32"}, 64, False),
}
FAITHFUL = ("torch_bf16_autocast", "openvino_bf16", "openvino_fp32", "openvino_int8", "onnx_fp32", "onnx_int8")
CORPORA = {"bbc": "bbc_news", "ag_news": "ag_news_test", "20ng": "mini_newsgroups"}


def encode_with(model, texts: list[str], batch_size: int, length_sorted: bool):
    """Vectors as the stage makes them (length-sorted blocks) or batch by batch in input order."""
    import numpy as np

    from stages.embed.encoder import encode_texts

    if length_sorted:
        return encode_texts(model, texts, batch_size)
    parts = [encode_texts(model, texts[lo : lo + batch_size], batch_size) for lo in range(0, len(texts), batch_size)]
    return np.concatenate(parts)


def run_options(args) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from stages.embed.encoder import load_model, resolve_model_path
    from stages.order.quality import mean_adjacent_cosine

    torch.set_num_threads(args.threads)
    sizes = {"bbc": args.bbc, "ag_news": args.ag, "20ng": args.ng}
    texts = {c: corpus_sample(f, sizes[c]) for c, f in CORPORA.items()}
    names = [n for n in OPTIONS if not args.only or n in args.only.split(",")]
    bare = SentenceTransformer(resolve_model_path(""), device="cpu", local_files_only=True)
    models, setup_s, errors = {}, {}, {}
    for name in names:
        kwargs, _, _ = OPTIONS[name]
        t = time.perf_counter()
        try:
            models[name] = load_model(threads=args.threads, model_cache=args.model_cache, **kwargs)
        except Exception as e:  # a missing extra: reported, the rest still runs
            errors[name] = f"{type(e).__name__}: {str(e)[:300]}"
            continue
        setup_s[name] = round(time.perf_counter() - t, 1)
    # speed: round-robin over bare and every option on the BBC sample, best of `repeats`
    speed_texts = texts["bbc"]
    best = {}

    def timed(key, fn):
        fn(speed_texts[:8])  # warm-up (first-call allocations, JIT of the runtime)
        t = time.perf_counter()
        out = fn(speed_texts)
        best[key] = min(best.get(key, 1e18), time.perf_counter() - t)
        return out

    bbc_vecs = {}
    for _ in range(args.repeats):
        bbc_vecs["bare"] = timed("bare", lambda x: bare.encode(x, batch_size=64, normalize_embeddings=True,
                                                              convert_to_numpy=True))
        for name, model in models.items():
            _, batch, srt = OPTIONS[name]
            bbc_vecs[name] = timed(name, lambda x, m=model, b=batch, s=srt: encode_with(m, x, b, s))
    # ordering share on each corpus
    ref, ref_mac, noise = {}, {}, {}
    for c, docs in texts.items():
        x = bbc_vecs["bare"] if c == "bbc" else np.asarray(
            bare.encode(docs, batch_size=64, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)
        ref[c] = np.ascontiguousarray(x, dtype=np.float32)
        ref_mac[c] = mean_adjacent_cosine(ref[c], order_of(ref[c]))
        noise[c] = round(mean_adjacent_cosine(ref[c], order_of(ref[c], seed=1)) / ref_mac[c], 4)
    options = {}
    for name, model in models.items():
        _, batch, srt = OPTIONS[name]
        row = {"docs_per_s": round(len(speed_texts) / best[name], 2), "speed_vs_bare": round(best["bare"] / best[name], 2),
               "setup_s": setup_s[name], "share": {}}
        for c, docs in texts.items():
            y = bbc_vecs[name] if c == "bbc" else encode_with(model, docs, batch, srt)
            y = np.ascontiguousarray(y, dtype=np.float32)
            if y.shape == ref[c].shape:
                cos = (y * ref[c]).sum(axis=1)
                row.setdefault("cosine_to_fp32_min", {})[c] = round(float(cos.min()), 4)
            row["share"][c] = round(mean_adjacent_cosine(ref[c], order_of(y)) / ref_mac[c], 4)
        row["share_min"] = min(row["share"].values())
        options[name] = row
        print(json.dumps({"progress": name, **row}), file=sys.stderr, flush=True)
    faithful = [n for n in FAITHFUL if n in options and options[n]["share_min"] >= 0.995]
    top = max(faithful, key=lambda n: options[n]["speed_vs_bare"], default=None)
    return {
        "bench": "embed_options", "model": "all-MiniLM-L6-v2", "threads": args.threads, "repeats": args.repeats,
        "reference": "bare SentenceTransformer.encode fp32, batch 64, same texts, same run",
        "documents": {c: len(t) for c, t in texts.items()}, "speed_corpus": "bbc",
        "bare_docs_per_s": round(len(speed_texts) / best["bare"], 2),
        "reference_mac": {c: round(v, 4) for c, v in ref_mac.items()},
        "seed_noise_share": noise,
        "options": options, "errors": errors,
        "best_faithful": top, "best_faithful_speed_vs_bare": options[top]["speed_vs_bare"] if top else None,
        "target_met": bool(top and options[top]["speed_vs_bare"] >= 2.0),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run_stage_check(args) -> dict:
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
    return {
        "bench": "embed_stage", "documents": n, "model": "all-MiniLM-L6-v2", "max_tokens": 256,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", action="store_true", help="the stage-vs-bare check instead of the options")
    ap.add_argument("--limit", type=int, default=300, help="--stage: BBC documents to embed (0 = all 2,225)")
    ap.add_argument("--quick", action="store_true", help="small samples, one repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64, help="--stage: batch size")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--bbc", type=int, default=400, help="BBC sample (speed and share); 0 = all 2,225")
    ap.add_argument("--ag", type=int, default=1200, help="AG News sample; 0 = all 7,600")
    ap.add_argument("--ng", type=int, default=400, help="mini 20 Newsgroups sample; 0 = all 2,000")
    ap.add_argument("--only", default="", help="comma-separated option names (default: all)")
    ap.add_argument("--model-cache", default="", help="folder for exports and the static model (default: the stage's)")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage_check(args)))
        return
    if args.quick:
        args.bbc, args.ag, args.ng, args.repeats = 60, 120, 60, 1
    print(json.dumps(run_options(args)))


if __name__ == "__main__":
    main()
