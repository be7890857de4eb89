"""`reference_compat` against the decisions of MAP-Neo's released code on the visible corpora
(`bench/fidelity.py`, run as a user runs it). The decisions and MAP-Neo's word lists live in
`../shared/reference/mapneo/` beside the checkout and are never copied into the project; the test
skips when they are absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA

REFERENCE = SHARED_DATA.parent / "reference" / "mapneo"


@pytest.fixture(scope="module")
def fidelity() -> dict:
    needed = [REFERENCE / n for n in ("decisions_web_pages_en.jsonl", "decisions_debian_zh.jsonl", "stop_words.txt", "bad_words.txt")]
    needed += [SHARED_DATA / "web_pages.jsonl.gz", SHARED_DATA / "debian_multilingual.jsonl.gz"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"MAP-Neo reference decisions or corpora not found: {missing}")
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fidelity.py"), "--data", str(SHARED_DATA), "--reference", str(REFERENCE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_english_compat_decides_like_the_released_code(fidelity):
    en = fidelity["english"]
    assert en["documents"] == 1213
    assert en["agreement"] >= 0.995, en["flips"]
    c = en["confusion"]
    assert c["both_drop"] >= 80 and c["both_keep"] >= 1000  # both outcomes are exercised
    assert en["group_agreement"] >= 0.99  # and the drops come from the same rule group


@pytest.mark.slow
def test_chinese_compat_decides_and_rewrites_like_the_released_code(fidelity):
    zh = fidelity["chinese"]
    assert zh["documents"] == 5925
    assert zh["agreement"] >= 0.998, zh["flips"]
    assert zh["text_equal_share"] >= 0.99
    c = zh["confusion"]
    assert c["both_drop"] >= 3000 and c["both_keep"] >= 2000


@pytest.mark.slow
def test_released_english_recipe_keeps_what_the_released_code_keeps(repo_root, tmp_path):
    """recipes/map_neo_en_released.yaml, given MAP-Neo's lists, through the real runner: the pages its
    rules stage keeps are exactly the pages the released code kept."""
    import gzip

    import yaml

    from curate import api

    decisions = REFERENCE / "decisions_web_pages_en.jsonl"
    if not decisions.is_file() or not (SHARED_DATA / "web_pages.jsonl.gz").is_file():
        pytest.skip("MAP-Neo reference decisions or web pages not found")
    sys.path.insert(0, str(repo_root / "bench"))
    from fidelity import released_bad_word_file

    with gzip.open(SHARED_DATA / "web_pages.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:150]
    with gzip.open(tmp_path / "sample.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(decisions) as f:
        kept_by_release = {d["id"] for d in map(json.loads, f) if d["keep"]}
    recipe = yaml.safe_load((repo_root / "recipes" / "map_neo_en_released.yaml").read_text())
    recipe["vars"]["stop_words"] = str(REFERENCE / "stop_words.txt")
    recipe["vars"]["bad_words"] = released_bad_word_file(str(REFERENCE / "bad_words.txt"), str(tmp_path))
    recipe["input"]["paths"] = str(tmp_path / "sample.jsonl.gz")
    result = api.run_recipe(recipe, output=tmp_path / "out", tasks=1, workers=1)
    after_rules = {d["id"] for d in api.read_documents(os.path.join(result.output_dir, "english_rules", "documents"))}
    expected = {r["id"] for r in rows} & kept_by_release
    assert 0 < len(expected) < len(rows)
    assert after_rules == expected
    final = {d["id"] for d in api.read_documents(result.final_documents)}
    assert final <= after_rules and final
