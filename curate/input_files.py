"""The byte level of local input files: which files can be opened at all, how they are decoded, and
where one record ends and the next begins.

- A path that is not a regular file (a FIFO, socket or device: opening a FIFO would wait forever for a
  writer) is skipped before it is opened; a dangling symbolic link or a file that cannot be opened
  (no read permission) is one `unreadable_file` problem. The run goes on either way.
- zstd: read with an explicit decompressor so that a file cut short is seen (the stream reader fsspec
  uses returns a clean end of file for an incomplete frame, which made a cut file look empty).
- Text encodings: JSONL is UTF-8. A file that starts with a UTF-16 byte-order mark, or whose first
  bytes hold a NUL in every other byte (UTF-16 without a mark), is decoded as UTF-16 and read record by
  record, with one `utf16_decoded` note for the file.
- Binary files: a file is skipped whole as `not_jsonl` only when its first 8 KiB carry another
  format's signature, or hold NUL bytes and not one line that parses as a JSON object. A stray NUL in
  a JSONL file costs only its own line.
- Line ends: `\\n`, `\\r\\n` and a lone `\\r` all end a record (JSON text has no raw CR inside strings),
  so a file with old Mac line ends is read record by record and line numbers count its lines.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat

import orjson

SNIFF_BYTES = 8192
NUL = b"\x00"
SIGNATURES = {  # first bytes of formats that are not JSONL text
    b"\x1f\x8b": "gzip data (name the file *.gz)",
    b"\x28\xb5\x2f\xfd": "zstd data (name the file *.zst)",
    b"PAR1": "a parquet file (use input.format: parquet)",
    b"PK\x03\x04": "a zip archive",
    b"BZh": "bzip2 data",
    b"\xfd7zXZ": "xz data",
}
_LONE_CR = re.compile(rb"\r(?!\n)")


def local_path(data_folder, filepath: str) -> str | None:
    """The path on this machine of `filepath` inside a datatrove DataFolder, or None when remote."""
    protocol = getattr(data_folder.fs, "protocol", None)
    protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
    if "file" not in protocols and "local" not in protocols:
        return None
    return os.path.join(data_folder.path, filepath)


def file_problem(data_folder, filepath: str) -> tuple[str, str, int] | None:
    """(reason, detail, dropped) when the file must not be opened, else None (remote files: None)."""
    path = local_path(data_folder, filepath)
    if path is None:
        return None
    try:
        st = os.stat(path)  # follows links: a link to a FIFO is a FIFO
    except FileNotFoundError:
        target = os.readlink(path) if os.path.islink(path) else "?"
        return "unreadable_file", f"a symbolic link to {target}, which does not exist", 1
    except OSError as e:  # a loop of links, a path through a file, ...
        return "unreadable_file", f"cannot stat: {e.strerror or e}", 1
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        return "not_a_file", f"{kind}; skipped without opening it", 0
    return None


class ZstdStream(io.RawIOBase):
    """Decompresses a zstd file frame by frame; raises EOFError when the data ends inside a frame."""

    def __init__(self, raw):
        import zstandard

        self.raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        import zstandard

        while not self._pending:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd data ends inside a frame: the file was cut short")
                return b""
            while chunk:
                try:
                    out = self._obj.decompress(chunk)
                except zstandard.ZstdError as e:
                    raise EOFError(f"corrupt zstd data: {e}") from None
                self._pending += out
                self._in_frame = True
                if self._obj.eof:  # frame complete: what follows is the next frame
                    chunk = self._obj.unused_data
                    self._obj = self._dctx.decompressobj()
                    self._in_frame = bool(chunk)
                else:
                    chunk = b""
        n = len(self._pending) if n is None or n < 0 else n
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def readinto(self, b) -> int:
        data = self.read1(len(b))
        b[: len(data)] = data
        return len(data)


def binary_verdict(head: bytes) -> str | None:
    """Why a file whose first bytes are `head` is not JSONL at all, or None to read it line by line."""
    for sig, what in SIGNATURES.items():
        if head.startswith(sig):
            return what
    if NUL not in head:
        return None
    lines = head.split(b"\n")[:-1]  # complete lines only
    if not lines:
        return None  # one long first line: read it, its own parse decides
    for line in lines:
        try:
            if isinstance(orjson.loads(line), dict):
                return None  # JSONL with a stray NUL somewhere: per line
        except orjson.JSONDecodeError:
            continue
    return f"binary data (NUL byte at offset {head.index(NUL)}, no JSON object line in the first {len(head)} bytes)"


def utf16_encoding(head: bytes) -> str | None:
    """'utf-16' (with a byte-order mark) / 'utf-16-le' / 'utf-16-be' when `head` looks like UTF-16."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(codecs.BOM_UTF32_LE):
        return "utf-16"
    sample = head[:512]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.8 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.8 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
    return None


class Utf16Lines:
    """readline() over a UTF-16 byte stream, returning UTF-8 bytes (a bad code unit: UnicodeDecodeError)."""

    def __init__(self, stream, encoding: str):
        self.text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")

    def readline(self) -> bytes:
        return self.text.readline().encode("utf-8", errors="surrogatepass")


def split_records(raw: bytes) -> list[bytes]:
    """One physical line split at lone carriage returns (old Mac line ends), blank pieces kept."""
    if b"\r" not in raw or not _LONE_CR.search(raw):
        return [raw]
    pieces = _LONE_CR.split(raw)
    if pieces[-1] == b"":  # the CR that ended the last record
        pieces.pop()
    return pieces
