"""Benchmark: MAP-Neo English rules vs datatrove's Gopher + C4 + FineWeb filter chain, same documents.

Prints ONE JSON line. Rates are documents per CPU-second of this single process (= per core), so the
two sides are comparable on a shared machine; both run in the same process on the same pages, each
with early exit (a document dropped by one rule/filter is not looked at by the later ones), as in a
pipeline. Per-rule and per-intermediate timings come from a second pass in which every enabled rule
runs on every document with the shared intermediates computed (and timed) first.

    python bench/clean.py [--quick] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_pages(data: Path, limit: int | None) -> list[dict]:
    with gzip.open(data / "web_pages.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


def run_ours(texts: list[str], settings) -> tuple[float, dict]:
    from stages.clean.english_rules import EnglishRules

    rules = EnglishRules(settings)
    rules.first_failure("Warm up the tokenizers and the model. This is a sentence.")
    reasons: dict[str, int] = {}
    t0 = time.process_time()
    for text in texts:
        r = rules.first_failure(text, {})
        reasons[r or "kept"] = reasons.get(r or "kept", 0) + 1
    return time.process_time() - t0, reasons


def run_datatrove_chain(texts: list[str]) -> tuple[float, dict, dict]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    try:  # datatrove's English word tokenizer is spaCy's; curate itself does not need it
        import spacy  # noqa: F401
    except ImportError:
        sys.exit("bench/clean.py: the datatrove reference chain needs spaCy: pip install 'curate[bench]' (or spacy)")
    chain = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    for f in chain:  # warm-up: spaCy's English tokenizer loads on first use
        f.filter(Document(text="Warm up the tokenizer. This is a sentence.", id="warm"))
    per_filter = {f.name: 0.0 for f in chain}
    outcome: dict[str, int] = {}
    t0 = time.process_time()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        reason = "kept"
        for f in chain:
            t = time.process_time()
            res = f.filter(doc)
            per_filter[f.name] += time.process_time() - t
            ok = res if isinstance(res, bool) else res[0]
            if not ok:
                reason = f"{f.name}: {res[1] if isinstance(res, tuple) else ''}"
                break
        outcome[reason] = outcome.get(reason, 0) + 1
    return time.process_time() - t0, per_filter, outcome


def per_rule_profile(texts: list[str], settings) -> tuple[dict, dict]:
    """Every enabled rule on every document (no early exit), intermediates timed separately."""
    from stages.clean.english_features import FEATURES, EnglishFeatures
    from stages.clean.english_rules import EnglishRules

    rules = EnglishRules(settings)
    feat_t = {name: 0.0 for name in FEATURES}
    rule_t = {name: 0.0 for name, _ in rules.rules}
    for text in texts:
        f = EnglishFeatures(text)
        for name in FEATURES:
            t = time.process_time()
            getattr(f, name)
            feat_t[name] += time.process_time() - t
        meta: dict = {}
        for name, rule in rules.rules:
            t = time.process_time()
            rule(f, meta)
            rule_t[name] += time.process_time() - t
    n = len(texts)
    return (
        {k: round(v / n * 1000, 4) for k, v in feat_t.items()},
        {k: round(v / n * 1000, 4) for k, v in rule_t.items()},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 200 pages only")
    ap.add_argument("--data", default=os.environ.get("CURATE_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()

    from stages.clean.english_rules import EnglishRulesSettings

    pages = load_pages(Path(args.data), 200 if args.quick else None)
    texts = [p["text"] for p in pages]
    n = len(texts)

    default = EnglishRulesSettings()
    ours_s, ours_reasons = run_ours(texts, default)
    chain_s, chain_per_filter, chain_outcome = run_datatrove_chain(texts)
    no_lid_s, no_lid_reasons = run_ours(texts, EnglishRulesSettings(min_language_score=None))
    compat_s, compat_reasons = run_ours(texts, EnglishRulesSettings(reference_compat=True))
    features_ms, rules_ms = per_rule_profile(texts, default)

    result = {
        "bench": "clean",
        "documents": n,
        "mean_chars": round(sum(map(len, texts)) / n),
        "unit": "documents per CPU-second, one process",
        "ours_english_rules_docs_per_s": round(n / ours_s, 2),
        "datatrove_chain_docs_per_s": round(n / chain_s, 2),
        "ratio_ours_over_chain": round(chain_s / ours_s, 3),
        "ours_without_langid_docs_per_s": round(n / no_lid_s, 2),
        "ratio_ours_without_langid_over_chain": round(chain_s / no_lid_s, 3),
        "ours_reference_compat_docs_per_s": round(n / compat_s, 2),
        "ratio_ours_reference_compat_over_chain": round(chain_s / compat_s, 3),
        "datatrove_chain": "GopherQualityFilter > GopherRepetitionFilter > C4QualityFilter > FineWebQualityFilter",
        "kept": {
            "ours": ours_reasons.get("kept", 0),
            "ours_without_langid": no_lid_reasons.get("kept", 0),
            "ours_reference_compat": compat_reasons.get("kept", 0),
            "datatrove_chain": chain_outcome.get("kept", 0),
        },
        "ours_drop_reasons": dict(sorted(ours_reasons.items(), key=lambda kv: -kv[1])),
        "ours_compat_drop_reasons": dict(sorted(compat_reasons.items(), key=lambda kv: -kv[1])),
        "chain_ms_per_doc_by_filter": {k: round(v / n * 1000, 3) for k, v in chain_per_filter.items()},
        "ours_ms_per_doc_by_intermediate": features_ms,
        "ours_ms_per_doc_by_rule": rules_ms,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
