"""Benchmark: curate's WARC reader + `extract` stage vs datatrove's WarcReader + Trafilatura step.

Prints ONE JSON line. Both sides read the same WARC files (the shared samples, copied `--repeat` times
so there is enough work) and extract main text with trafilatura in datatrove's sandbox process, with
the same options (favour precision and no comments as FineWeb; trafilatura's cross-page
`deduplicate` off on both sides, as the extract stage's default, because the copies would otherwise
be emptied) and the same per-document timeout. Rates are HTML pages per wall-clock second of the whole read + extract pass
(the parsing happens in the sandbox's child process, so this process's CPU time would miss it). The
sides alternate, `--rounds` times each, in one process, and the median of each side is reported, so
the ratio holds on a shared, loaded machine even when the absolute rates do not. `identical_texts`
is the share of pages both sides extracted (paired by file and WARC-Record-ID) whose texts are
byte-equal; `docs_out` differ where datatrove's reader skips pages (libmagic calls some HTML pages
`application/javascript`, and datatrove drops them without a count).

    python bench/extract.py [--repeat 5] [--rounds 3] [--warc ../shared/data/warc]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def copies(warc_dir: Path, repeat: int, into: Path) -> int:
    files = sorted(glob.glob(str(warc_dir / "*.warc.gz")))
    if not files:
        raise SystemExit(f"no *.warc.gz in {warc_dir}")
    for r in range(repeat):
        for f in files:
            shutil.copyfile(f, into / f"r{r:03d}-{os.path.basename(f)}")
    return len(files) * repeat


def run_curate(folder: str, timeout: float) -> tuple[float, dict[str, str], dict]:
    from curate.warc_input import CountingWarcReader
    from stages.extract.html import ExtractSettings, HtmlExtractor

    reader = CountingWarcReader(folder)
    step = HtmlExtractor(ExtractSettings(timeout_s=timeout))
    t0 = time.perf_counter()
    out = {(os.path.basename(d.metadata["warc_file"]), d.metadata.get("original_id", d.id)): d.text
           for d in step.run(reader.run())}
    wall = time.perf_counter() - t0
    stats = {k: (v.total if hasattr(v, "total") else v) for k, v in reader.stats.stats.items()}
    stats["extract_drops"] = {k[len("dropped_"):]: v.total for k, v in step.stats.stats.items()
                              if k.startswith("dropped_")}
    return wall, out, stats


def run_datatrove(folder: str, timeout: float) -> tuple[float, dict[str, str]]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(folder)  # adds metadata.file_path: pages pair with ours by (file, WARC-Record-ID)
    # the extract stage's defaults; deduplicate off on both sides (see stages/extract/html.py)
    step = Trafilatura(favour_precision=True, timeout=timeout, deduplicate=False)
    t0 = time.perf_counter()
    out = {(os.path.basename(d.metadata["file_path"]), d.id): d.text for d in step.run(reader.run())}
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warc", type=Path, default=REPO.parent / "shared" / "data" / "warc")
    ap.add_argument("--repeat", type=int, default=5, help="copies of each WARC file")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-document extraction timeout, both sides")
    args = ap.parse_args()

    from datatrove.utils.logging import logger

    logger.remove()  # datatrove logs every file it opens; the JSON line is the output
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        n_files = copies(args.warc, args.repeat, Path(tmp))
        ours_s, theirs_s = [], []
        ours = theirs = {}
        stats: dict = {}
        for _ in range(args.rounds):
            wall, ours, stats = run_curate(tmp, args.timeout)
            ours_s.append(wall)
            wall, theirs = run_datatrove(tmp, args.timeout)
            theirs_s.append(wall)
    pages = int(stats.get("documents", 0))
    both = set(ours) & set(theirs)
    same = sum(ours[k] == theirs[k] for k in both)
    ours_med, theirs_med = statistics.median(ours_s), statistics.median(theirs_s)
    print(json.dumps({
        "bench": "extract",
        "files": n_files,
        "warc_records": int(stats.get("warc_records", 0)),
        "html_pages": pages,
        "rounds": args.rounds,
        "timeout_s": args.timeout,
        "curate": {"pages_per_s": round(pages / ours_med, 2), "wall_s": round(ours_med, 3), "docs_out": len(ours),
                   "extract_drops": stats.get("extract_drops", {})},
        "datatrove": {"pages_per_s": round(pages / theirs_med, 2), "wall_s": round(theirs_med, 3),
                      "docs_out": len(theirs)},
        "speed_ratio_curate_over_datatrove": round(theirs_med / ours_med, 3),
        "identical_texts": round(same / len(both), 4) if both else None,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
