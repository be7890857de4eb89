"""MAP-Neo Chinese stages: format unification, URL blacklist/stripping, the document rules and the
repetition rules, each just inside and just outside its threshold, in both modes; real Debian data."""

from __future__ import annotations

import gzip
import json

import pytest

from stages.clean.chinese_format import FULL_WIDTH, bracket_content_ratio, unify_format
from stages.clean.chinese_rules import (
    ChineseRepetitionSettings,
    ChineseRules,
    ChineseRulesSettings,
    chinese_repetition_failure,
)
from stages.clean.url_filter import UrlBlacklist, strip_urls

ALL_OFF = dict(
    min_sentence_pieces=None, min_chars=None, max_chars=None, min_mean_word_length=None,
    max_mean_word_length=None, max_hash_run_ratio=None, max_ellipsis_run_ratio=None, max_digit_ratio=None,
    max_read_more_line_ratio=None, max_bullet_line_ratio=None, require_punctuation=False,
    min_unique_char_ratio=None, min_char_entropy=None,
)
DEFAULTS = ChineseRulesSettings()


def only(*names: str, **overrides) -> dict:
    kw = dict(ALL_OFF)
    for n in names:
        kw[n] = getattr(DEFAULTS, n)
    kw.update(overrides)
    return kw


def han(n: int, start: int = 0x4E00) -> str:
    """n distinct CJK characters."""
    return "".join(chr(start + i) for i in range(n))


# (id, settings, text, kept[, kept in compat when it differs])
CASES = [
    ("sentences_1_piece", only("min_sentence_pieces"), han(60), False),
    ("sentences_2_pieces", only("min_sentence_pieces"), han(30) + "." + han(30), True),
    ("sentences_quote_splits", only("min_sentence_pieces"), han(30) + '"' + han(30), True),
    ("chars_49", only("min_chars"), han(49), False),
    ("chars_50", only("min_chars"), han(50), True),
    ("chars_10000", only("max_chars"), "字" * 10_000, True),
    ("chars_10001", only("max_chars"), "字" * 10_001, False),
    # jieba keeps space-separated ASCII runs whole: k "ab" + m "a" -> mean (2k + m) / (k + m)
    ("word_len_1.3", only("min_mean_word_length"), " ".join(["ab"] * 3 + ["a"] * 7), True),
    ("word_len_1.27", only("min_mean_word_length"), " ".join(["ab"] * 3 + ["a"] * 8), False),
    ("word_len_10", only("max_mean_word_length"), " ".join(["abcdefghij"] * 5), True),
    ("word_len_11", only("max_mean_word_length"), " ".join(["abcdefghijk"] * 5), False),
    ("word_len_punct_ignored", only("min_mean_word_length"), "我们。" * 10, True),
    ("hash_10", only("max_hash_run_ratio"), "".join("#" + "字" * 9 for _ in range(10)), True),
    ("hash_11", only("max_hash_run_ratio"), "".join("#" + "字" * 8 for _ in range(11)) + "字", False),
    ("ellipsis_10", only("max_ellipsis_run_ratio"), "".join("…" + "字" * 9 for _ in range(10)), True),
    ("ellipsis_11", only("max_ellipsis_run_ratio"), "".join(".." + "字" * 7 for _ in range(11)) + "字", False),
    ("digits_30", only("max_digit_ratio"), "1" * 30 + "字" * 70, True),
    ("digits_31", only("max_digit_ratio"), "1" * 31 + "字" * 69, False),
    ("read_more_3", only("max_read_more_line_ratio"), "\n".join([han(5) + "更多"] * 3 + [han(5)] * 7), True),
    # compat: the released endings are case-sensitive, so " ReadMore" does not count
    ("read_more_4", only("max_read_more_line_ratio"), "\n".join([han(5) + "展开"] * 2 + [han(5) + " ReadMore"] * 2 + [han(5)] * 6), False, True),
    ("bullets_90", only("max_bullet_line_ratio"), "\n".join(["●字"] * 90 + ["字"] * 10), True),
    ("bullets_91", only("max_bullet_line_ratio"), "\n".join(["▪字"] * 91 + ["字"] * 9), False),
    ("no_punct", only("require_punctuation"), han(80), False),
    # compat: only ASCII punctuation and "…" (of the NFKC text) count
    ("cjk_punct", only("require_punctuation"), han(80) + "、", True, False),
    ("ascii_punct", only("require_punctuation"), han(80) + ",", True),
    ("unique_11_of_100", only("min_unique_char_ratio"), (han(11) * 10)[:100], True),
    ("unique_10_of_100", only("min_unique_char_ratio"), han(10) * 10, False),
    ("entropy_21", only("min_char_entropy"), han(21) * 3, True),
    ("entropy_20", only("min_char_entropy"), han(20) * 3, False),
    # compat: entropy of the NFKC text, where "Ａ" and "A" are one character (21 -> 20 symbols)
    ("entropy_nfkc_merges", only("min_char_entropy"), han(19) * 3 + "AAA" + "ＡＡＡ", True, False),
    # compat: punctuation removed *before* jieba segments, so "ab,ab,..." becomes one long ASCII word
    ("word_len_punct_before_jieba_5", only("min_mean_word_length", "max_mean_word_length"), ",".join(["ab"] * 5), True, True),
    ("word_len_punct_before_jieba_6", only("min_mean_word_length", "max_mean_word_length"), ",".join(["ab"] * 6), True, False),
    # compat: digits / characters left once punctuation is removed (30 / 90)
    ("digits_over_unpunctuated", only("max_digit_ratio"), "1" * 30 + "字" * 60 + "." * 10, True, False),
    # compat: pieces that are only whitespace do not count
    ("sentences_blank_piece", only("min_sentence_pieces"), han(30) + ". \n", True, False),
]


