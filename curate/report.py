"""`curate report OUT`: what happened in a run, from its run.json and every task's datatrove stats.

Terminal: documents in/out per stage, drops by reason, input problems, time per phase.
HTML (`OUT/report.html`, self-contained, inline SVG): the same, plus the retention funnel as bars and
any figures stages published.

Stages publish extra figures through `curate/figures.py` (`OUT/<phase>/report.json`); this module
only reads and renders them. The format:
    {"title": str, "figures": {name: number}, "histograms": {name: {"edges": [...], "counts": [...],
     "reference": [...] (optional, same bins), "x_label", "y_label", "bars", "line" (optional: axis
     titles and legend)}}, "series": {name: [numbers] or {"values": [...], "x_label", "y_label",
     "x_max" (optional: what the last point's x is, for a downsampled series)}}}
Figures named in `curate/glossary.py` are explained beside their value.
"""

from __future__ import annotations

import glob
import html
import json
import os
from dataclasses import dataclass, field

from datatrove.utils.stats import PipelineStats
from rich.table import Table

from curate import plots
from curate.atomic import atomic_path
from curate.errors import ReportError
from curate.figures import REPORT_FILE
from curate.glossary import GLOSSARY
from curate.input_balance import input_balance
from curate.record import PhaseRecord, RunRecord, count_completed
from curate.samples import SAMPLE_CHARS, removed_samples

HEAVY_DROP = 0.99  # a stage dropping at least this share of its input is flagged at the end of a run


def _total(v) -> float:
    return v.get("total", 0) if isinstance(v, dict) else (v or 0)


@dataclass
class StepStats:
    stage: str
    name: str
    counters: dict[str, float]
    time_s: float


@dataclass
class PhaseStats:
    id: str
    label: str
    kind: str
    tasks: int
    completed: int
    wall_s: float
    status: str
    steps: list[StepStats]
    extras: list[dict] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return sum(s.time_s for s in self.steps)


@dataclass
class StageRow:
    stage: str
    phase: str
    docs_in: int
    docs_out: int
    drops: dict[str, int]
    chars_in: int | None = None  # characters of text in / out (None: the step does not count them)
    chars_out: int | None = None
    tokens_out: int | None = None  # where documents carry a token count (datatrove's doc_len_tokens)


def _load_phase(run: RunRecord, entry: PhaseRecord) -> PhaseStats:
    phase_dir = run.phase_dir(entry)
    merged = None
    for path in sorted(glob.glob(os.path.join(phase_dir, "stats", "*.json"))):
        with open(path) as f:
            ps = PipelineStats.from_json(json.load(f))
        merged = ps if merged is None else merged + ps
    owners = entry.step_stages
    steps = []
    if merged is not None:
        for i, st in enumerate(merged.stats):
            d = st.to_dict()
            counters = {k: _total(v) for k, v in d.get("stats", {}).items()}
            t = d.get("time_stats")
            steps.append(StepStats(owners[i] if i < len(owners) else "?", d.get("name", "?"), counters, _total(t)))
    extras = []
    if os.path.exists(os.path.join(phase_dir, REPORT_FILE)):
        with open(os.path.join(phase_dir, REPORT_FILE)) as f:
            extras.append(json.load(f))
    return PhaseStats(entry.id, entry.label, entry.kind, entry.tasks, count_completed(phase_dir), entry.wall_s,
                      entry.status, steps, extras)


