"""`curate report OUT`: what happened in a run, from its run.json and every task's datatrove stats.

Terminal: documents in/out per stage, drops by reason, input problems, time per phase.
HTML (`OUT/report.html`, self-contained, inline SVG): the same, plus the retention funnel as bars and
any figures stages published.

Stages publish extra figures through `curate/figures.py` (`OUT/<phase>/report.json`); this module
only reads and renders them.
"""

from __future__ import annotations

import glob
import html
import json
import os
from dataclasses import dataclass, field

from datatrove.utils.stats import PipelineStats
from rich.table import Table

from curate.atomic import atomic_path
from curate.errors import ReportError
from curate.figures import REPORT_FILE
from curate.record import PhaseRecord, RunRecord, count_completed
# Old import path of the figures API (stages of branches made before curate/figures.py); remove once merged.
from curate.figures import downsample, histogram, write_report_section  # noqa: F401


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
        """Documents in/out for reading, every filtering or rewriting stage, and writing, in order."""
        rows: list[StageRow] = []
        for ph in self.phases:
            for step in ph.steps:
                c = step.counters
                drops = {k[len("dropped_"):]: int(v) for k, v in c.items() if k.startswith("dropped_") and v}
                if step.stage == "read" and ph.kind == "documents" and ph is self._first_documents_phase():
                    n = int(c.get("documents", 0))
                    bad = int(c.get("dropped_input", 0))
                    rows.append(StageRow("input", ph.id, n + bad, n, {k: v for k, v in drops.items() if k != "input"}))
                elif step.stage in ("read", "progress", "write"):
                    continue
                elif "total" in c and ("forwarded" in c or "dropped" in c):
                    rows.append(StageRow(step.stage, ph.id, int(c["total"]), int(c.get("forwarded", 0)), drops))
        last = self._last_documents_phase()
        if last is not None:
            writer = next((s for s in last.steps if s.stage == "write"), None)
            if writer is not None:
                n = int(writer.counters.get("total", 0))
                rows.append(StageRow("output", last.id, n, n, {}))
        return rows

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
        t = Table(title="documents per stage")
        for col in ("stage", "phase", "in", "out", "kept", "dropped by reason"):
            t.add_column(col, justify="right" if col in ("in", "out", "kept") else "left")
        for r in self.stage_rows():
            kept = f"{r.docs_out / r.docs_in:.1%}" if r.docs_in else "-"
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.drops.items(), key=lambda kv: -kv[1]))
            t.add_row(r.stage, r.phase, f"{r.docs_in:,}", f"{r.docs_out:,}", kept, reasons)
        console.print(t)
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
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>curate report: {e(str(self.run.name))}</title>",
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
            "td.n{text-align:right}h2{margin-top:1.5em}</style></head><body>",
            f"<h1>curate report: {e(str(self.run.name))}</h1>",
            f"<p>recipe {e(str(self.run.recipe))}; executor {e(str(self.run.executor))}; "
            f"status {e(str(self.run.status or '?'))}; output {e(self.out_dir)}</p>",
            "<h2>Retention funnel</h2>",
            _svg_bars([(r.stage, r.docs_out) for r in rows], max(([r.docs_in for r in rows] or [1]) + [1])),
            "<table><tr><th>stage</th><th>phase</th><th>in</th><th>out</th><th>kept</th><th>dropped by reason</th></tr>",
        ]
        for r in rows:
            kept = f"{r.docs_out / r.docs_in:.1%}" if r.docs_in else "-"
            reasons = "<br>".join(f"{e(k)}: {v:,}" for k, v in sorted(r.drops.items(), key=lambda kv: -kv[1]))
            parts.append(f"<tr><td>{e(r.stage)}</td><td>{e(r.phase)}</td><td class=n>{r.docs_in:,}</td>"
                         f"<td class=n>{r.docs_out:,}</td><td class=n>{kept}</td><td>{reasons}</td></tr>")
        parts.append("</table>")
        drops = [(f"{r.stage}: {k}", v) for r in rows for k, v in r.drops.items()]
        if drops:
            parts += ["<h2>Drops by reason</h2>", _svg_bars(sorted(drops, key=lambda x: -x[1]), max(v for _, v in drops))]
        n_problems, first = self.problems(limit=PROBLEMS_SHOWN_HTML)
        parts.append(f"<h2 id=problems>Input problems ({n_problems})</h2>")
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
                     "<th>task time s</th><th>counters</th></tr>")
        for p in self.phases:
            counters = "<br>".join(
                f"{e(s.stage)} / {e(s.name)}: " + ", ".join(f"{e(k)}={_fmt(v)}" for k, v in s.counters.items())
                for s in p.steps if s.counters
            )
            parts.append(f"<tr><td>{e(p.id)}</td><td>{e(p.status)}</td><td class=n>{p.completed}/{p.tasks}</td>"
                         f"<td class=n>{p.wall_s:.1f}</td><td class=n>{p.cpu_s:.1f}</td><td>{counters}</td></tr>")
        parts.append("</table>")
        for p in self.phases:
            for extra in p.extras:
                parts.append(f"<h2>{e(extra.get('title', p.id))}</h2>")
                figs = extra.get("figures", {})
                if figs:
                    parts.append("<table>" + "".join(f"<tr><td>{e(k)}</td><td class=n>{_fmt(v)}</td></tr>"
                                                     for k, v in figs.items()) + "</table>")
                for name, h in extra.get("histograms", {}).items():
                    parts.append(f"<h3>{e(name)}</h3>" + _svg_histogram(h))
                for name, series in extra.get("series", {}).items():
                    parts.append(f"<h3>{e(name)}</h3>" + _svg_series(series))
        parts.append("</body></html>")
        return "\n".join(parts)


