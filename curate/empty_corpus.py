"""A stage that leaves no documents ends the run cleanly.

Filters can drop every document (a language filter on the wrong corpus, input that is all bad). The
phases after that would each meet an empty document set in their own way (datatrove's readers fail
with "No files found"; an index cannot be built over nothing), so the runner stops there instead: the
remaining phases are marked `skipped`, run.json says why (`stopped_early`), the final documents folder
is created empty, and the run ends with status done and one line saying which stage left nothing. A
rerun finds the same empty set and stops at the same place.
"""

from __future__ import annotations

import glob
import gzip
import os

from curate.documents import DOCUMENTS_GLOB


def document_set_is_empty(folder: str | None) -> bool:
    """True when `folder` (a document set written by a phase) holds no document at all."""
    if not folder:
        return False
    for path in glob.glob(os.path.join(folder, DOCUMENTS_GLOB)):
        try:
            with gzip.open(path, "rb") as f:
                if f.read(1):
                    return False
        except (OSError, EOFError):
            return False  # unreadable is not empty: let the phase that reads it report it
    return True


def empty_upstream(phases, record_phases, i: int) -> str | None:
    """The id of the phase before `i` whose document set (the current one) is empty, if it is."""
    for j in range(i - 1, -1, -1):
        if phases[j].documents_out:
            if record_phases[j].status == "done" and document_set_is_empty(phases[j].documents_out):
                return phases[j].id
            return None
    return None


def stop_early(plan, record, i: int, empty_phase: str, console) -> None:
    """Mark phases i.. skipped, note why in the record, leave an empty final document set, say so."""
    skipped = [p.id for p in plan.phases[i:]]
    for entry in record.phases[i:]:
        entry.status = "skipped"
    stage = next((p.label for p in plan.phases if p.id == empty_phase), empty_phase)
    record.stopped_early = {"after": empty_phase, "reason": "no documents left", "skipped": skipped}
    if plan.final_documents:
        os.makedirs(plan.final_documents, exist_ok=True)
    console.print(f"phase '{empty_phase}' ({stage}) left no documents: the run stops here, "
                  f"{len(skipped)} later phases skipped ({', '.join(skipped[:6])}{', ...' if len(skipped) > 6 else ''}); "
                  "the output is empty", highlight=False, soft_wrap=True)
