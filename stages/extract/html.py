"""`extract`: HTML -> main text with trafilatura, each failure a counted drop naming file and offset.

Built on datatrove's `Trafilatura` extractor step: its `extract()` (trafilatura's `extract` with
`favor_precision`, as FineWeb runs it) in datatrove's `ExtractorSandbox`, a worker process that is
killed and restarted when a document takes longer than `timeout_s` (a pathological page can hold lxml
in C code for minutes, which no in-process alarm interrupts). datatrove's own step only bumps a counter
and logs once; this one drops with a reason, counted as `dropped_<reason>` in the stats and listed
with the record's `warc_file@warc_offset` (or the document id) in `OUT/<phase>/problems/`:

- `not_html`: `metadata.content_type` is set and is not HTML (without one: the text does not start
  with markup);
- `too_large`: more than `max_html_chars` characters of HTML (never handed to the parser);
- `timeout`: the parser took longer than `timeout_s`; `extractor_crashed`: the worker died (OOM);
- `parser_error`: trafilatura raised; `empty_result`: it returned nothing (no main text found), or
  less than `min_text_chars`.

The WARC record's `url`, `date`, `content_type` and position stay in the metadata. WET input
(`conversion` records, already plain text) needs no `extract`: it would drop them as `not_html`.

`deduplicate` is off by default although FineWeb runs it on: trafilatura keeps a process-wide cache
of text segments it has seen, so with it a page's text depends on which pages the same worker saw
before (the task count, the order, a restart after a timeout). Off, the same page always gives the
same text, and the dedup stages remove repeats deterministically.
"""

from __future__ import annotations

import json
import os
import re

from datatrove.pipeline.extractors import Trafilatura
from pydantic import Field

from curate.plan import StageContext
from curate.registry import StageSettings, register_stage

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Tags that would show the extraction failed; counted (`markup_left`) but not dropped: a page about
# HTML may quote them in its text.
_MARKUP = re.compile(r"<(?:!doctype|html|head|body|div|script|style)\b", re.IGNORECASE)


class ExtractSettings(StageSettings):
    favour_precision: bool = Field(True, description="trafilatura favor_precision: less text, less boilerplate (FineWeb's choice)")
    include_tables: bool = Field(True, description="keep the text of HTML tables (one row per line)")
    include_links: bool = Field(False, description="keep link targets in the text, markdown style")
    include_comments: bool = Field(False, description="keep the page's comment section (blog/forum comments)")
    deduplicate: bool = Field(
        False, description="trafilatura's deduplicate (FineWeb: on): drops text segments seen in earlier pages of the same "
        "process, so a page's text depends on task order; off keeps runs deterministic (the dedup stages do this job)")
    timeout_s: float = Field(5.0, gt=0, description="per-document time limit; a slower page is dropped as `timeout`")
    max_html_chars: int = Field(4_000_000, ge=1, description="drop larger HTML unparsed as `too_large`")
    min_text_chars: int = Field(1, ge=1, description="drop as `empty_result` when the main text is shorter")
    content_type_key: str = Field("content_type", description="metadata key holding the MIME type (set by the WARC reader)")


def where(doc) -> tuple[str, int | None]:
    """(file, byte offset) of the document's WARC record, or (its id, None) when it has no WARC origin."""
    md = doc.metadata
    if md.get("warc_file") is not None:
        return str(md["warc_file"]), md.get("warc_offset")
    return str(md.get("file_path") or doc.id), None


def not_html_reason(doc, content_type_key: str) -> str | None:
    """Why the document is not HTML (None when it is)."""
    kind = doc.metadata.get(content_type_key)
    if kind:
        kind = str(kind).split(";", 1)[0].strip().lower()
        return None if kind in HTML_TYPES else f"content type {kind}"
    return None if doc.text[:2048].lstrip()[:1] == "<" else "no content type and no markup at the start"


