"""`reference_compat` against the decisions of MAP-Neo's released code on the visible corpora
(`bench/fidelity.py`, run as a user runs it). The decisions and MAP-Neo's word lists live in
`../shared/reference/mapneo/` beside the checkout and are never copied into the project; the test
skips when they are absent."""

from __future__ import annotations

import json
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
