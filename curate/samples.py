"""A few removed documents per stage and reason, so the report can show what each reason removes.

Every filter gets an exclusion writer: with `output.keep_removed: true` the full one
(`OUT/<phase>/removed/<stage>/`, every removed document), otherwise this sampling one, which writes
only the first `SAMPLES_PER_REASON` documents of each reason per task, each text cut to
`SAMPLE_CHARS` characters, under `OUT/<phase>/removed_samples/<stage>/`. The first ones in stream
order, so the same run gives the same samples (byte for byte, like every other data file).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from dataclasses import replace

from curate.documents import DocumentsWriter

SAMPLES_SUBDIR = "removed_samples"
SAMPLES_PER_REASON = 3
SAMPLE_CHARS = 600


class RemovedSampleWriter(DocumentsWriter):
    """An exclusion writer that keeps the first few removed documents of each reason, shortened."""

    name = "🐿 Jsonl (removed samples)"

    def __init__(self, output_folder: str, per_reason: int = SAMPLES_PER_REASON, max_chars: int = SAMPLE_CHARS):
        super().__init__(output_folder)
        self.per_reason, self.max_chars = per_reason, max_chars
        self._seen: dict[str, int] = {}

    def __enter__(self):
        self._seen = {}  # one task's count: filters enter their exclusion writer once per task
        return super().__enter__()

    def write(self, document, rank: int = 0, **kwargs):
        reason = str(document.metadata.get("filter_reason", "?"))
        seen = self._seen.get(reason, 0)
        if seen >= self.per_reason:
            return
        self._seen[reason] = seen + 1
        if len(document.text) > self.max_chars:
            # a copy: the filter owns the document (and a later step may still read it)
            document = replace(document, text=document.text[: self.max_chars] + " […]",
                               metadata={**document.metadata, "sample_of_chars": len(document.text)})
        super().write(document, rank, **kwargs)


# With `keep_removed`, `removed/` holds every removed document: read only this many lines of each file.
KEPT_LINES_READ = 2000


def removed_samples(phase_dir: str, limit: int = SAMPLES_PER_REASON) -> dict[tuple[str, str], list[dict]]:
    """(stage id, reason) -> up to `limit` removed documents, from the phase's samples or, when the run
    kept every removed document, from the first lines of those."""
    out: dict[tuple[str, str], list[dict]] = {}
    for sub, max_lines in ((SAMPLES_SUBDIR, None), ("removed", KEPT_LINES_READ)):
        for stage_dir in sorted(glob.glob(os.path.join(phase_dir, sub, "*"))):
            stage = os.path.basename(stage_dir)
            for path in sorted(glob.glob(os.path.join(stage_dir, "*.jsonl.gz"))):
                with gzip.open(path, "rt", encoding="utf-8") as f:
                    for n, line in enumerate(f):
                        if max_lines is not None and n >= max_lines:
                            break
                        doc = json.loads(line)
                        key = (stage, str((doc.get("metadata") or {}).get("filter_reason", "?")))
                        bucket = out.setdefault(key, [])
                        if len(bucket) < limit:
                            bucket.append(doc)
    return out
