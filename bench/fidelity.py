"""Fidelity: curate's `reference_compat` mode against the decisions of MAP-Neo's released code.

Prints ONE JSON line. The released code's decisions on two visible corpora are in
`../shared/reference/mapneo/decisions_*.jsonl` (README there; never copied into this project):

* English: every page of `web_pages.jsonl.gz` through `english_rules` with `reference_compat: true`
  and MAP-Neo's own stop-word and bad-word lists (`--stop-words` / `--bad-words`, default: the copies
  beside the decisions; of the bad-word file only the two tuples the released filter reads, see
  `released_bad_word_file`);
* Chinese: every zh / zh-CN / zh-TW document of `debian_multilingual.jsonl.gz` through
  `chinese_format -> url_filter -> chinese_rules -> langid`, all in compat mode, the text rewritten
  by the stages themselves; for documents both sides keep, the SHA-256 of curate's rewritten text is
  compared with the released code's (`text_sha256`).

Figures per language: `agreement` (keep/drop), `confusion` (both_keep, both_drop, ours_keep_ref_drop,
ours_drop_ref_keep), `group_agreement` (same first failing rule group among documents both drop),
`flips` (for each disagreement: curate's drop reason or `kept` -> the released group or `kept`), and
for Chinese `text_equal_share` (of documents both keep). `flip_ids` lists up to 20 flipped ids.

    python bench/fidelity.py [--only en|zh] [--limit N] [--data DIR] [--reference DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ZH_LANGS = ("zh", "zh-CN", "zh-TW")
# curate's drop reasons -> the released code's rule groups (the decisions files name groups only)
EN_GROUPS = {"gopher": "gopher", "ccnet": "ccnet", "c4": "c4", "guide": "pretrainer", "self": "self_defined", "rep": "refinedweb"}
ZH_GROUPS = {
    "zh_bracket_content": "unify_format",
    "url_blacklist": "url_filter",
    "empty_after_url_strip": "url_filter",
    "low_language_score": "ccnet_rules",
    "unexpected_language": "ccnet_rules",
}


# MAP-Neo's bad-word file beside the decisions holds three released tuples one after another:
# STRICT_BAD_URL_WORDS, HARD_BAD_URL_WORDS and SOFT_BAD_URL_WORDS. The released English filter consults
# the first two only (with all three, every page naming e.g. "game", "live" or "body" would drop:
# agreement 0.760, every flip a soft-list word). The soft tuple is found by its first entries.
SOFT_LIST_START = ["sex", "webcam", "escort", "adult"]


def released_bad_word_file(path: str, out_dir: str) -> str:
    """`path` cut before the SOFT_BAD_URL_WORDS tuple (unchanged when that tuple is not in it)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    k = len(SOFT_LIST_START)
    cut = next((i for i in range(len(lines) - k + 1) if lines[i : i + k] == SOFT_LIST_START), None)
    if cut is None:
        return path
    out = os.path.join(out_dir, "strict_and_hard_bad_words.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:cut]) + "\n")
    return out


def en_group(reason: str | None) -> str | None:
    return None if reason is None else EN_GROUPS.get(reason.split("_", 1)[0], reason)


def zh_group(reason: str | None) -> str | None:
    if reason is None:
        return None
    return ZH_GROUPS.get(reason, "self_defined_rules" if reason.startswith("zh_") else reason)


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def compare(docs: list[dict], reference: dict[str, dict], decide, group_of) -> dict:
    """`decide(doc) -> (reason or None, rewritten text)` for each doc; figures against `reference`."""
    confusion = Counter()
    flips: Counter = Counter()
    flip_ids: list[str] = []
    same_group = both_drop = text_equal = both_keep = 0
    missing = 0
    t0 = time.process_time()
    for doc in docs:
        ref = reference.get(doc["id"])
        if ref is None:
            missing += 1
            continue
        reason, text = decide(doc)
        ours_keep, ref_keep = reason is None, bool(ref["keep"])
        if ours_keep and ref_keep:
            confusion["both_keep"] += 1
            both_keep += 1
            if "text_sha256" in ref:
                text_equal += hashlib.sha256(text.encode("utf-8")).hexdigest() == ref["text_sha256"]
        elif not ours_keep and not ref_keep:
            confusion["both_drop"] += 1
            both_drop += 1
            same_group += group_of(reason) == ref["group"]
        else:
            confusion["ours_keep_ref_drop" if ours_keep else "ours_drop_ref_keep"] += 1
            flips[f"{reason or 'kept'} -> {ref['group'] or 'kept'}"] += 1
            if len(flip_ids) < 20:
                flip_ids.append(doc["id"])
    n = sum(confusion.values())
    out = {
        "documents": n,
        "agreement": round((confusion["both_keep"] + confusion["both_drop"]) / n, 5) if n else None,
        "confusion": {k: confusion[k] for k in ("both_keep", "both_drop", "ours_keep_ref_drop", "ours_drop_ref_keep")},
        "group_agreement": round(same_group / both_drop, 5) if both_drop else None,
        "flips": dict(flips.most_common()),
        "flip_ids": flip_ids,
        "cpu_s": round(time.process_time() - t0, 2),
    }
    if missing:
        out["not_in_reference"] = missing
    if any("text_sha256" in r for r in reference.values()):
        out["text_equal"] = text_equal
        out["text_equal_share"] = round(text_equal / both_keep, 5) if both_keep else None
    return out


def english(data: Path, ref_dir: Path, stop_words: str, bad_words: str, limit: int | None) -> dict:
    from datatrove.data import Document

    from stages.clean.english_rules import EnglishRulesFilter, EnglishRulesSettings

    settings = EnglishRulesSettings(reference_compat=True, stop_words_file=stop_words, bad_words_file=bad_words)
    step = EnglishRulesFilter(settings)

    def decide(row: dict):
        doc = Document(text=row["text"], id=row["id"], metadata={})
        res = step.filter(doc)
        return (None if res is True else res[1]), doc.text

    pages = read_jsonl(data / "web_pages.jsonl.gz")[:limit]
    reference = {r["id"]: r for r in read_jsonl(ref_dir / "decisions_web_pages_en.jsonl")}
    return compare(pages, reference, decide, en_group)


def chinese(data: Path, ref_dir: Path, limit: int | None) -> dict:
    from datatrove.data import Document

    from stages.clean.chinese_format import ChineseFormatFilter, ChineseFormatSettings
    from stages.clean.chinese_rules import ChineseRulesFilter, ChineseRulesSettings
    from stages.clean.langid import LangIdSettings, LanguageIdFilter
    from stages.clean.url_filter import UrlFilter, UrlFilterSettings

    chain = [
        ChineseFormatFilter(ChineseFormatSettings(reference_compat=True)),
        UrlFilter(UrlFilterSettings(reference_compat=True)),
        ChineseRulesFilter(ChineseRulesSettings(reference_compat=True)),
        LanguageIdFilter(LangIdSettings(reference_compat=True, min_score=0.4)),
    ]

    def decide(row: dict):
        doc = Document(text=row["text"], id=row["id"], metadata={})
        for step in chain:
            res = step.filter(doc)
            if res is not True:
                return res[1], doc.text
        return None, doc.text

    docs = [d for d in read_jsonl(data / "debian_multilingual.jsonl.gz") if d.get("lang") in ZH_LANGS][:limit]
    reference = {r["id"]: r for r in read_jsonl(ref_dir / "decisions_debian_zh.jsonl")}
    return compare(docs, reference, decide, zh_group)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("CURATE_SHARED_DATA", str(REPO.parent / "shared" / "data"))).parent
    ap.add_argument("--data", default=str(shared / "data"))
    ap.add_argument("--reference", default=str(shared / "reference" / "mapneo"))
    ap.add_argument("--stop-words", default=None, help="MAP-Neo's stop-word list (default: beside the decisions)")
    ap.add_argument("--bad-words", default=None, help="MAP-Neo's bad-word list (default: beside the decisions)")
    ap.add_argument(
        "--all-bad-word-tuples",
        action="store_true",
        help="use the bad-word file whole (default: cut before SOFT_BAD_URL_WORDS, which the released code never reads)",
    )
    ap.add_argument("--only", choices=("en", "zh"), default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N documents of each corpus")
    args = ap.parse_args()
    data, ref = Path(args.data), Path(args.reference)
    result: dict = {"bench": "fidelity", "reference": "MAP-Neo released code (decisions_*.jsonl)"}
    if args.only in (None, "en"):
        with tempfile.TemporaryDirectory() as tmp:
            bad = args.bad_words or str(ref / "bad_words.txt")
            if not args.all_bad_word_tuples:
                bad = released_bad_word_file(bad, tmp)
            result["english"] = english(data, ref, args.stop_words or str(ref / "stop_words.txt"), bad, args.limit)
    if args.only in (None, "zh"):
        result["chinese"] = chinese(data, ref, args.limit)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
