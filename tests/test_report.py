"""The report a newcomer reads: characters beside documents in the funnel (so text-removing dedup
shows), a few removed documents per reason, datatrove's raw counters folded away, a glossary, and
axes with ticks on every plot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from curate.api import run_recipe
from curate.plots import nice_ticks
from curate.report import build_report
from helpers import read_docs, synthetic_docs, write_jsonl_gz

SHARED = "This paragraph is boilerplate that every page of the site repeats word for word, a footer."


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    docs = synthetic_docs(80)
    for i, d in enumerate(docs):
        d["text"] = " ".join([d["text"]] * 4)  # long enough to stay after losing a paragraph
        if i % 3 == 0:  # a repeated paragraph: text removed from documents that stay
            d["text"] += "\n\n" + SHARED
    # exact duplicates: whole documents dropped
    docs += [{**docs[i], "id": f"d9{i:05d}"} for i in (1, 2, 4, 5)]
    data = write_jsonl_gz(base / "d.jsonl.gz", docs)
    recipe = {"name": "report", "input": {"paths": str(data)}, "output": str(base / "out"),
              "executor": {"tasks": 2, "workers": 2},
              "stages": ["normalize", "exact_dedup", "paragraph_dedup"]}
    return run_recipe(recipe), docs


def test_funnel_counts_characters_and_shows_what_paragraph_dedup_removes(run):
    res, docs = run
    rows = {r.stage: r for r in build_report(res.output_dir).stage_rows()}
    assert rows["input"].chars_in == sum(len(d["text"]) for d in docs)
    final = read_docs(res.final_documents)
    assert rows["output"].chars_out == sum(len(d["text"]) for d in final)
    para = rows["paragraph_dedup"]
    assert para.docs_out == para.docs_in  # no document dropped...
    assert para.chars_in - para.chars_out >= (len(SHARED) + 2) * 5  # ...but the repeats of the paragraph went
    # the rows chain: what one stage passes on is what the next receives
    order = ["input", "normalize", "exact_dedup", "paragraph_dedup", "output"]
    for a, b in zip(order, order[1:]):
        assert rows[a].chars_out == rows[b].chars_in, (a, b)
    assert rows["exact_dedup"].chars_out < rows["exact_dedup"].chars_in


def test_html_has_samples_glossary_folded_counters_and_axes(run):
    res, docs = run
    html = Path(build_report(res.output_dir).write_html()).read_text()
    # a few removed documents per reason, each a real removed document
    samples = html.split("Removed documents, a few per reason", 1)[1]
    shown = re.findall(r"<summary>exact_dedup: exact_duplicate \((\d+) shown\)</summary>", samples)
    assert shown and 1 <= int(shown[0]) <= 3
    kept = {d["id"] for d in read_docs(res.final_documents)}
    sample_ids = re.findall(r"<p><b>(d\d+)</b></p>", samples.split("</details>")[0])
    assert sample_ids and not set(sample_ids) & kept and set(sample_ids) <= {d["id"] for d in docs}
    # datatrove's counters are inside a <details> block, not in the phase table
    phases = html.split("<h2>Phases</h2>", 1)[1]
    assert phases.index("<details><summary>datatrove counters") < phases.index("doc_len=")
    assert "<h2>Glossary</h2>" in html and "<dt>mac</dt>" in html and "<dt>bound_ratio</dt>" in html
    assert "<dt>coherence</dt>" in html
    # every plot has an axis title and tick labels
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 2
    for svg in svgs:
        assert "% of the input" in svg or "documents dropped" in svg
        assert len(re.findall(r"text-anchor='middle'>[-\d.,kM%]+</text>", svg)) >= 3


def test_nice_ticks_cover_the_range_with_round_steps():
    for lo, hi in [(0, 1), (0, 97), (-0.25, 1.0), (0, 123456), (0.31, 0.33)]:
        t = nice_ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and 3 <= len(t) <= 12
        steps = {round(b - a, 9) for a, b in zip(t, t[1:])}
        assert len(steps) == 1
        mantissa = float(f"{steps.pop():e}".split("e")[0])
        assert mantissa in (1.0, 2.0, 2.5, 5.0)
