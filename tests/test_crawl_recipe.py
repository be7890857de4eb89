"""The crawl recipe end to end on the real WARC samples (`../shared/data/warc/`; skips without them):
no markup left in any document it writes, and every WARC record accounted for, stage by stage."""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import re

import pytest

from curate.api import read_documents, run_recipe
from curate.report import build_report

MARKUP = re.compile(r"<html|<div|<script|<!doctype", re.IGNORECASE)


@pytest.mark.slow
def test_crawl_en_recipe_on_real_warc(shared_data, tmp_path):
    if not glob.glob(str(shared_data / "warc" / "*.warc.gz")):
        pytest.skip("no WARC samples in the shared data")
    out = tmp_path / "crawl"
    res = run_recipe("crawl_en", overrides=[f"vars.data={shared_data}", "executor.tasks=2"], output=out)
    assert res.record["status"] == "done"

    # no markup in any document set the run wrote (every phase's, not only the last)
    written = 0
    for path in glob.glob(str(out / "**" / "documents" / "*.jsonl.gz"), recursive=True):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                written += 1
                hit = MARKUP.search(doc["text"])
                assert hit is None, f"{doc['metadata'].get('url')}: {doc['text'][max(0, hit.start() - 40):hit.end() + 40]!r}"
                assert doc["metadata"]["url"].startswith("http") and doc["metadata"]["warc_offset"] >= 0
    assert written > 0

    report = build_report(str(out))
    rows = report.stage_rows()
    reader = next(s for s in report.phases[0].steps if s.stage == "read")
    c = reader.counters
    # records in = documents + counted drops by reason, at the reader ...
    assert c["warc_records"] == c["documents"] + c["dropped_input"]
    assert c["dropped_input"] == sum(v for k, v in c.items() if k.startswith("dropped_input_"))
    # ... and at every stage after it: in = out + drops by reason, each stage's in = the previous out
    assert rows[0].stage == "input" and rows[0].docs_in == c["warc_records"]
    for prev, row in itertools.pairwise(rows):
        assert row.docs_in == prev.docs_out, (prev, row)
        if row.stage != "output":
            assert row.docs_in == row.docs_out + sum(row.drops.values()) - row.drops.get("input", 0), row
    final = rows[-1].docs_out
    all_drops = sum(v for r in rows for k, v in r.drops.items() if not (r.stage == "input" and k == "input"))
    assert c["warc_records"] == final + all_drops
    assert final == len(read_documents(res.final_documents))

    # the funnel names records, pages and documents; the extract stage kept the pages' text
    funnel = report.crawl_funnel()
    pages = c["warc_records"] - c["dropped_input_not_a_response"]
    assert f"{c['warc_records']:,} records, {pages:,} pages" in funnel and f"{final:,} documents out" in funnel
    extract = next(r for r in rows if r.stage == "extract")
    assert extract.docs_out >= 0.8 * extract.docs_in  # hand-picked research pages: trafilatura finds text in most
