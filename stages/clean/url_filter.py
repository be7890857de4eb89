"""`url_filter`: drop pages whose URL has a blacklisted prefix, and strip URLs out of the text.

MAP-Neo's Chinese pipeline does both right after format unification. The blacklist is a plain text
file the user supplies (format in stages/clean/data/url_blacklist_example.txt and the README):
one URL prefix per line, compared with the page URL after the scheme is removed and both are
lower-cased; `#` comments and blank lines are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
# RFC 3986 characters after a scheme or "www."; the last one may not be sentence punctuation, so
# "see http://a.org/x." keeps its full stop. CJK characters and whitespace end a URL.
URL_IN_TEXT = re.compile(
    r"(?:(?:https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*[A-Za-z0-9\-_~/#=&%+\]]",
    re.IGNORECASE,
)


# The released expressions, applied in this order (compat). CJK = the ideographs U+4E00..U+9FA5.
RELEASED_URL_EXPRESSIONS = (
    # a scheme or "www." and everything up to whitespace, a comma (ASCII or full-width) or CJK: also
    # a bare "http://", and a trailing ")" or "?"
    re.compile(r"(?:https?://|www\.)[^\s,，\u4e00-\u9fa5]*"),
    # four or more dotted labels: host names and IPv4 addresses
    re.compile(r"(?:[A-Za-z0-9-]+\.){3}[A-Za-z0-9.-]+"),
    # a dotted name ending in 2-6 lower-case letters that no CJK character precedes: host names,
    # but also file names such as group.conf or System.map
    re.compile(r"(?<![\u4e00-\u9fa5])\b[A-Za-z0-9.-]+\.[a-z]{2,6}\b"),
)


def strip_scheme(url: str) -> str:
    return _SCHEME.sub("", url.strip().lower())


def strip_http_head(url: str) -> str:
    """The released normalisation: surrounding whitespace and a leading http:// or https:// removed
    (case kept, other schemes kept)."""
    url = url.strip()
    for head in ("http://", "https://"):
        if url.startswith(head):
            return url[len(head) :]
    return url


class UrlBlacklist:
    """Prefix set; a lookup costs one set probe per distinct prefix length. `reference_compat`: URLs
    and entries are compared as the released code does (`strip_http_head`, case-sensitive)."""

    def __init__(self, prefixes: list[str], reference_compat: bool = False):
        self.normalise = strip_http_head if reference_compat else strip_scheme
        self.prefixes = frozenset(self.normalise(p) for p in prefixes if p.strip())
        self.lengths = sorted({len(p) for p in self.prefixes})

    @classmethod
    def from_file(cls, path: str | Path, reference_compat: bool = False) -> "UrlBlacklist":
        entries = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    entries.append(line)
        return cls(entries, reference_compat)

    def blocked(self, url: str) -> bool:
        u = self.normalise(url)
        return any(u[:n] in self.prefixes for n in self.lengths if n <= len(u))


def strip_urls(text: str, reference_compat: bool = False) -> tuple[str, int]:
    """Text without URLs (each replaced by nothing) and how many were removed."""
    if not reference_compat:
        return URL_IN_TEXT.subn("", text)
    removed = 0
    for pattern in RELEASED_URL_EXPRESSIONS:
        text, n = pattern.subn("", text)
        removed += n
    return text, removed


class UrlFilterSettings(StageSettings):
    blacklist_file: str | None = Field(None, description="URL prefix blacklist (one prefix per line); none = no blacklist")
    url_key: str = Field("url", description="metadata key holding the page URL")
    strip_urls: bool = Field(True, description="remove URLs (http(s)://, ftp://, www.) from the text")
    drop_empty: bool = Field(
        True, description="drop documents left empty once URLs are removed (not in compat: the rules drop them)"
    )
    reference_compat: bool = Field(
        False,
        description="released behaviour: its three URL expressions (also IPs, bare http://, dotted file names), "
        "case-sensitive blacklist after removing http(s)://",
    )


class UrlFilter(BaseFilter):
    name = "🔗 URL blacklist + URL stripping"

    def __init__(self, settings: UrlFilterSettings | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings or UrlFilterSettings()
        self._blacklist: UrlBlacklist | None = None

    @property
    def blacklist(self) -> UrlBlacklist | None:
        if self._blacklist is None and self.settings.blacklist_file:
            self._blacklist = UrlBlacklist.from_file(self.settings.blacklist_file, self.settings.reference_compat)
        return self._blacklist

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        s = self.settings
        url = doc.metadata.get(s.url_key)
        if self.blacklist is not None:
            if not url:
                self.stat_update("no_url")
            elif self.blacklist.blocked(str(url)):
                return False, "url_blacklist"
        if s.strip_urls:
            text, n = strip_urls(doc.text, s.reference_compat)
            if n:
                self.stat_update("urls_removed", value=n)
                doc.text = text
            if s.drop_empty and not s.reference_compat and not text.strip():
                return False, "empty_after_url_strip"
        return True


@register_stage("url_filter", settings=UrlFilterSettings, kind="document")
def build_url_filter(settings: UrlFilterSettings, ctx: StageContext) -> list:
    """Drop pages with a blacklisted URL prefix (user-supplied list) and remove URLs from the text."""
    return [UrlFilter(settings, exclusion_writer=ctx.removed_writer())]
