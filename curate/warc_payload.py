"""What a WARC response's payload is: its MIME type and charset, and its bytes decoded to text."""

from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
# A payload decoded as UTF-8 with at most this share of its characters replaced is kept (one stray
# byte in a long page is common); more than that and the page is mojibake, tried under other charsets.
MAX_REPLACED_SHARE = 0.001


def mime_type(content_type: str | None) -> str | None:
    """`text/html; charset=utf-8` -> `text/html`."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def declared_charset(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type or "", re.IGNORECASE)
    return m.group(1).strip() if m else None


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_payload(body: bytes, declared: str | None) -> tuple[str | None, str, str]:
    """(text, charset used, note). text is None when nothing decodes it; note says what was tried.

    Order: the HTTP header's charset, a `<meta charset>` in the first 4 KiB, UTF-8; then UTF-8 with the
    odd invalid byte replaced (at most 0.1% of characters); then cchardet's guess.
    """
    tried: list[str] = []
    meta = _META_CHARSET.search(body[:4096])
    candidates = [declared, meta.group(1).decode("ascii", "replace") if meta else None, "utf-8"]
    unknown = [c for c in candidates[:2] if c and _codec(c) is None]
    for name in candidates:
        codec = _codec(name)
        if codec is None or codec in tried:
            continue
        tried.append(codec)
        try:
            return body.decode(codec), codec, ""
        except (UnicodeDecodeError, LookupError):
            continue
    text = body.decode("utf-8", errors="replace")
    if text.count("\ufffd") <= MAX_REPLACED_SHARE * max(len(text), 1):
        return text, "utf-8", "replaced"
    import cchardet

    guess = _codec(cchardet.detect(body).get("encoding"))
    if guess and guess not in tried:
        tried.append(guess + " (detected)")
        try:
            return body.decode(guess), guess, "detected"
        except (UnicodeDecodeError, LookupError):
            pass
    note = "tried " + ", ".join(tried)
    if unknown:
        note += f"; unknown charset {unknown[0]!r} declared"
    return None, "", note