@dataclass
class Report:
    out_dir: str
    run: RunRecord
    phases: list[PhaseStats]

    # ---- derived tables ------------------------------------------------------------------------
    def stage_rows(self) -> list[StageRow]:
        """Documents (and characters) in/out for reading, every filtering or rewriting stage, and
        writing, in order."""
        rows: list[StageRow] = []
        chars: int | None = None  # characters flowing out of the previous row
        for ph in self.phases:
            for step in ph.steps:
                c = step.counters
                drops = {k[len("dropped_"):]: int(v) for k, v in c.items() if k.startswith("dropped_") and v}
                tokens = int(c["doc_len_tokens"]) if c.get("doc_len_tokens") else None
                if step.stage == "read":
                    if "doc_len" in c:  # each pass starts from what its reader saw
                        chars = int(c["doc_len"])
                    if ph.kind == "documents" and ph is self._first_documents_phase():
                        n = int(c.get("documents", 0))
                        bad = int(c.get("dropped_input", 0))
                        reasons = {k: v for k, v in drops.items() if k != "input"}
                        rows.append(StageRow("input", ph.id, n + bad, n, reasons, chars, chars, tokens))
                elif step.stage in ("progress", "write"):
                    continue
                elif "total" in c and ("forwarded" in c or "dropped" in c):
                    out = _chars_out(c, chars)
                    rows.append(StageRow(step.stage, ph.id, int(c["total"]), int(c.get("forwarded", 0)), drops,
                                         chars, out, tokens))
                    chars = out
        last = self._last_documents_phase()
        if last is not None:
            writer = next((s for s in last.steps if s.stage == "write"), None)
            if writer is not None:
                n = int(writer.counters.get("total", 0))
                written = int(writer.counters["doc_len"]) if "doc_len" in writer.counters else None
                tokens = int(writer.counters["doc_len_tokens"]) if writer.counters.get("doc_len_tokens") else None
                rows.append(StageRow("output", last.id, n, n, {}, written, written, tokens))
        return rows

    def crawl_funnel(self) -> str:
        """For WARC input: records -> HTML pages -> documents out, with retention against pages."""
        first = self._first_documents_phase()
        reader = next((s for s in first.steps if s.stage == "read"), None) if first else None
        if reader is None or "warc_records" not in reader.counters:
            return ""
        records = int(reader.counters["warc_records"])
        pages = records - int(reader.counters.get("dropped_input_not_a_response", 0))
        rows = self.stage_rows()
        out = rows[-1].docs_out if rows and rows[-1].stage == "output" else 0
        kept = f"{out / pages:.1%}" if pages else "-"
        return (f"WARC funnel: {records:,} records, {pages:,} pages (response records), "
                f"{out:,} documents out = {kept} of pages")

    def heavy_drops(self, threshold: float = HEAVY_DROP) -> list[str]:
        """One line per stage that dropped at least `threshold` of the documents it received: almost
        always a setting that does not fit the data (a language code, a length bound, a threshold)."""
        lines = []
        for r in self.stage_rows():
            if r.stage in ("input", "output") or r.docs_in == 0:
                continue
            dropped = r.docs_in - r.docs_out
            if dropped / r.docs_in >= threshold:
                top = sorted(r.drops.items(), key=lambda kv: -kv[1])[:3]
                why = ", ".join(f"{k}: {v:,}" for k, v in top) or "no reason recorded"
                name = self.stage_names().get(r.stage, r.stage)
                lines.append(f"stage '{r.stage}' dropped {dropped:,} of its {r.docs_in:,} documents "
                             f"({dropped / r.docs_in:.1%}; {why}): check its settings (`curate stages {name}`)")
        return lines

    def stage_names(self) -> dict[str, str]:
        """stage id -> registered stage name (`normalize_2` -> `normalize`), from run.json."""
        stages = (self.run.fingerprint or {}).get("stages") or []
        return {s["id"]: s["name"] for s in stages if "id" in s and "name" in s}

    def _first_documents_phase(self):
        return next((p for p in self.phases if p.kind == "documents"), None)

    def _last_documents_phase(self):
        return next((p for p in reversed(self.phases) if p.kind == "documents"), None)

    def problems(self, limit: int = 1000) -> tuple[int, list[dict]]:
        """(number of input problems, the first `limit` of them) from every phase's problems files."""
        n, first = 0, []
        for p in self._iter_problems():
            n += 1
            if len(first) < limit:
                first.append(p)
        return n, first

    def problem_counts(self) -> dict[str, int]:
        """Input problems by reason (duplicate ids are renamed, not dropped, but listed too)."""
        counts: dict[str, int] = {}
        for p in self._iter_problems():
            counts[p["reason"]] = counts.get(p["reason"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def input_balance(self):
        """Records in each input file = documents read + dropped, summed (see curate/input_balance.py)."""
        return input_balance(self.out_dir, [p.id for p in self.phases])

    def _iter_problems(self):
        for ph in self.phases:
            for path in sorted(glob.glob(os.path.join(self.out_dir, ph.id, "problems", "*.jsonl"))):
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            yield json.loads(line)

    # ---- terminal ------------------------------------------------------------------------------
    def print(self, console) -> None:
        status = self.run.status or "?"
        total_wall = sum(p.wall_s for p in self.phases)
        console.print(f"[bold]{self.run.name}[/] ({status}) in {self.out_dir}: "
                      f"{len(self.phases)} phases, {total_wall:.1f}s")
        stopped = self.run.stopped_early
        if stopped:
            console.print(f"[yellow]stopped early[/]: phase '{stopped.get('after')}' left no documents; "
                          f"{len(stopped.get('skipped', []))} later phases skipped", highlight=False)
        t = Table(title="documents per stage")
        for col in ("stage", "phase", "in", "out", "kept", "chars out", "chars kept", "dropped by reason"):
            t.add_column(col, justify="right" if col in ("in", "out", "kept", "chars out", "chars kept") else "left")
        for r in self.stage_rows():
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.drops.items(), key=lambda kv: -kv[1]))
            t.add_row(r.stage, r.phase, f"{r.docs_in:,}", f"{r.docs_out:,}", _share(r.docs_out, r.docs_in),
                      _count(r.chars_out), _share(r.chars_out, r.chars_in), reasons)
        console.print(t)
        crawl = self.crawl_funnel()
        if crawl:
            console.print(crawl, highlight=False)
        n_problems, first = self.problems(limit=PROBLEMS_SHOWN_TERMINAL)
        if n_problems:
            by_reason = ", ".join(f"{k}: {v:,}" for k, v in self.problem_counts().items())
            console.print(f"[yellow]{n_problems} input problems[/] ({by_reason}); "
                          f"{'all' if len(first) == n_problems else f'first {len(first)}'}:", highlight=False)
            for p in first:
                console.print(f"  {_where(p)}: {p['reason']} {p.get('detail', '')}", highlight=False, soft_wrap=True)
            if len(first) < n_problems:
                console.print(f"  ... all of them in {self.out_dir}/<phase>/problems/*.jsonl and report.html",
                              highlight=False)
        balance = self.input_balance()
        if balance is not None:
            console.print(balance.line(), highlight=False)
            for f in balance.unbalanced[:PROBLEMS_SHOWN_TERMINAL]:
                console.print(f"  {f['file']}: {f['records']} records, {f['documents']} documents, "
                              f"{f['dropped']} dropped", highlight=False)
        t = Table(title="time per phase")
        for col in ("phase", "status", "tasks", "wall s", "task time s"):
            t.add_column(col, justify="left" if col in ("phase", "status") else "right")
        for p in self.phases:
            t.add_row(p.id, p.status, f"{p.completed}/{p.tasks}", f"{p.wall_s:.1f}", f"{p.cpu_s:.1f}")
        console.print(t)
        for p in self.phases:
            for extra in p.extras:
                figs = extra.get("figures", {})
                if figs:
                    console.print(f"[bold]{extra.get('title', p.id)}[/]: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figs.items()))

    # ---- html ----------------------------------------------------------------------------------
    def write_html(self, path: str | None = None) -> str:
        path = path or os.path.join(self.out_dir, "report.html")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_html())
        return path

    def to_html(self) -> str:
        e = html.escape
        rows = self.stage_rows()
        has_tokens = any(r.tokens_out is not None for r in rows)
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>curate report: {e(str(self.run.name))}</title>",
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
            "td.n{text-align:right}h2{margin-top:1.5em}dt{font-weight:bold;margin-top:.5em}"
            "details{margin:.3em 0}summary{cursor:pointer}pre{white-space:pre-wrap;background:#f6f6f6;"
            "padding:6px;margin:4px 0;font-size:12px}</style></head><body>",
            f"<h1>curate report: {e(str(self.run.name))}</h1>",
            f"<p>recipe {e(str(self.run.recipe))}; executor {e(str(self.run.executor))}; "
            f"status {e(str(self.run.status or '?'))}; output {e(self.out_dir)}</p>",
            (f"<p><b>stopped early</b>: phase {e(str(self.run.stopped_early.get('after')))} left no documents; "
             "the later phases were skipped</p>") if self.run.stopped_early else "",
        ]
        for line in self.heavy_drops():
            parts.append(f"<p style='color:#a05a00'><b>warning:</b> {e(line)}</p>")
        parts += [
            "<h2>Retention funnel</h2>",
            "<p>Share of the input still there after each stage: documents, and characters of text "
            "(paragraph and substring dedup remove text from documents they keep).</p>",
            self._funnel_plot(rows),
            f"<p>{e(self.crawl_funnel())}</p>" if self.crawl_funnel() else "",
            "<table><tr><th>stage</th><th>phase</th><th>documents in</th><th>out</th><th>kept</th>"
            "<th>characters out</th><th>kept</th>" + ("<th>tokens out</th>" if has_tokens else "")
            + "<th>dropped by reason</th></tr>",
        ]
        for r in rows:
            reasons = "<br>".join(f"{e(k)}: {v:,}" for k, v in sorted(r.drops.items(), key=lambda kv: -kv[1]))
            tokens = f"<td class=n>{_count(r.tokens_out)}</td>" if has_tokens else ""
            parts.append(f"<tr><td>{e(r.stage)}</td><td>{e(r.phase)}</td><td class=n>{r.docs_in:,}</td>"
                         f"<td class=n>{r.docs_out:,}</td><td class=n>{_share(r.docs_out, r.docs_in)}</td>"
                         f"<td class=n>{_count(r.chars_out)}</td><td class=n>{_share(r.chars_out, r.chars_in)}</td>"
                         f"{tokens}<td>{reasons}</td></tr>")
        parts.append("</table>")
        drops = [(f"{r.stage}: {k}", [v]) for r in rows for k, v in r.drops.items()]
        if drops:
            parts += ["<h2>Drops by reason</h2>",
                      plots.hbars(sorted(drops, key=lambda x: -x[1][0]), ["documents"], "documents dropped",
                                  value_fmt=lambda v: f"{int(v):,}")]
        parts += self._samples_html(removed_samples)
        n_problems, first = self.problems(limit=PROBLEMS_SHOWN_HTML)
        parts.append(f"<h2 id=problems>Input problems ({n_problems})</h2>")
        balance = self.input_balance()
        if balance is not None:
            parts.append(f"<p id=balance>{e(balance.line())}</p>")
            if balance.unbalanced:
                parts.append("<table><tr><th>file</th><th>records</th><th>documents</th><th>dropped</th></tr>" + "".join(
                    f"<tr><td>{e(f['file'])}</td><td class=n>{f['records']}</td><td class=n>{f['documents']}</td>"
                    f"<td class=n>{f['dropped']}</td></tr>" for f in balance.unbalanced[:PROBLEMS_SHOWN_HTML]) + "</table>")
        if first:
            parts.append("<table><tr><th>reason</th><th>records</th></tr>" + "".join(
                f"<tr><td>{e(k)}</td><td class=n>{v:,}</td></tr>" for k, v in self.problem_counts().items())
                + "</table>")
            if len(first) < n_problems:
                parts.append(f"<p>The first {len(first):,}; every one is in {e(self.out_dir)}/&lt;phase&gt;/problems/*.jsonl</p>")
            parts.append("<table><tr><th>file:line</th><th>reason</th><th>detail</th></tr>")
            for p in first:
                parts.append(f"<tr><td>{e(_where(p))}</td><td>{e(p['reason'])}</td>"
                             f"<td>{e(str(p.get('detail', '')))}</td></tr>")
            parts.append("</table>")
        parts.append("<h2>Phases</h2><table><tr><th>phase</th><th>status</th><th>tasks</th><th>wall s</th>"
                     "<th>task time s</th></tr>")
        for p in self.phases:
            parts.append(f"<tr><td>{e(p.id)}</td><td>{e(p.status)}</td><td class=n>{p.completed}/{p.tasks}</td>"
                         f"<td class=n>{p.wall_s:.1f}</td><td class=n>{p.cpu_s:.1f}</td></tr>")
        parts.append("</table>")
        # datatrove's raw counters: everything above is computed from them; folded away for the curious
        parts.append("<details><summary>datatrove counters per phase and step</summary><table>"
                     "<tr><th>phase</th><th>step</th><th>counters</th></tr>")
        for p in self.phases:
            for st in p.steps:
                if st.counters:
                    counters = ", ".join(f"{e(k)}={_fmt(v)}" for k, v in st.counters.items())
                    parts.append(f"<tr><td>{e(p.id)}</td><td>{e(st.stage)} / {e(st.name)}</td><td>{counters}</td></tr>")
        parts.append("</table></details>")
        for p in self.phases:
            for extra in p.extras:
                parts.append(f"<h2>{e(extra.get('title', p.id))}</h2>")
                figs = extra.get("figures", {})
                if figs:
                    parts.append("<table>" + "".join(
                        f"<tr><td>{e(k)}</td><td class=n>{_fmt(v)}</td><td>{e(GLOSSARY.get(k, ''))}</td></tr>"
                        for k, v in figs.items()) + "</table>")
                for name, h in extra.get("histograms", {}).items():
                    parts.append(f"<h3>{e(name)}</h3>" + plots.histogram(
                        h, x_label=h.get("x_label", "value"), y_label=h.get("y_label", "count"),
                        bars_name=h.get("bars", "this run"), line_name=h.get("line", "reference")))
                for name, sr in extra.get("series", {}).items():
                    sr = sr if isinstance(sr, dict) else {"values": sr}
                    parts.append(f"<h3>{e(name)}</h3>" + plots.series(
                        sr.get("values", []), x_label=sr.get("x_label", "position"),
                        y_label=sr.get("y_label", "value"), x_max=sr.get("x_max")))
        parts.append("<h2>Glossary</h2><dl>" + "".join(
            f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in GLOSSARY.items()) + "</dl>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def _funnel_plot(self, rows: list[StageRow]) -> str:
        if not rows:
            return "<p>(no documents counted)</p>"
        docs0 = rows[0].docs_in or 1
        chars0 = rows[0].chars_in or None
        items = []
        for r in rows:
            values = [100.0 * r.docs_out / docs0]
            if chars0:
                values.append(100.0 * r.chars_out / chars0 if r.chars_out is not None else 0.0)
            items.append((r.stage, values))
        series = ["documents", "characters"] if chars0 else ["documents"]
        return plots.hbars(items, series, "% of the input", vmax=100.0, value_fmt=lambda v: f"{v:.1f}%")

    def _samples_html(self, removed_samples) -> list[str]:
        """A few removed documents per stage and reason, folded."""
        e = html.escape
        found = {}
        for ph in self.phases:
            found.update(removed_samples(os.path.join(self.out_dir, ph.id)))
        if not found:
            return []
        out = ["<h2>Removed documents, a few per reason</h2>",
               "<p>The first removed documents of each reason in each task (texts cut to 600 characters); "
               "<code>output.keep_removed: true</code> keeps every one.</p>"]
        for (stage, reason), docs in sorted(found.items()):
            out.append(f"<details><summary>{e(stage)}: {e(reason)} ({len(docs)} shown)</summary>")
            for d in docs:
                text = str(d.get("text", ""))
                text = text if len(text) <= SAMPLE_CHARS + 4 else text[:SAMPLE_CHARS] + " […]"  # keep_removed: whole texts
                out.append(f"<p><b>{e(str(d.get('id')))}</b></p><pre>{e(text)}</pre>")
            out.append("</details>")
        return out


PROBLEMS_SHOWN_TERMINAL = 20
PROBLEMS_SHOWN_HTML = 2000


def _share(part: int | None, whole: int | None) -> str:
    return f"{part / whole:.1%}" if part is not None and whole else "-"


def _count(n: int | None) -> str:
    return f"{n:,}" if n is not None else "-"


def _chars_out(counters: dict, chars_in: int | None) -> int | None:
    """Characters a step passed on: datatrove's `doc_len` (filters count it for what they forward),
    else what came in less the step's own `chars_removed`; None when neither is known."""
    if "doc_len" in counters:
        return int(counters["doc_len"])
    if "total" in counters and not counters.get("forwarded"):
        return 0  # nothing passed on (datatrove counts doc_len only for documents it sees)
    if chars_in is not None and "chars_removed" in counters:
        return chars_in - int(counters["chars_removed"])
    return None


def _where(problem: dict) -> str:
    """`file:line`, or the file alone for a problem of a whole file (a parquet file's schema)."""
    line = problem.get("line")
    if problem.get("offset") is not None:  # a WARC record: its byte offset in the file
        return f"{problem['file']}@{problem['offset']}"
    return f"{problem['file']}:{line}" if line is not None else str(problem["file"])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def build_report(out_dir: str) -> Report:
    out_dir = os.path.abspath(out_dir)
    if not RunRecord.exists(out_dir):
        raise ReportError(f"{out_dir} has no run.json: not a curate output folder (or the run never started)")
    run = RunRecord.load(out_dir)
    return Report(out_dir, run, [_load_phase(run, entry) for entry in run.phases])
