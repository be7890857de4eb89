"""Quality classifier: a real (tiny, fast-settings) fastText model trained on real corpora, applied as a stage."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from datatrove.data import Document

from stages.clean.quality import (
    QualityClassifierFilter,
    QualityClassifierSettings,
    positive_probability,
    read_samples,
    train_quality_model,
)

FAST = dict(epoch=25, lr=0.1, dim=16, word_ngrams=2, min_count=1, bucket=50_000, quantize_cutoff=5_000, max_samples=1_000)


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("quality") / "quality.ftz")
    report = train_quality_model(
        [str(shared_data / "bbc_news.jsonl.gz")], [str(shared_data / "mini_newsgroups.jsonl.gz")], out, **FAST
    )
    return out, report


def test_training_report_and_files(model):
    out, report = model
    assert os.path.isfile(out) and os.path.isfile(out + ".json")
    assert report["quantized"] is True
    s = report["samples"]
    assert s["positive"] == 500 and s["negative"] == 500
    assert s["train"] == 950 and s["valid"] == 25 and s["test"] == 25
    # BBC news vs Usenet posts is an easy split: a working pipeline must separate them on held-out data
    assert report["test"]["f1"] > 0.8 and report["valid"]["f1"] > 0.8
    assert report["test"]["precision"] == report["test"]["tp"] / max(1, report["test"]["tp"] + report["test"]["fp"])


def test_training_is_deterministic(model, shared_data, tmp_path):
    out, report = model
    again = train_quality_model(
        [str(shared_data / "bbc_news.jsonl.gz")], [str(shared_data / "mini_newsgroups.jsonl.gz")], str(tmp_path / "m.ftz"), **FAST
    )
    assert again["test"] == report["test"] and again["valid"] == report["valid"]


def test_stage_scores_and_filters(model, shared_data):
    out, _ = model
    with gzip.open(shared_data / "ag_news_test.jsonl.gz", "rt") as f:
        news = [json.loads(next(f))["text"] for _ in range(1)]
    newsgroup = next(read_samples(shared_data / "mini_newsgroups.jsonl.gz"))
    f = QualityClassifierFilter(QualityClassifierSettings(model=out, threshold=0.5))
    d1, d2 = Document(text=news[0], id="1"), Document(text=newsgroup, id="2")
    r1, r2 = f.filter(d1), f.filter(d2)
    assert 0 <= d1.metadata["quality_score"] <= 1 and 0 <= d2.metadata["quality_score"] <= 1
    assert r2 in (True, (False, "low_quality_score"))
    # threshold semantics: strict ">" on the recorded score
    strict = QualityClassifierFilter(QualityClassifierSettings(model=out, threshold=d1.metadata["quality_score"]))
    assert strict.filter(Document(text=news[0], id="1b")) == (False, "low_quality_score")
    annotate = QualityClassifierFilter(QualityClassifierSettings(model=out, threshold=1.0, annotate_only=True))
    assert annotate.filter(Document(text=newsgroup, id="3")) is True


def test_held_out_bbc_scores_above_newsgroups(model, shared_data):
    from stages.clean.langid import load_fasttext_model

    out, _ = model
    m = load_fasttext_model(out)
    bbc = list(read_samples(shared_data / "bbc_news.jsonl.gz"))[-100:]
    ng = list(read_samples(shared_data / "mini_newsgroups.jsonl.gz"))[-100:]
    pos = sum(positive_probability(m, t) for t in bbc) / len(bbc)
    neg = sum(positive_probability(m, t) for t in ng) / len(ng)
    assert pos > neg + 0.3


def test_plain_text_input(tmp_path):
    p = tmp_path / "lines.txt"
    p.write_text("first sample\n\nsecond sample\n", encoding="utf-8")
    assert list(read_samples(p)) == ["first sample", "second sample"]
