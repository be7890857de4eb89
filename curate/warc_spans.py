"""Where WARC records start, found without reading from the start of the file: one WARC file spread
over the tasks of its phase, and reading on after bytes that are no record.

When a phase has fewer input files than tasks, every task reads every file, each its own byte span.
Task r of n takes the file's bytes [size*r/n, size*(r+1)/n) and moves both ends forward to the first
record start at or after them (`record_start_from`): its span runs from the first record start at or
after its range start to the first at or after its range end (the next task's span start, found by the
same function, so the spans of the tasks tile the file). A task reads its span with warcio from its
start, record after record; whatever begins inside the span (a record, junk that is no record, the cut
a truncated file ends in) is that task's to turn into a document or a counted drop, and it stops at
the next task's span start. With one task the single span is the whole file, read as before.

A record start is:
- in a `.warc.gz` (one gzip member per record): the bytes `1f 8b 08` of a gzip member header whose data
  decompresses to a `WARC/` line;
- in a plain `.warc`: `WARC/1.x` (after a line end or not: junk need not end in one), followed by a
  header block with a `Content-Length`, whose content is followed by a line end (or the end of the file).
Reading on from corrupt bytes (`corrupt_warc`) uses the same test, so a single task and many tasks
agree where every record starts. What they cannot agree on, and so is not spread: `.warc.zst` (its
offsets are in the decompressed stream; its tasks share the records one in `tasks`, as jsonl does), and
the rare forged start, a payload that itself holds bytes passing the test above (a page quoting a whole
WARC record with its right length) where a range boundary falls inside that payload.
"""

from __future__ import annotations

import re
import zlib

GZIP_MEMBER = b"\x1f\x8b\x08"
WARC_LINE = b"WARC/1."
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_CHUNK = 1 << 20
_HEADER_MAX = 1 << 16  # a WARC header block longer than this is not one (Common Crawl's are < 2 KiB)


def _plain_record_at(f, start: int, size: int) -> bool:
    """Whether the `WARC/1.x` line at `start` opens a record: a header block with a Content-Length, and
    the content that length promises ends in a line end (or runs past the end of a truncated file)."""
    f.seek(start)
    block = f.read(_HEADER_MAX)
    end = _BLANK_LINE.search(block)
    if end is None:
        return len(block) < _HEADER_MAX and start + len(block) >= size  # a header cut by the end of the file
    length = _CONTENT_LENGTH.search(block, 0, end.start() + 1)
    if length is None:
        return False
    after = start + end.end() + int(length.group(1))
    if after >= size:
        return True
    f.seek(after)
    return f.read(2).startswith((b"\r\n", b"\n"))


def _gzip_record_at(f, start: int) -> bool:
    """Whether the gzip member header at `start` opens a member that decompresses to a WARC record."""
    f.seek(start)
    try:
        inner = zlib.decompressobj(31).decompress(f.read(4096))
    except zlib.error:
        return False
    return inner.startswith(b"WARC/")


def record_start_from(f, pos: int, size: int, gzip_members: bool) -> int | None:
    """Byte offset of the first record start at or after `pos` in the open, seekable file `f` of `size`
    bytes; None when there is none."""
    marker = GZIP_MEMBER if gzip_members else WARC_LINE
    scan = max(pos, 0)
    while scan < size:
        f.seek(scan)
        block = f.read(_CHUNK + len(marker) - 1)
        if not block:
            return None
        i = block.find(marker)
        while i >= 0:
            start = scan + i
            if _gzip_record_at(f, start) if gzip_members else _plain_record_at(f, start, size):
                return start
            i = block.find(marker, i + 1)
        if len(block) <= _CHUNK:
            return None
        scan += _CHUNK
    return None


def task_span(f, size: int, rank: int, tasks: int, gzip_members: bool) -> tuple[int, int]:
    """(first byte, end) of task `rank`'s span of a file of `size` bytes shared by `tasks` tasks: from the
    first record start at or after size*rank/tasks to the first at or after size*(rank+1)/tasks."""

    def edge(k: int) -> int:
        if k <= 0:
            return 0
        if k >= tasks:
            return size
        found = record_start_from(f, size * k // tasks, size, gzip_members)
        return size if found is None else found

    return edge(rank), edge(rank + 1)