PROBLEMS_SHOWN_TERMINAL = 20
PROBLEMS_SHOWN_HTML = 2000


def _where(problem: dict) -> str:
    """`file:line`, or the file alone for a problem of a whole file (a parquet file's schema)."""
    line = problem.get("line")
    return f"{problem['file']}:{line}" if line is not None else str(problem["file"])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _svg_bars(items: list[tuple[str, float]], vmax: float, width: int = 700) -> str:
    h = 22
    label_w = 260
    out = [f"<svg width='{width}' height='{h * len(items) + 4}' xmlns='http://www.w3.org/2000/svg' font-size='12'>"]
    for i, (label, v) in enumerate(items):
        w = 0 if not vmax else (width - label_w - 80) * v / vmax
        y = i * h + 2
        out.append(f"<text x='0' y='{y + 15}'>{html.escape(str(label))[:40]}</text>"
                   f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{h - 6}' fill='#4a7fb5'/>"
                   f"<text x='{label_w + w + 4:.1f}' y='{y + 13}'>{_fmt(v)}</text>")
    out.append("</svg>")
    return "".join(out)


def _svg_histogram(h: dict, width: int = 700, height: int = 220) -> str:
    counts = list(h.get("counts", []))
    ref = list(h.get("reference", []) or [])
    edges = list(h.get("edges", []))
    if not counts:
        return "<p>(empty)</p>"
    top = max(counts + ref + [1])
    bw = (width - 40) / len(counts)
    out = [f"<svg width='{width}' height='{height + 20}' xmlns='http://www.w3.org/2000/svg' font-size='11'>"]
    for i, c in enumerate(counts):
        bh = (height - 10) * c / top
        out.append(f"<rect x='{30 + i * bw:.1f}' y='{height - bh:.1f}' width='{max(bw - 1, 1):.1f}' height='{bh:.1f}' fill='#4a7fb5' fill-opacity='0.8'/>")
    if ref:
        pts = " ".join(f"{30 + (i + 0.5) * bw:.1f},{height - (height - 10) * c / top:.1f}" for i, c in enumerate(ref))
        out.append(f"<polyline points='{pts}' fill='none' stroke='#d0553b' stroke-width='2'/>")
    if edges:
        out.append(f"<text x='30' y='{height + 14}'>{_fmt(edges[0])}</text>"
                   f"<text x='{width - 60}' y='{height + 14}'>{_fmt(edges[-1])}</text>")
    out.append("</svg>")
    if ref:
        out.append("<p>bars: this run; line: reference</p>")
    return "".join(out)


def _svg_series(values: list[float], width: int = 700, height: int = 160) -> str:
    if not values:
        return "<p>(empty)</p>"
    # Downsample long series to the plot's resolution; a path of a million points helps no one.
    step = max(1, len(values) // width)
    vals = [sum(values[i:i + step]) / len(values[i:i + step]) for i in range(0, len(values), step)]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    pts = " ".join(f"{30 + i * (width - 40) / max(len(vals) - 1, 1):.1f},{height - (height - 10) * (v - lo) / span:.1f}"
                   for i, v in enumerate(vals))
    return (f"<svg width='{width}' height='{height + 20}' xmlns='http://www.w3.org/2000/svg' font-size='11'>"
            f"<polyline points='{pts}' fill='none' stroke='#4a7fb5'/>"
            f"<text x='0' y='12'>{_fmt(hi)}</text><text x='0' y='{height}'>{_fmt(lo)}</text></svg>")


def build_report(out_dir: str) -> Report:
    out_dir = os.path.abspath(out_dir)
    if not RunRecord.exists(out_dir):
        raise ReportError(f"{out_dir} has no run.json: not a curate output folder (or the run never started)")
    run = RunRecord.load(out_dir)
    return Report(out_dir, run, [_load_phase(run, entry) for entry in run.phases])
