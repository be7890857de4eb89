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


def strip_scheme(url: str) -> str:
    return _SCHEME.sub("", url.strip().lower())


class UrlBlacklist:
    """Prefix set; a lookup costs one set probe per distinct prefix length."""

    def __init__(self, prefixes: list[str]):
        self.prefixes = frozenset(strip_scheme(p) for p in prefixes if p.strip())
        self.lengths = sorted({len(p) for p in self.prefixes})

    @classmethod
    def from_file(cls, path: str | Path) -> "UrlBlacklist":
        entries = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    entries.append(line)
        return cls(entries)

    def blocked(self, url: str) -> bool:
        u = strip_scheme(url)
        return any(u[:n] in self.prefixes for n in self.lengths if n <= len(u))


def strip_urls(text: str) -> tuple[str, int]:
    """Text without URLs (each replaced by nothing) and how many were removed."""
    return URL_IN_TEXT.subn("", text)


class UrlFilterSettings(StageSettings):
    blacklist_file: str | None = Field(None, description="URL prefix blacklist (one prefix per line); none = no blacklist")
    url_key: str = Field("url", description="metadata key holding the page URL")
    strip_urls: bool = Field(True, description="remove URLs (http(s)://, ftp://, www.) from the text")
    drop_empty: bool = Field(True, description="drop documents left empty once URLs are removed")
    reference_compat: bool = Field(False, description="accepted for symmetry: the released step behaves the same")


class UrlFilter(BaseFilter):
    name = "🔗 URL blacklist + URL stripping"

    def __init__(self, settings: UrlFilterSettings | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.settings = settings or UrlFilterSettings()
        self._blacklist: UrlBlacklist | None = None

    @property
    def blacklist(self) -> UrlBlacklist | None:
        if self._blacklist is None and self.settings.blacklist_file:
            self._blacklist = UrlBlacklist.from_file(self.settings.blacklist_file)
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
            text, n = strip_urls(doc.text)
            if n:
                self.stat_update("urls_removed", value=n)
                doc.text = text
            if s.drop_empty and not text.strip():
                return False, "empty_after_url_strip"
        return True


@register_stage("url_filter", settings=UrlFilterSettings, kind="document")
def build_url_filter(settings: UrlFilterSettings, ctx: StageContext) -> list:
    """Drop pages with a blacklisted URL prefix (user-supplied list) and remove URLs from the text."""
    return [UrlFilter(settings, exclusion_writer=ctx.removed_writer())]
