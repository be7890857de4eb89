"""Cleaning stages: normalisation, language id, MAP-Neo English and Chinese rules, quality classifier."""

from stages.clean import (  # noqa: F401
    chinese_format,
    chinese_rules,
    english_rules,
    langid,
    normalize,
    quality,
    url_filter,
)
