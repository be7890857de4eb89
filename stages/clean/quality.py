"""Quality classifier: train a fastText model from positive/negative files; apply it as a stage.

MAP-Neo trains a binary fastText classifier (epoch 3, lr 0.1, dim 256, wordNgrams 3, minCount 3,
quantised) on 500k samples split 0.95 / 0.025 / rest, and keeps a document when P(positive) > 0.96.
`train_quality_model` reproduces that recipe on the user's files (`curate train-quality`); the
`quality_classifier` stage applies any such model and records the score in `metadata`.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import multiprocessing
import os
import random
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import Field

from curate.atomic import atomic_path, write_json_atomic
from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"


def read_samples(path: str | Path, text_key: str = "text") -> Iterator[str]:
    """Texts of a file: `.jsonl` / `.jsonl.gz` / `.json.gz` -> the `text_key` field of each line,
    anything else -> one sample per non-empty line (gzip when the name ends in `.gz`)."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    is_jsonl = any(path.endswith(ext) for ext in (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson"))
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if is_jsonl:
                line = line.strip()
                if not line:
                    continue
                try:
                    text = json.loads(line).get(text_key)
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(text, str) and text.strip():
                    yield text
            elif line.strip():
                yield line.rstrip("\n")


def to_fasttext_line(text: str) -> str:
    """One sample as fastText reads it: a single line of whitespace-separated tokens."""
    return " ".join(text.split())


def _collect(paths: Iterable[str | Path], text_key: str, limit: int, rng: random.Random) -> list[str]:
    """Up to `limit` samples drawn uniformly (reservoir sampling, seeded) from all `paths`."""
    reservoir: list[str] = []
    seen = 0
    for path in paths:
        for text in read_samples(path, text_key):
            line = to_fasttext_line(text)
            if not line:
                continue
            seen += 1
            if len(reservoir) < limit:
                reservoir.append(line)
            else:
                j = rng.randrange(seen)
                if j < limit:
                    reservoir[j] = line
    return reservoir