class ProblemList:
    """A step's own `problems/<prefix>_<rank>.jsonl`, published when the task ends well (like the readers')."""

    def __init__(self, folder: str | None, prefix: str):
        self.folder, self.prefix = folder, prefix
        self._f = None
        self._tmp = None

    def add(self, file: str, offset: int | None, reason: str, detail: str, rank: int) -> None:
        if self.folder is None:
            return
        if self._f is None:
            from curate.atomic import partial_name

            os.makedirs(self.folder, exist_ok=True)
            self._tmp = partial_name(os.path.join(self.folder, f"{self.prefix}_{rank:05d}.jsonl"))
            self._f = open(self._tmp, "w", encoding="utf-8")
        rec = {"file": file, "line": None, "offset": offset, "reason": reason, "detail": detail[:300], "dropped": 1}
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def close(self, ok: bool) -> None:
        if self._f is None:
            return
        self._f.close()
        self._f = None
        if ok:
            os.replace(self._tmp, self._tmp[: -len(".partial")])
        else:
            os.remove(self._tmp)


class HtmlExtractor(Trafilatura):
    """datatrove's Trafilatura step with reasoned, counted, listed drops and the stage's options."""

    name = "⛏ Trafilatura (counted)"

    def __init__(self, settings: ExtractSettings | None = None, problems_dir: str | None = None, exclusion_writer=None):
        self.settings = s = settings or ExtractSettings()
        super().__init__(favour_precision=s.favour_precision, timeout=s.timeout_s, deduplicate=s.deduplicate,
                         include_tables=s.include_tables, include_links=s.include_links)
        self.include_comments = s.include_comments
        self.problems_dir = problems_dir
        self.exclusion_writer = exclusion_writer

    def extract(self, text: str) -> str:
        from trafilatura import extract

        try:
            return extract(text, favor_precision=self.favour_precision, include_comments=self.include_comments,
                           deduplicate=self.deduplicate, output_format="txt", **self.kwargs)
        except Exception as e:  # noqa: BLE001 - handed back: the sandbox re-raises it here, the worker lives on
            return e

    def _drop(self, doc, reason: str, detail: str, problems: ProblemList, rank: int) -> None:
        self.stat_update("dropped")
        self.stat_update(f"dropped_{reason}")
        file, offset = where(doc)
        problems.add(file, offset, reason, f"{doc.metadata.get('url') or doc.id}: {detail}", rank)
        if self.exclusion_writer is not None:
            doc.metadata["filter_reason"] = reason
            self.exclusion_writer.write(doc, rank)

    def run(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.pipeline.extractors.base import ExtractorSandbox

        s = self.settings
        problems = ProblemList(self.problems_dir, "extract")
        ok = False
        writer = self.exclusion_writer
        try:
            if writer is not None:
                writer.__enter__()
            with ExtractorSandbox(timeout=s.timeout_s, warmup_text="") as sandbox:
                for doc in data:
                    self.stat_update("total")
                    with self.track_time():
                        reason, detail = None, ""
                        bad_type = not_html_reason(doc, s.content_type_key)
                        if bad_type:
                            reason, detail = "not_html", bad_type
                        elif len(doc.text) > s.max_html_chars:
                            reason, detail = "too_large", f"{len(doc.text):,} characters of HTML"
                        else:
                            try:
                                text = sandbox.process_document(doc.text, self.extract)
                            except TimeoutError:
                                reason, detail = "timeout", f"over {s.timeout_s:g} s"
                            except EOFError:
                                reason, detail = "extractor_crashed", "the extraction process died"
                            except Exception as e:  # noqa: BLE001 - whatever trafilatura/lxml raise
                                reason, detail = "parser_error", f"{type(e).__name__}: {e}"
                            else:
                                text = (text or "").strip()
                                if len(text) < s.min_text_chars:
                                    reason, detail = "empty_result", "no main text found"
                                else:
                                    self.stat_update("html_chars", value=len(doc.text))
                                    doc.text = text
                                    if _MARKUP.search(text):
                                        self.stat_update("markup_left")
                        if reason:
                            self._drop(doc, reason, detail, problems, rank)
                            continue
                    self.stat_update("forwarded")
                    self.update_doc_stats(doc)
                    yield doc
            ok = True
        finally:
            problems.close(ok)
            if writer is not None:
                writer.__exit__(None, None, None)


@register_stage("extract", settings=ExtractSettings, kind="document")
def build_extract(settings: ExtractSettings, ctx: StageContext) -> list:
    """HTML -> main text (trafilatura, precision first); non-HTML, too large, timeout, parser error, empty: counted drops."""
    return [HtmlExtractor(settings, problems_dir=os.path.join(ctx.phase_dir_for_documents, "problems"),
                          exclusion_writer=ctx.removed_writer())]
