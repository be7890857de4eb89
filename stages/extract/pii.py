"""`pii`: e-mail and IP addresses in the text replaced with placeholders, counted per kind.

The same job as datatrove's `PIIFormatter` (FineWeb's last step), with its public-IP test reused
(`public_ip_validator`: private, loopback and reserved addresses are not personal and stay), but with
counts per kind in the stats (`pii_email`, `pii_ip`, `docs_with_pii`) and fewer false positives:

- An IP must stand alone: not inside a longer dotted run (`1.2.3.4.5`, an OID) and not right after a
  word naming a version (`version 1.2.3.4`, `v1.2.3.4`, `release`, `build`, `firmware`...), where
  four dotted numbers are a version, not an address. A bare `1.2.3.4` elsewhere is replaced: it is
  a public address.
- Leading zeros (`01.02.2023.10`) are not an IP (Python's `ipaddress` refuses them), so dotted dates
  stay; dates have three parts anyway.
- An e-mail's domain needs a dot and a letters-only last label: `user@localhost` (code, config) and
  `pkg@1.2.3` (a pinned version) stay; `logo@2x.png` and other image/asset names stay (the last
  label is a file extension).
- A Mastodon/fediverse handle `@user@host` is a public handle, not a mailbox, and stays.
- Addresses at RFC 2606 names (`example.com/.net/.org`, `*.test`, `*.example`, `*.invalid`,
  `*.localhost`) are placeholders already and stay.
- IPv6 addresses are not replaced.

Placeholders default to addresses that can never be anyone's: `email@example.com` (RFC 2606) and
IPs from the documentation ranges of RFC 5737, used in turn; they are not public, so running the
stage twice changes nothing.
"""

from __future__ import annotations

import re

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"(?<![\w.@+-]){_LOCAL}@((?:{_LABEL}\.)+([A-Za-z]{{2,24}}))(?![\w-]|\.\w)")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"(?<![\w.])(?<!\d\.){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d|\w)")
_VERSION_WORDS = re.compile(
    r"(?:\bv|\b(?:version|ver|release|build|firmware|rev|revision|update|patch|kernel|python|java|v\.))\s*[:#]?\s*$",
    re.IGNORECASE,
)
# File extensions that end asset names written like addresses (`logo@2x.png`).
ASSET_SUFFIXES = frozenset(("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "css", "js", "mp4",
                            "webm", "pdf"))
# RFC 2606 names that can never be anyone's mailbox (placeholders, docs): left as they are.
RESERVED_DOMAINS = frozenset(f"{a}example.{tld}" for a in ("", "www.") for tld in ("com", "net", "org"))
RESERVED_TLDS = frozenset(("example", "test", "invalid", "localhost"))
DOC_IPS = ("192.0.2.1", "198.51.100.2", "203.0.113.3", "192.0.2.4", "198.51.100.5", "203.0.113.6")


def _public_ip(text: str) -> bool:
    from datatrove.pipeline.formatters.pii import public_ip_validator

    return public_ip_validator(text, public_only=True)


class PiiScrubber:
    """`scrub(text) -> (new text, {"email": n, "ip": n})`, replacements cycling through the placeholders."""

    def __init__(self, emails: bool = True, ips: bool = True, public_ips_only: bool = True,
                 email_placeholders: tuple[str, ...] = ("email@example.com",), ip_placeholders: tuple[str, ...] = DOC_IPS):
        self.emails, self.ips, self.public_ips_only = emails, ips, public_ips_only
        self.email_placeholders, self.ip_placeholders = email_placeholders, ip_placeholders
        self._e = self._i = 0

    def _email(self, m: re.Match) -> str:
        domain, last = m.group(1).lower(), m.group(2).lower()
        if last in ASSET_SUFFIXES or last in RESERVED_TLDS or domain in RESERVED_DOMAINS:
            return m.group(0)
        self.counts["email"] += 1
        self._e = (self._e + 1) % len(self.email_placeholders)
        return self.email_placeholders[self._e - 1]

    def _ip(self, m: re.Match) -> str:
        ip = m.group(0)
        if self.public_ips_only and not _public_ip(ip):
            return ip
        if _VERSION_WORDS.search(m.string, max(0, m.start() - 24), m.start()):
            return ip
        self.counts["ip"] += 1
        self._i = (self._i + 1) % len(self.ip_placeholders)
        return self.ip_placeholders[self._i - 1]

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        self.counts = {"email": 0, "ip": 0}
        if self.emails and "@" in text:
            text = EMAIL.sub(self._email, text)
        if self.ips and "." in text:
            text = IPV4.sub(self._ip, text)
        return text, self.counts


class PiiSettings(StageSettings):
    emails: bool = Field(True, description="replace e-mail addresses")
    ips: bool = Field(True, description="replace IPv4 addresses")
    public_ips_only: bool = Field(True, description="leave private, loopback and reserved IPs (not personal)")
    email_placeholders: list[str] = Field(["email@example.com"], min_length=1, description="used in turn")
    ip_placeholders: list[str] = Field(list(DOC_IPS), min_length=1, description="used in turn (default: RFC 5737 documentation addresses)")


class PiiFormatter(PipelineStep):
    name = "📞 PII (counted)"
    type = "✂️ - FORMAT"

    def __init__(self, settings: PiiSettings | None = None):
        super().__init__()
        self.settings = s = settings or PiiSettings()
        self.scrubber = PiiScrubber(s.emails, s.ips, s.public_ips_only, tuple(s.email_placeholders),
                                    tuple(s.ip_placeholders))

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            doc: Document
            self.stat_update("total")
            with self.track_time():
                doc.text, counts = self.scrubber.scrub(doc.text)
            for kind, n in counts.items():
                if n:
                    self.stat_update(f"pii_{kind}", value=n)
            if any(counts.values()):
                self.stat_update("docs_with_pii")
            self.stat_update("forwarded")
            yield doc


@register_stage("pii", settings=PiiSettings, kind="document")
def build_pii(settings: PiiSettings, ctx: StageContext) -> list:
    """Replace e-mail and public IPv4 addresses with placeholders; counts per kind (pii_email, pii_ip)."""
    return [PiiFormatter(settings)]
