"""`normalize`: Unicode normalisation and whitespace clean-up, rewriting the text in place.

Most rules downstream (MAP-Neo's English rules, MinHash normalisation) assume NFKC text with one kind
of line break; doing it once up front keeps every later stage's counts consistent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+(?=\n|$)")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
# C0/C1 control characters other than tab and newline carry no text and confuse tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class NormalizeSettings(StageSettings):
    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = Field(
        "NFKC", description="Unicode normalisation form applied to the text ('none' to skip)"
    )
    unify_newlines: bool = Field(True, description="turn \\r\\n and \\r into \\n")
    strip_control: bool = Field(True, description="remove control characters other than tab and newline")
    strip_trailing_space: bool = Field(True, description="remove spaces and tabs at the end of lines")
    max_blank_lines: int = Field(
        1, ge=0, description="collapse longer runs of blank lines to this many (0 keeps them all)"
    )


def normalize_text(text: str, settings: NormalizeSettings) -> str:
    if settings.unify_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if settings.form != "none":
        text = unicodedata.normalize(settings.form, text)
    if settings.strip_control:
        text = _CONTROL.sub("", text)
    if settings.strip_trailing_space:
        text = _TRAILING_SPACE.sub("", text)
    if settings.max_blank_lines:
        text = _MANY_BLANK_LINES.sub("\n" * (settings.max_blank_lines + 1), text)
    return text.strip()


class NormalizeText(PipelineStep):
    name = "🔤 Normalize"
    type = "✂️ - FORMAT"

    def __init__(self, settings: NormalizeSettings | None = None):
        super().__init__()
        self.settings = settings or NormalizeSettings()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                new = normalize_text(doc.text, self.settings)
            self.stat_update("total")
            if new != doc.text:
                self.stat_update("modified")
                self.stat_update("chars_removed", value=len(doc.text) - len(new))
                doc.text = new
            if not new:
                # An empty document would vanish silently in any later reader; drop it here, counted.
                self.stat_update("dropped", "dropped_empty_after_normalize")
                continue
            self.stat_update("forwarded")
            self.update_doc_stats(doc)  # characters passed on, for the report's funnel
            yield doc


@register_stage("normalize", settings=NormalizeSettings, kind="document")
def build_normalize(settings: NormalizeSettings, ctx: StageContext) -> list[PipelineStep]:
    """Unicode normalisation (NFKC by default), newline and whitespace clean-up."""
    return [NormalizeText(settings)]
