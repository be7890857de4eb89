"""`chinese_format`: MAP-Neo's Chinese format unification (rewrites the text).

1. A page whose text inside 【…】 brackets is more than 10% of all characters is dropped (such pages
   are mostly bracketed tags, menus and titles).
2. The 34 full-width punctuation marks MAP-Neo lists are mapped to their ASCII forms, so the rules
   that follow (sentence splitting on `.!?;"`, `#` runs, ellipses) see one alphabet.
"""

from __future__ import annotations

import re
import unicodedata

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

FULL_WIDTH = "。！“”＃＄％＆‘’（）＊＋，－／：；＜＝＞？＠［＼］＾＿｀｛｜｝～"
ASCII_FORMS = ".!\"\"#$%&''()*+,-/:;<=>?@[\\]^_`{|}~"
assert len(FULL_WIDTH) == len(ASCII_FORMS) == 34
FULL_WIDTH_TO_ASCII = str.maketrans(FULL_WIDTH, ASCII_FORMS)
_BRACKETED = re.compile(r"【([^】]*)】")
# released: shortest 【…】 spans that stay on one line, measured on the NFKC text
_BRACKETED_ONE_LINE = re.compile(r"【(.*?)】")


def bracket_content_ratio(text: str, reference_compat: bool = False) -> float:
    """Characters inside 【…】 (brackets excluded) / characters (compat: as released, see above)."""
    if reference_compat:  # (vertical forms such as U+FE3B become 【 under NFKC)
        text = unicodedata.normalize("NFKC", text)
        pattern = _BRACKETED_ONE_LINE
    else:
        pattern = _BRACKETED
    if not text or "【" not in text:
        return 0.0
    return sum(len(m) for m in pattern.findall(text)) / len(text)


def unify_format(text: str) -> str:
    return text.translate(FULL_WIDTH_TO_ASCII)


class ChineseFormatSettings(StageSettings):
    max_bracket_ratio: float | None = Field(
        0.1, description="zh_bracket_content: drop when text inside 【…】 / characters is above this"
    )
    map_punctuation: bool = Field(True, description="map the 34 full-width punctuation marks to ASCII")
    reference_compat: bool = Field(
        False, description="released behaviour: the 【…】 share is measured on the NFKC text, one line per span"
    )


class ChineseFormatFilter(BaseFilter):
    name = "🀄 Chinese format unification"

    def __init__(self, settings: ChineseFormatSettings | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings or ChineseFormatSettings()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        s = self.settings
        if s.max_bracket_ratio is not None and bracket_content_ratio(doc.text, s.reference_compat) > s.max_bracket_ratio:
            return False, "zh_bracket_content"
        if s.map_punctuation:
            new = unify_format(doc.text)
            if new != doc.text:
                self.stat_update("modified")
                doc.text = new
        return True


@register_stage("chinese_format", settings=ChineseFormatSettings, kind="document")
def build_chinese_format(settings: ChineseFormatSettings, ctx: StageContext) -> list:
    """MAP-Neo Chinese format unification: drop 【…】-heavy pages, map full-width punctuation to ASCII."""
    return [ChineseFormatFilter(settings, exclusion_writer=ctx.removed_writer())]