@pytest.mark.parametrize("compat", [False, True], ids=["default", "compat"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_chinese_rule_threshold(case, compat):
    name, kw, text, kept = case[:4]
    if compat and len(case) == 5:
        kept = case[4]
    reason = ChineseRules(ChineseRulesSettings(**kw, reference_compat=compat)).first_failure(text)
    assert (reason is None) == kept, f"{name}: {reason}"


def test_chinese_rules_first_failure_named():
    assert ChineseRules().first_failure(han(30)) == "zh_sentences"
    assert ChineseRules().first_failure(han(20) + "." + han(20)) == "zh_char_count"


# Repetition: "ab" * c + D distinct chars -> top 2-gram share 2c / (2c + D);
# a repeated 5-char block twice + D distinct -> duplicated share 10 / (10 + D).
REPETITION = [
    ("top2_at", {2: 0.2}, {}, "ab" * 10 + han(80), True),
    ("top2_above", {2: 0.2}, {}, "ab" * 10 + han(79), False),
    ("dup5_below", {}, {5: 0.6}, "甲乙丙丁戊" + han(4) + "甲乙丙丁戊" + han(3, 0x5000), True),
    ("dup5_above", {}, {5: 0.6}, "甲乙丙丁戊" + han(3) + "甲乙丙丁戊" + han(3, 0x5000), False),
]


@pytest.mark.parametrize("compat", [False, True], ids=["default", "compat"])
@pytest.mark.parametrize("case", REPETITION, ids=[c[0] for c in REPETITION])
def test_chinese_repetition_threshold(case, compat):
    name, top, dup, text, kept = case
    s = ChineseRepetitionSettings(top_ngram_ratios=top, dup_ngram_ratios=dup, reference_compat=compat)
    reason = chinese_repetition_failure(text, s)
    # the released code never applies these rules: compat keeps everything
    assert (reason is None) == (True if compat else kept), f"{name}: {reason}"


def test_format_unification_maps_all_34_marks_and_bracket_rule():
    out = unify_format(FULL_WIDTH)
    assert len(out) == 34 and out.isascii()
    assert unify_format("你好。“引号”（括号）！") == '你好."引号"(括号)!'
    assert "【" not in FULL_WIDTH and unify_format("【标题】") == "【标题】"
    assert bracket_content_ratio("【" + "字" * 10 + "】" + "字" * 88) == pytest.approx(0.1)
    assert bracket_content_ratio("【" + "字" * 11 + "】" + "字" * 87) > 0.1


def test_url_blacklist_prefixes_and_stripping(tmp_path):
    f = tmp_path / "blacklist.txt"
    f.write_text("# comment\nexample.com/\nhttps://ads.example.org/banner\n\nspam.net\n", encoding="utf-8")
    bl = UrlBlacklist.from_file(f)
    assert bl.blocked("https://Example.COM/page")
    assert bl.blocked("http://ads.example.org/banner/1")
    assert not bl.blocked("https://ads.example.org/news")
    assert not bl.blocked("https://example.community/")
    assert bl.blocked("ftp://spam.network/x")  # a bare host prefix also matches longer hosts (documented)
    text, n = strip_urls("访问 https://www.example.com/a?b=1&c=2 或 www.test.cn/x。还有 http://a.org/y.")
    assert n == 3
    assert "http" not in text and "www." not in text
    assert text.endswith("还有 .")


def test_released_url_expressions_and_bracket_share():
    # compat: the released three expressions also take bare http://, a trailing ")", IPv4 addresses
    # and dotted file-like names (not preceded by a CJK character)
    text, n = strip_urls("访问 http:// 和 192.168.1.1 以及 group.conf 和 System.map 还有 *.example.com。见 https://a.org/x?y) 完", True)
    assert text == "访问  和  以及  和  还有 *.。见  完" and n == 6
    assert strip_urls("文件group.conf", True)[0] == "文件group.conf"  # a CJK character before it: kept
    # the default keeps those and stops a URL before a closing bracket
    assert strip_urls("见 192.168.1.1 和 group.conf", False) == ("见 192.168.1.1 和 group.conf", 0)
    # released 【…】 share: shortest one-line spans of the NFKC text
    text = "【" + "字" * 5 + "\n" + "字" * 10 + "】" + "字" * 60
    assert bracket_content_ratio(text) > 0.2 and bracket_content_ratio(text, True) == 0.0
    assert bracket_content_ratio("︻" + "字" * 11 + "︼" + "字" * 87, True) > 0.1  # vertical forms -> 【】


def test_released_blacklist_is_case_sensitive_and_strips_http_only(tmp_path):
    f = tmp_path / "blacklist.txt"
    f.write_text("example.com/\n", encoding="utf-8")
    released = UrlBlacklist.from_file(f, reference_compat=True)
    assert released.blocked(" https://example.com/page ") and released.blocked("example.com/x")
    assert not released.blocked("https://Example.COM/page") and not released.blocked("ftp://example.com/x")
    assert UrlBlacklist.from_file(f).blocked("ftp://Example.COM/x")


def _debian(shared_data):
    with gzip.open(shared_data / "debian_multilingual.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    zh = [r for r in rows if r["lang"].lower().startswith("zh")]
    other = [r for r in rows if not r["lang"].lower().startswith("zh")]
    return zh[::4] + other[::60]  # all sources and languages, small enough for a fast test


def test_real_debian_chinese_chain(shared_data):
    from stages.clean.chinese_format import ChineseFormatSettings, ChineseFormatFilter  # noqa: F401
    from stages.clean.langid import LanguageIdentifier

    docs = _debian(shared_data)
    rules, lid = ChineseRules(), LanguageIdentifier()
    reasons: dict[str, int] = {}
    kept_langs: list[str] = []
    for d in docs:
        text = d["text"]
        if bracket_content_ratio(text) > 0.1:
            reason = "zh_bracket_content"
        else:
            text = strip_urls(unify_format(text))[0]
            reason = rules.first_failure(text)
            if reason is None:
                lang, score = lid.predict(text)
                reason = "unexpected_language" if lang != "zh" else ("low_language_score" if score < 0.4 else None)
            if reason is None:
                reason = chinese_repetition_failure(text)
        reasons[reason] = reasons.get(reason, 0) + 1
        if reason is None:
            kept_langs.append(d["lang"])
    assert len([r for r in reasons if r]) >= 4, reasons
    assert reasons.get("zh_char_count", 0) > 50  # short fortunes and long handbook pages
    assert 20 < reasons.get(None, 0) < len(docs)
    # what survives is Chinese
    assert all(lang.lower().startswith("zh") for lang in kept_langs)
