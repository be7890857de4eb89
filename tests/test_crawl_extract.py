"""`extract` (HTML -> main text) and `pii` (e-mail/IP placeholders): real trafilatura, real pages.

Decisions pinned here (see stages/extract/pii.py): `version 1.2.3.4` / `v1.2.3.4` are versions, not
addresses; dotted dates and 5-part numbers are not IPs; private and loopback IPs stay; `user@localhost`
and `logo@2x.png` are not e-mail addresses; a bare public `1.2.3.4` is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatrove.data import Document

from stages.extract.html import ExtractSettings, HtmlExtractor
from stages.extract.pii import PiiFormatter, PiiScrubber

ARTICLE = """<!doctype html><html><head><title>Rivers</title><script>var tracking = 1;</script>
<style>body {{ color: red }}</style></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/contact">Contact</a></nav>
<div class="content"><article><h1>Why rivers meander</h1>
<p>Rivers rarely run straight for long. Water on the outside of a bend flows faster and cuts into the bank,
while slower water on the inside drops its sediment, so every bend slowly grows and migrates downstream.</p>
<p>Over centuries the loops can grow so large that the river cuts through the narrow neck of land between
two bends, leaving behind a crescent-shaped oxbow lake that slowly fills with silt and vegetation.</p>
<p>Geologists use old maps and aerial photographs to measure how quickly these bends move across a valley,
and the answers range from a few centimetres to tens of metres every year. {extra}</p>
</article></div>
<footer>Copyright 2024 Example Org. All rights reserved. <a href="/privacy">Privacy</a></footer>
</body></html>"""


def _doc(i: int, text: str, **md) -> Document:
    meta = {"warc_file": "/data/x.warc.gz", "warc_offset": 1000 + i, "url": f"http://ex.org/{i}", **md}
    return Document(text=text, id=f"d{i}", metadata=meta)


def _run(step, docs):
    out = list(step.run(iter(docs)))
    return out, {k: (v.total if hasattr(v, "total") else v) for k, v in step.stats.stats.items()}


def test_extract_keeps_main_text_and_counts_every_failure(tmp_path):
    docs = [
        _doc(0, ARTICLE.format(extra=""), content_type="text/html", date="2024-04-25T16:24:45Z"),
        _doc(1, "%PDF-1.7 ...", content_type="application/pdf"),
        _doc(2, ARTICLE.format(extra="x " * 3000), content_type="text/html"),
        _doc(3, "<html><head><script>var a = 1;</script></head><body><img src='a.png'></body></html>",
             content_type="text/html"),
        Document(text="plain text from a jsonl file, no markup at all", id="d4"),
    ]
    step = HtmlExtractor(ExtractSettings(max_html_chars=5000, timeout_s=30), problems_dir=str(tmp_path / "problems"))
    out, stats = _run(step, docs)
    assert [d.id for d in out] == ["d0"]
    text = out[0].text
    assert "Rivers rarely run straight" in text and "oxbow lake" in text
    for junk in ("<", "tracking", "color: red", "All rights reserved", "Contact"):
        assert junk not in text, junk
    assert out[0].metadata["url"] == "http://ex.org/0" and out[0].metadata["date"] == "2024-04-25T16:24:45Z"
    assert stats["total"] == 5 and stats["forwarded"] == 1
    assert stats["dropped_not_html"] == 2 and stats["dropped_too_large"] == 1 and stats["dropped_empty_result"] == 1
    assert stats["dropped"] == stats["total"] - stats["forwarded"]
    problems = [json.loads(line) for p in (tmp_path / "problems").glob("extract_*.jsonl") for line in p.open()]
    assert {(p["file"], p["offset"], p["reason"]) for p in problems} == {
        ("/data/x.warc.gz", 1001, "not_html"), ("/data/x.warc.gz", 1002, "too_large"),
        ("/data/x.warc.gz", 1003, "empty_result"), ("d4", None, "not_html")}
    assert "application/pdf" in next(p["detail"] for p in problems if p["offset"] == 1001)


def test_extract_timeout_is_a_counted_drop(tmp_path):
    # A big real page and a limit no parser meets: the worker is killed and the page dropped as `timeout`;
    # the next document gets a fresh worker.
    big = ARTICLE.format(extra=" ".join(f"<span>word{i}</span>" for i in range(60_000)))
    step = HtmlExtractor(ExtractSettings(timeout_s=0.02), problems_dir=str(tmp_path / "p"))
    out, stats = _run(step, [_doc(0, big, content_type="text/html")])
    assert out == [] and stats["dropped_timeout"] == 1
    problem = json.loads(next((tmp_path / "p").glob("extract_*.jsonl")).read_text())
    assert problem["reason"] == "timeout" and problem["offset"] == 1000


def test_extract_options_tables_and_comments():
    page = ("<html><body><article><h1>Scores</h1><p>" + "The season ended with a close race between the teams. " * 4
            + "</p><table><tr><td>Lions</td><td>31</td></tr><tr><td>Tigers</td><td>29</td></tr></table>"
            + "</article></body></html>")
    with_tables = _run(HtmlExtractor(ExtractSettings(timeout_s=30)), [_doc(0, page, content_type="text/html")])[0]
    without = _run(HtmlExtractor(ExtractSettings(timeout_s=30, include_tables=False)),
                   [_doc(0, page, content_type="text/html")])[0]
    assert "Lions" in with_tables[0].text and "Lions" not in without[0].text


@pytest.mark.parametrize("text, expected, counts", [
    ("write to jane.doe@uni.edu today", "write to email@example.com today", {"email": 1, "ip": 0}),
    ("server 8.8.8.8 answered", "server 192.0.2.1 answered", {"email": 0, "ip": 1}),
    ("a bare 1.2.3.4 is a public address", "a bare 192.0.2.1 is a public address", {"email": 0, "ip": 1}),
    ("upgrade to version 1.2.3.4 now", None, {"email": 0, "ip": 0}),
    ("see v1.2.3.4 and release 2.0.1.7", None, {"email": 0, "ip": 0}),
    ("the OID 1.3.6.1.4.1 names a vendor", None, {"email": 0, "ip": 0}),
    ("on 12.10.2023 and 01.02.03.04", None, {"email": 0, "ip": 0}),
    ("router 192.168.1.1, loopback 127.0.0.1, docs 203.0.113.9", None, {"email": 0, "ip": 0}),
    ("psql postgres://user@localhost:5432/db", None, {"email": 0, "ip": 0}),
    ("icons: logo@2x.png and pip install pkg@1.2.3", None, {"email": 0, "ip": 0}),
    ("@decorator and a@b.c", None, {"email": 0, "ip": 0}),
    ("placeholders: email@example.com, me@site.test", None, {"email": 0, "ip": 0}),
    ("follow @mhoye@mastodon.social", None, {"email": 0, "ip": 0}),
])
def test_pii_replacements_and_false_positives(text, expected, counts):
    new, got = PiiScrubber().scrub(text)
    assert new == (expected if expected is not None else text)
    assert got == counts


def test_pii_step_counts_per_kind_and_is_idempotent():
    docs = [Document(text="mail a@x.org or b@y.com from 8.8.4.4", id="1"), Document(text="nothing here", id="2")]
    out, stats = _run(PiiFormatter(), docs)
    assert stats["pii_email"] == 2 and stats["pii_ip"] == 1 and stats["docs_with_pii"] == 1
    assert stats["total"] == stats["forwarded"] == 2
    again, stats2 = _run(PiiFormatter(), [Document(text=out[0].text, id="1")])
    assert again[0].text == out[0].text and "pii_email" not in stats2 and "pii_ip" not in stats2
    assert "x.org" not in out[0].text and "8.8.4.4" not in out[0].text


def test_extract_and_pii_are_registered_and_documented():
    from curate.registry import describe_settings, get_stage

    for name in ("extract", "pii"):
        spec = get_stage(name)
        assert spec.kind == "document" and spec.family == "extract" and spec.help
        assert all(row["help"] for row in describe_settings(spec.settings))
    assert Path(get_stage("extract").module.replace(".", "/") + ".py").name == "html.py"


def test_extract_gives_a_page_the_same_text_whatever_came_before():
    # trafilatura's `deduplicate` would empty the second copy (its segment cache spans pages); off by default
    page = ARTICLE.format(extra="")
    out, _ = _run(HtmlExtractor(ExtractSettings(timeout_s=30)),
                  [_doc(i, page, content_type="text/html") for i in range(3)])
    assert len(out) == 3 and len({d.text for d in out}) == 1
    out, _ = _run(HtmlExtractor(ExtractSettings(timeout_s=30, deduplicate=True)),
                      [_doc(i, page, content_type="text/html") for i in range(6)])
    assert len({d.text for d in out}) > 1 or len(out) < 6


class _RaisingParser(HtmlExtractor):
    """No real page makes trafilatura 1.11 raise (it catches lxml's errors itself), so this stands in
    for one that does, to pin how the step reports it."""

    def extract(self, text: str):
        if "boom" in text:
            try:
                raise ValueError("parser gave up")
            except ValueError as e:
                return e
        return super().extract(text)


def test_a_parser_exception_is_a_counted_drop_and_the_worker_lives_on(tmp_path):
    docs = [_doc(0, "<html><body><p>boom</p></body></html>", content_type="text/html"),
            _doc(1, ARTICLE.format(extra=""), content_type="text/html")]
    out, stats = _run(_RaisingParser(ExtractSettings(timeout_s=30), problems_dir=str(tmp_path / "p")), docs)
    assert [d.id for d in out] == ["d1"] and stats["dropped_parser_error"] == 1
    assert "extractor_crashed" not in " ".join(stats)
    problem = json.loads(next((tmp_path / "p").glob("extract_*.jsonl")).read_text())
    assert problem["reason"] == "parser_error" and "ValueError: parser gave up" in problem["detail"]


def test_extract_options_comments_and_links():
    page = ("<html><body><article><h1>Scores</h1><p>"
            + "The season ended with a close race between the two best teams of the league this year. " * 4
            + '</p><p>Read the <a href="https://ex.org/table">full table</a> online.</p></article>'
            + '<div id="comments"><div class="comment"><p>Great summary of a tense final week, thanks!</p></div></div>'
            + "</body></html>")

    def text(**options) -> str:
        return _run(HtmlExtractor(ExtractSettings(timeout_s=30, **options)), [_doc(0, page, content_type="text/html")])[0][0].text

    default = text()
    assert "Read the full table online." in default and "Great summary" not in default and "ex.org" not in default
    assert "Great summary" in text(include_comments=True)
    assert "[full table](https://ex.org/table)" in text(include_links=True)
