"""Benchmark: the counting jsonl reader (every hostile-input rule of issue 15) vs datatrove's own
JsonlReader, and vs the counting reader as it was before those rules (`git show 479f390`), on the same
files, side by side in one process.

Prints ONE JSON line: documents per CPU-second of this process (process_time, so the three sides are
comparable on a shared machine) for plain and gzip jsonl, and the ratios to datatrove's reader. Each
side reads every file three times; the best pass counts.

    python bench/readers.py [--docs 200000]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEFORE = "479f390"  # the last commit before the issue-15 reader rules


def write_corpus(folder: Path, n: int) -> None:
    rng = random.Random(0)
    words = "data model train corpus token window order graph cluster search index vector café".split()
    lines = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
        lines.append(json.dumps({"id": f"d{i}", "text": text, "url": f"https://example.org/{i}", "score": rng.random(),
                                 "tags": ["a", "b"], "n": rng.randint(0, 10**12)}, ensure_ascii=False))
    payload = ("\n".join(lines) + "\n").encode()
    (folder / "plain").mkdir()
    (folder / "gz").mkdir()
    (folder / "plain" / "a.jsonl").write_bytes(payload)
    (folder / "gz" / "a.jsonl.gz").write_bytes(gzip.compress(payload, compresslevel=6, mtime=0))


def old_reader_class():
    """The counting reader of commit BEFORE, loaded from git (None outside a git checkout)."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:curate/readers.py"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "readers_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("readers_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CountingJsonlReader


def rate(make_reader, folder: Path, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        reader = make_reader(str(folder))
        t0 = time.process_time()
        got = sum(1 for _ in reader.run(rank=0, world_size=1))
        best = min(best, time.process_time() - t0)
        assert got == n, (got, n)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    args = ap.parse_args()
    from datatrove.pipeline.readers import JsonlReader

    from curate.executors import quiet_datatrove_logs
    from curate.readers import CountingJsonlReader

    quiet_datatrove_logs()
    before = old_reader_class()
    out: dict = {"bench": "readers", "docs": args.docs, "unit": "docs per CPU-second (best of 3 passes)"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root, args.docs)
        out["mb_plain"] = round(os.path.getsize(root / "plain" / "a.jsonl") / 2**20, 1)
        for kind in ("plain", "gz"):
            folder = root / kind
            sides = {
                "datatrove": lambda f: JsonlReader(f),
                "counting_now": lambda f: CountingJsonlReader(f, problems_dir=str(root / "problems")),
            }
            if before is not None:
                sides[f"counting_{BEFORE}"] = lambda f: before(f, problems_dir=str(root / "problems"))
            rates = {name: rate(make, folder, args.docs) for name, make in sides.items()}
            out[kind] = {name: round(r) for name, r in rates.items()}
            out[kind]["now_vs_datatrove"] = round(rates["counting_now"] / rates["datatrove"], 3)
            if before is not None:
                out[kind][f"now_vs_{BEFORE}"] = round(rates["counting_now"] / rates[f"counting_{BEFORE}"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
