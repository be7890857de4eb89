"""similar_line_dedup: split rules, the Levenshtein rule with its 15-character exactness limit, the
later piece removed, removal statistics, and documents without similar lines untouched."""

from __future__ import annotations

import polars as pl
from datatrove.data import Document

from stages.dedup.similar_line import (
    SimilarLineDedup,
    SimilarLineDedupSettings,
    dedup_similar_lines,
    split_pieces,
)


def test_split_after_terminators_and_before_brackets():
    text = "第一句。第二句！真的吗？是的……好[注]结束.【广告】完"
    pieces = split_pieces(text)
    assert "".join(pieces) == text
    assert pieces == ["第一句。", "第二句！", "真的吗？", "是的……", "好", "[注]结束.", "【广告】完"]


def test_later_similar_piece_is_removed():
    a = "今天的天气非常好，我们一起去公园里面散步吧，然后回家吃饭。"  # 29 chars
    b = a.replace("散步", "跑步")  # distance 1 <= 2.9
    c = a.replace("今天的天气", "昨天夜里下")  # distance 5 > 2.9: kept
    text = a + "中间的句子。" + b + c
    kept, removed = dedup_similar_lines(text)
    assert removed == [b] and kept == a + "中间的句子。" + c


def test_short_pieces_must_be_identical():
    kept, removed = dedup_similar_lines("好的好的。好的好的。好的好滴。")
    assert removed == ["好的好的。"]  # the identical one; the 1-edit variant is <= 15 chars: kept
    assert kept == "好的好的。好的好滴。"


def test_step_rewrites_and_counts(tmp_path):
    dup = "这是一个重复出现很多次的长句子，用于测试相似行去重的效果。"
    docs = [
        Document(id="a", text=dup + "\n独一无二的内容在这里。\n" + dup + dup),
        Document(id="b", text="没有任何重复的句子。每一句都不一样！最后一句？"),
        Document(id="c", text=dup + dup),
    ]
    step = SimilarLineDedup(SimilarLineDedupSettings(), clusters_dir=str(tmp_path))
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == ["a", "b", "c"]
    assert out[0].text.count(dup) == 1 and "独一无二" in out[0].text
    assert out[1].text == "没有任何重复的句子。每一句都不一样！最后一句？"
    assert out[2].text == dup
    stats = step.stats.stats
    assert stats["pieces_removed"].total == 3
    assert stats["chars_removed"].total == 3 * len(dup)
    assert stats["documents_modified"].total == 2
    clusters = pl.read_parquet(tmp_path / "00000.parquet")
    assert clusters["id"].to_list() == ["a", "a", "c"] and set(clusters["removed"]) == {dup} == set(clusters["kept"])


def test_nothing_similar_nothing_removed():
    text = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。床前明月光，疑是地上霜。"
    assert dedup_similar_lines(text) == (text, [])


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _naive_removed(pieces: list[str]) -> list[int]:
    """The rule read literally: pairs i < j in order, j removed if similar to a kept earlier piece."""
    from collections import Counter

    keys = [p.strip() for p in pieces]
    removed: set[int] = set()
    for j in range(len(pieces)):
        for i in range(j):
            a, b = keys[i], keys[j]
            if i in removed or not a or not b:
                continue
            longer, shorter = max(len(a), len(b)), min(len(a), len(b))
            if abs(len(a) - len(b)) / longer >= 0.3:
                continue
            if sum((Counter(a) & Counter(b)).values()) < longer / 3:
                continue
            d = _levenshtein(a, b)
            if d <= 0.1 * longer and (shorter > 15 or d == 0):
                removed.add(j)
                break
    return sorted(removed)


def test_vectorised_rule_matches_a_literal_reading_on_random_pieces():
    import random

    from stages.dedup.similar_line import similar_pieces_to_remove

    rng = random.Random(0)
    alphabet = "天地玄黄宇宙洪荒日月盈昃"
    seeds = ["".join(rng.choice(alphabet) for _ in range(rng.choice([8, 14, 16, 25, 40]))) for _ in range(12)]
    pieces = []
    for _ in range(150):
        p = list(rng.choice(seeds))
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            p[rng.randrange(len(p))] = rng.choice(alphabet)
        pieces.append("".join(p) + "。")
    expected = _naive_removed(pieces)
    assert expected  # the planted variants do trigger the rule
    assert list(similar_pieces_to_remove(pieces)) == expected
