"""Small builders shared by the framework tests: corpora written to tmp folders, CLI runners."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_jsonl_gz(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def curate_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed CLI exactly as a user does (a separate process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *args], cwd=cwd or REPO, capture_output=True, text=True,
        timeout=timeout, env=env,
    )


# Runs the CLI in this interpreter and, on the way out, prints the process's own peak memory: VmHWM
# belongs to the address space that exec created, whereas ru_maxrss (and RUSAGE_CHILDREN in the
# parent) starts at the size of the process that forked it, e.g. a pytest that has loaded models.
_PEAK_WRAPPER = """
import resource, runpy, sys
sys.argv = ["curate", *sys.argv[1:]]
try:
    runpy.run_module("curate.cli", run_name="__main__")
finally:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"CURATE_PEAK_KIB {max(hwm, kids)}", file=sys.stderr)
"""


def curate_cli_peak(*args: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess, int]:
    """`curate_cli`, plus the run's own peak resident memory in bytes (its largest process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout, env=env)
    marks = [line for line in res.stderr.splitlines() if line.startswith("CURATE_PEAK_KIB ")]
    return res, int(marks[-1].split()[1]) * 1024 if marks else 0


def read_docs(folder: str | Path) -> list[dict]:
    from curate.api import read_documents

    return read_documents(str(folder))


def synthetic_docs(n: int, seed: int = 0, dup_every: int = 0) -> list[dict]:
    """Distinct, deterministic English-like documents; every `dup_every`-th repeats an earlier text."""
    import random

    rng = random.Random(seed)
    words = ("data model train corpus token window order graph cluster search index vector document "
             "language quality filter rule paragraph sentence neighbour path pack shard task phase").split()
    docs = []
    for i in range(n):
        if dup_every and i and i % dup_every == 0:
            text = docs[i - dup_every // 2]["text"]
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(30, 120))) + f" doc{i}."
        docs.append({"id": f"d{i:06d}", "text": text, "topic": words[i % 5]})
    return docs


def bbc_interleaved(shared_data: Path, n: int, chars: int, distinct_prefix: int | None = None) -> list[dict]:
    """n BBC articles ({id, text, label}) cut to `chars` characters, topics interleaved (the file is
    sorted by topic); texts whose first `distinct_prefix` characters (all, if None) repeat an earlier
    one are skipped."""
    by_label: dict[str, list[dict]] = {}
    seen = set()
    with gzip.open(shared_data / "bbc_news.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = d["text"][:chars]
            key = text if distinct_prefix is None else text[:distinct_prefix]
            if key not in seen:
                seen.add(key)
                by_label.setdefault(d["label"], []).append({"id": d["id"], "text": text, "label": d["label"]})
    labels = sorted(by_label)
    return [by_label[labels[i % len(labels)]][i // len(labels)] for i in range(n)]
