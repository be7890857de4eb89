"""Stages used the way a datatrove user would: steps inside their own LocalPipelineExecutor."""

from __future__ import annotations

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from helpers import read_docs, write_jsonl_gz
from stages.clean.normalize import NormalizeSettings, NormalizeText, normalize_text


def test_normalize_function():
    s = NormalizeSettings()
    assert normalize_text("ｆｕｌｌ\u00a0width  \r\nline\t \n\n\n\nnext\x07", s) == "full width\nline\n\nnext"
    assert normalize_text("ﬁ", NormalizeSettings(form="NFC")) == "ﬁ"
    assert normalize_text("a\n\n\n\nb", NormalizeSettings(max_blank_lines=0)) == "a\n\n\n\nb"


def test_steps_inside_a_users_datatrove_pipeline(tmp_path):
    write_jsonl_gz(tmp_path / "in" / "a.jsonl.gz", [
        {"id": "1", "text": "Ｈｅｌｌｏ  \r\nworld"},
        {"id": "2", "text": "\x00\x01  "},
        {"id": "3", "text": "plain"},
    ])
    executor = LocalPipelineExecutor(
        [JsonlReader(str(tmp_path / "in")), NormalizeText(NormalizeSettings()), JsonlWriter(str(tmp_path / "out"))],
        tasks=1, logging_dir=str(tmp_path / "logs"),
    )
    stats = executor.run()
    docs = read_docs(tmp_path / "out")
    assert [(d["id"], d["text"]) for d in docs] == [("1", "Hello\nworld"), ("3", "plain")]
    step = next(s for s in stats.stats if "Normalize" in s.name)
    assert step.stats["dropped_empty_after_normalize"].total == 1
    assert step.stats["modified"].total == 2
