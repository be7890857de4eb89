"""`minhash_dedup` at scale: wall time and peak memory of every phase on synthetic documents.

Synthetic corpus: N documents of ~80 random words (~500 characters) drawn from a 20,000-word
vocabulary; `--dup-share` of them (default 5%) are planted near-duplicates of another document with
one word replaced (exact char-13-gram Jaccard ~0.9). The phases are the runner's (`plan_run` of a
one-stage recipe); after the input pass (which writes the document set, not counted), each phase
(signatures, buckets, clusters, apply = filter + writer) runs in a fresh process through datatrove's
LocalPipelineExecutor; its peak RSS is
measured in that process (`peak_rss_mb`, VmHWM), next to the peak of the same process after imports
(`base_rss_mb`), so `peak - base` is what the phase itself held; `cpu_s` is the phase's CPU time,
which stays meaningful when the machine is shared and wall time is not. Quality: share of planted duplicates
removed, and removed documents that were not planted. Prints one JSON line.

    python bench/dedup_scale.py [--docs 1000000] [--tasks 4] [--parts 1] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited from the forking parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_corpus(folder: str, docs: int, shards: int, dup_share: float, seed: int = 0) -> set[str]:
    """Write the corpus; return the ids of the planted near-duplicates (each has a smaller-id original)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(3, 10, size=20000)]
    n_dup = int(docs * dup_share)
    n_orig = docs - n_dup
    words = rng.integers(0, len(vocab), size=(n_orig, 80))
    sources = rng.integers(0, n_orig, size=n_dup)
    os.makedirs(folder, exist_ok=True)
    planted = set()
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(gzip.open(os.path.join(folder, f"{s:05d}.jsonl.gz"), "wt", compresslevel=1))
            for s in range(shards)
        ]
        _write_docs(files, docs, n_orig, words, sources, vocab, rng, planted)
    return planted


def _write_docs(files, docs, n_orig, words, sources, vocab, rng, planted) -> None:
    for i in range(docs):
        if i < n_orig:
            doc_id, row = f"o{i:08d}", words[i].tolist()
        else:
            src = int(sources[i - n_orig])
            row = words[src].tolist()
            row[int(rng.integers(0, 80))] = int(rng.integers(0, len(vocab)))
            doc_id = f"v{i:08d}"  # "v..." > "o...": the original is the smallest id of its cluster
            planted.add(doc_id)
        files[i % len(files)].write(json.dumps({"id": doc_id, "text": " ".join(vocab[w] for w in row)}) + "\n")


def _phase_worker(plan_args, phase_name, queue):
    import logging

    from loguru import logger

    logger.remove()
    logging.disable(logging.INFO)
    from datatrove.executor import LocalPipelineExecutor

    from curate.recipe import load_recipe
    from curate.runner import plan_run
    from stages.dedup.hashing import minhash_signature, permutations

    inp, out, tasks, parts = plan_args
    plan = plan_run(load_recipe({"input": {"format": "jsonl", "paths": inp}, "output": out,
                                 "executor": {"tasks": tasks}, "stages": [{"minhash_dedup": {"parts": parts}}]}))
    phase = next(p for p in plan.phases if p.id in (phase_name, f"minhash_dedup.{phase_name}"))
    minhash_signature(np.arange(3, dtype=np.uint64), *permutations(128, 0))  # numba compile/load, not timed
    base, cpu0 = peak_rss_mb(), cpu_s()
    n_tasks = phase.tasks
    start = time.perf_counter()
    LocalPipelineExecutor(phase.pipeline, tasks=n_tasks, workers=1, logging_dir=os.path.join(out, phase.id)).run()
    queue.put(
        {
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(cpu_s() - cpu0, 2),
            "tasks": n_tasks,
            "base_rss_mb": round(base, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


def run_phase(plan_args, name: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_phase_worker, args=(plan_args, name, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=4, help="document shards (signatures and apply tasks)")
    parser.add_argument("--parts", type=int, default=1, help="hash-range parts per band")
    parser.add_argument("--dup-share", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="20,000 documents")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    docs = 20_000 if args.quick else args.docs
    work = args.workdir or tempfile.mkdtemp(prefix="dedup_scale_")
    try:
        start = time.perf_counter()
        planted = make_corpus(os.path.join(work, "in"), docs, args.tasks, args.dup_share)
        gen_s = time.perf_counter() - start
        plan_args = (os.path.join(work, "in"), os.path.join(work, "out"), args.tasks, args.parts)
        input_pass = run_phase(plan_args, "input")  # the document set the stage's phases read: not timed
        phases = {name: run_phase(plan_args, name) for name in ("signatures", "buckets", "clusters", "apply")}
        import polars as pl

        removed = set(
            pl.read_parquet(os.path.join(work, "out", "minhash_dedup.clusters", "data", "clusters.parquet"))["id"]
        )
        sig_bytes = sum(
            p.stat().st_size for p in Path(work, "out", "minhash_dedup.signatures").rglob("band_*/**/*.parquet")
        )
        dedup_s = sum(p["wall_s"] for k, p in phases.items() if k != "apply")
        dedup_cpu = sum(p["cpu_s"] for k, p in phases.items() if k != "apply")
        print(
            json.dumps(
                {
                    "bench": "dedup_scale_minhash",
                    "docs": docs,
                    "planted_duplicates": len(planted),
                    "recall_planted": round(len(removed & planted) / max(1, len(planted)), 4),
                    "removed_not_planted": len(removed - planted),
                    "corpus_generation_s": round(gen_s, 1),
                    "input_pass_s_untimed": input_pass["wall_s"],
                    "phases": phases,
                    "dedup_wall_s": round(dedup_s, 1),
                    "dedup_docs_per_s": round(docs / dedup_s, 1),
                    "dedup_docs_per_cpu_s": round(docs / dedup_cpu, 1),
                    "band_files_bytes_per_doc_per_band": round(sig_bytes / docs / 9, 2),
                    "tasks": args.tasks,
                    "workers": 1,
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
