"""Per-file balance of a run's input: records in each file = documents read + records dropped.

The counting readers (`curate/readers.py`) write one line per input file they read to
`OUT/<phase>/input_files/<rank>.jsonl`: `records` (every non-blank record of the file, plus what a
file-level problem stands for), `documents` (what the reader made of them), `dropped` (the counted
drops) and `complete` (false when `input.limit` stopped the reader inside the file). `curate report`
shows the sums and names every file that does not balance (none should).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field


@dataclass
class InputBalance:
    files: int = 0
    records: int = 0
    documents: int = 0
    dropped: int = 0
    unbalanced: list[dict] = field(default_factory=list)  # complete files where records != documents + dropped
    partial: int = 0  # files the reader stopped inside (input.limit)

    @property
    def balanced(self) -> bool:
        return not self.unbalanced

    def line(self) -> str:
        verdict = "every file balances" if self.balanced else f"{len(self.unbalanced)} files do NOT balance"
        partial = f"; {self.partial} files read in part (input.limit)" if self.partial else ""
        return (f"input balance: {self.files:,} files, {self.records:,} records = {self.documents:,} documents "
                f"+ {self.dropped:,} dropped ({verdict}{partial})")


def input_balance(out_dir: str, phase_ids) -> InputBalance | None:
    """The balance over every phase's `input_files/`; None when no counting reader wrote one."""
    bal, found = InputBalance(), False
    for pid in phase_ids:
        for path in sorted(glob.glob(os.path.join(out_dir, pid, "input_files", "*.jsonl"))):
            found = True
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    e = json.loads(line)
                    bal.files += 1
                    bal.records += e["records"]
                    bal.documents += e["documents"]
                    bal.dropped += e["dropped"]
                    if not e.get("complete", True):
                        bal.partial += 1
                    elif e["records"] != e["documents"] + e["dropped"]:
                        bal.unbalanced.append(e)
    return bal if found else None