def _binary_scores(model, samples: list[tuple[str, str]], threshold: float) -> dict:
    tp = fp = fn = tn = 0
    for label, text in samples:
        pred_pos = positive_probability(model, text) > threshold
        if label == POSITIVE:
            tp, fn = (tp + 1, fn) if pred_pos else (tp, fn + 1)
        else:
            fp, tn = (fp + 1, tn) if pred_pos else (fp, tn + 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(samples), "precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _load(path: str):
    import fasttext

    return fasttext.load_model(path)


def _fit(train_file: str, out: str, fit_args: dict, quantize: bool, cutoff: int) -> tuple[float, int]:
    """Train (and quantise) one model and save it atomically to `out`; runs in a child process.

    One thread: fastText's Hogwild updates make multi-threaded training non-deterministic. A
    diverging run ("Encountered NaN": per fastText's maintainers, a learning rate too high for the
    data) is retried with half the learning rate, at most 3 times; the report says so."""
    import fasttext

    lr, retries = fit_args["lr"], 0
    while True:
        try:
            model = fasttext.train_supervised(
                input=train_file, **{**fit_args, "lr": lr}, loss="softmax", thread=1, verbose=0
            )
            break
        except RuntimeError as e:
            if "NaN" not in str(e) or retries == 3:
                raise
            lr, retries = lr / 2, retries + 1
    if quantize:
        model.quantize(input=train_file, cutoff=cutoff, retrain=False, qnorm=True, thread=1, verbose=0)
    with atomic_path(out) as tmp_out:
        model.save_model(tmp_out)
    return lr, retries


def positive_probability(model, text: str) -> float:
    """P(positive) of one text under a binary model trained by `train_quality_model`."""
    labels, probs = model.predict(to_fasttext_line(text), k=2)
    for label, p in zip(labels, probs):
        if label == POSITIVE:
            return float(min(p, 1.0))
    return 0.0


def train_quality_model(
    positive: list[str],
    negative: list[str],
    out: str,
    *,
    epoch: int = 3,
    lr: float = 0.1,
    dim: int = 256,
    word_ngrams: int = 3,
    min_count: int = 3,
    quantize: bool = True,
    max_samples: int = 500_000,
    seed: int = 0,
    text_key: str = "text",
    threshold: float = 0.5,
    bucket: int = 2_000_000,
    quantize_cutoff: int = 0,
) -> dict:
    """Train MAP-Neo's fastText quality classifier and save it to `out`.

    positive / negative: files of high-quality / general text (jsonl(.gz) with `text_key`, or plain
    text with one sample per line). At most `max_samples` samples in all, half from each side when
    both have enough (seeded reservoir sample). Split 0.95 train / 0.025 validation / rest test.
    Returns precision / recall / F1 of the positive class on the validation and test splits
    (P(positive) > `threshold`), sample counts and the model path; writes them to `out + ".json"`.
    `bucket` is fastText's hash-table size for word n-grams (its default; smaller trains faster);
    `quantize_cutoff` > 0 keeps only that many embedding rows when quantising (0 keeps all).
    """
    rng = random.Random(seed)
    half = max_samples // 2
    pos = _collect(positive, text_key, half, rng)
    neg = _collect(negative, text_key, max_samples - len(pos), rng)
    if not pos or not neg:
        raise ValueError(f"need positive and negative samples (got {len(pos)} / {len(neg)})")
    data = [(POSITIVE, t) for t in pos] + [(NEGATIVE, t) for t in neg]
    rng.shuffle(data)
    n_train = int(len(data) * 0.95)
    n_valid = int(len(data) * 0.025)
    train, valid, test = data[:n_train], data[n_train : n_train + n_valid], data[n_train + n_valid :]

    with tempfile.TemporaryDirectory(prefix="curate-quality-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            for label, text in train:
                f.write(f"{label} {text}\n")
        fit_args = dict(epoch=epoch, lr=lr, dim=dim, wordNgrams=word_ngrams, minCount=min_count, bucket=bucket, seed=seed)
        # Training runs in a fresh process: inside long-lived processes (a test session that had
        # run jieba and lid.176 before) fastText 0.9.2 intermittently diverged to NaN at any
        # learning rate, never in a fresh interpreter. The parent only loads the saved model.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            used_lr, retries = pool.submit(_fit, train_file, out, fit_args, quantize, quantize_cutoff).result()
    model = _load(out)  # not the per-process cache: a retrained model may reuse the path
    report = {
        "model": out,
        "quantized": quantize,
        "samples": {
            "positive": len(pos), "negative": len(neg), "train": len(train), "valid": len(valid), "test": len(test)
        },
        "lr_used": used_lr,
        "nan_retries": retries,
        "settings": {
            "epoch": epoch, "lr": lr, "dim": dim, "word_ngrams": word_ngrams,
            "min_count": min_count, "seed": seed, "bucket": bucket,
        },
        "threshold": threshold,
        "valid": _binary_scores(model, valid, threshold),
        "test": _binary_scores(model, test, threshold),
    }
    write_json_atomic(report, out + ".json")
    return report


class QualityClassifierSettings(StageSettings):
    model: str = Field(..., description="fastText model trained by `curate train-quality` (.ftz or .bin)")
    threshold: float = Field(0.96, ge=0, le=1, description="keep a document when P(positive) is above this (MAP-Neo: 0.96)")
    score_key: str = Field("quality_score", description="metadata key the score is written to")
    annotate_only: bool = Field(False, description="only record the score, drop nothing")


class QualityClassifierFilter(BaseFilter):
    """datatrove's FastTextClassifierFilter keeps scores >= threshold, stores them under label names
    and drops without a reason; MAP-Neo's rule is a strict `>`, and curate names the drop reason."""

    name = "🏅 fastText quality"
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(self, settings: QualityClassifierSettings, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from stages.clean.langid import load_fasttext_model

            self._model = load_fasttext_model(self.settings.model)
        return self._model

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        score = positive_probability(self.model, doc.text)
        doc.metadata[self.settings.score_key] = score
        if self.settings.annotate_only or score > self.settings.threshold:
            return True
        return False, "low_quality_score"


@register_stage("quality_classifier", settings=QualityClassifierSettings, kind="document")
def build_quality_classifier(settings: QualityClassifierSettings, ctx: StageContext) -> list:
    """fastText quality classifier: records P(high quality), keeps documents above the threshold (0.96)."""
    return [QualityClassifierFilter(settings, exclusion_writer=ctx.removed_writer())]
