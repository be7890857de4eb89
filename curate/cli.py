"""The `curate` command line.

    curate run RECIPE [key.path=value ...] [--tasks N] [--workers N] [--executor local|slurm|ray]
    curate validate RECIPE [key.path=value ...]
    curate stages [NAME]
    curate report OUT
    curate train-quality --positive FILE... --negative FILE... --out MODEL

RECIPE is a path or the name of a built-in recipe (`quickstart`, `map_neo_en`, ...). Exit codes:
0 success, 1 a run that failed, 2 a recipe or usage error (nothing written).
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from curate.errors import RecipeError, ReportError, RunError
from curate.recipe import load_recipe
from curate.record import RunRecord
from curate.registry import all_stages, describe_settings
from curate.report import build_report
from curate.runner import execute, plan_run
from curate.slurm_cluster import wait_for_run

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help=__doc__.split("\n\n")[0])
err_console = Console(stderr=True)
# Piped output (files, CI logs, tests) gets wide lines instead of rich's 80-column wrapping.
out_console = Console() if sys.stdout.isatty() else Console(width=200)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    recipe: str = typer.Argument("quickstart", help="recipe file or built-in recipe name"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides, e.g. executor.tasks=8"),
    tasks: Optional[int] = typer.Option(None, "--tasks", min=1, help="tasks per sharded phase (overrides the recipe)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="tasks run at once on this machine"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local, slurm or ray (overrides the recipe)"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="output folder (overrides the recipe)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete a different earlier run in the output folder"),
    report: bool = typer.Option(True, "--report/--no-report", help="write OUT/report.html and print the summary"),
):
    """Run a recipe: every phase in order, resuming where an earlier run stopped."""
    ovs = list(overrides or [])
    if executor:
        ovs.append(f"executor.kind={executor}")
    if output:
        ovs.append(f"output.folder={output}")
    try:
        rec = load_recipe(recipe, ovs)
        plan = plan_run(rec, tasks=tasks, workers=workers)
    except RecipeError as e:
        _fail(str(e))
    err_console.print(
        f"[bold]curate[/] {rec.name}: {len(plan.phases)} phases, {plan.tasks} tasks, "
        f"{plan.workers} workers, executor {rec.executor.kind} -> {plan.output_dir}"
    )
    try:
        record = execute(plan, rec.executor.kind, console=err_console, overwrite=overwrite)
    except RunError as e:
        _fail(str(e), code=1)
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume", code=130)
    if record.status == "submitted":
        err_console.print(
            f"submitted {len(plan.phases)} phases to {rec.executor.kind}; `curate wait {plan.output_dir}` follows "
            f"them to the end, `curate report {plan.output_dir}` when done"
        )
        return
    _finish(plan.output_dir, plan.final_documents, report)


def _finish(output_dir: str, final_documents: str | None, report: bool = True) -> None:
    if report:
        rep = build_report(output_dir)
        rep.print(out_console)
        out_console.print(f"report: {rep.write_html()}")
    if final_documents:
        out_console.print(f"documents: {final_documents}")


@app.command()
def wait(
    output: str = typer.Argument(..., help="output folder of a run submitted to Slurm (holds run.json)"),
    report: bool = typer.Option(True, "--report/--no-report", help="print the summary and write report.html at the end"),
):
    """Follow a run submitted to Slurm until its last phase ends; a failed task fails with its phase and logs."""
    if not RunRecord.exists(output):
        _fail(f"{output}: no run.json here; give the output folder of a submitted run")
    try:
        record = wait_for_run(output, err_console)
    except RunError as e:
        _fail(str(e), code=1)
    except KeyboardInterrupt:
        _fail("interrupted; the jobs keep running: `curate wait` again to follow them", code=130)
    _finish(output, record.final_documents, report)


@app.command()
def validate(
    recipe: str = typer.Argument(..., help="recipe file or built-in recipe name"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides"),
):
    """Check a recipe (keys, types, stage names and parameters, input paths) without running it."""
    try:
        rec = load_recipe(recipe, list(overrides or []))
    except RecipeError as e:
        _fail(str(e))
    out_console.print(f"{rec.source}: ok ({len(rec.stages)} stages: {', '.join(s.id for s in rec.stages) or 'none'})")


@app.command()
def stages(name: Optional[str] = typer.Argument(None, help="show one stage's parameters")):
    """List the registered stages, or one stage's parameters with types, defaults and help."""
    registry = all_stages()
    if name is None:
        table = Table(title="curate stages", show_lines=False)
        for col in ("stage", "family", "kind", "parameters", "what it does"):
            table.add_column(col, no_wrap=col in ("stage", "family", "kind"))
        for spec in registry.values():
            params = ", ".join(r["name"] for r in describe_settings(spec.settings))
            table.add_row(spec.name, spec.family, spec.kind, params, spec.help)
        out_console.print(table)
        return
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=1)
        _fail(f"unknown stage '{name}'" + (f"; did you mean '{close[0]}'?" if close else "") + f" valid: {', '.join(registry)}")
    spec = registry[name]
    out_console.print(f"[bold]{spec.name}[/] ({spec.kind} stage, stages.{spec.family}, {spec.module})\n{spec.help}\n")
    table = Table()
    for col in ("parameter", "type", "default", "help"):
        table.add_column(col, no_wrap=col == "parameter")
    for row in describe_settings(spec.settings):
        table.add_row(row["name"], row["type"], row["default"], row["help"])
    out_console.print(table)


@app.command()
def report(out: str = typer.Argument(..., help="a run's output folder")):
    """Summarise a run: documents in/out per stage, drops by reason, time per phase; writes OUT/report.html."""
    try:
        rep = build_report(out)
    except ReportError as e:
        _fail(str(e))
    rep.print(out_console)
    out_console.print(f"report: {rep.write_html()}")


@app.command("train-quality")
def train_quality(
    positive: list[str] = typer.Option(..., "--positive", help="high-quality examples (jsonl/jsonl.gz or text files)"),
    negative: list[str] = typer.Option(..., "--negative", help="general web text examples"),
    out: str = typer.Option(..., "--out", help="where to write the fastText model"),
    epoch: int = typer.Option(3, help="training epochs (MAP-Neo: 3)"),
    lr: float = typer.Option(0.1, help="learning rate (MAP-Neo: 0.1)"),
    dim: int = typer.Option(256, help="vector size (MAP-Neo: 256)"),
    word_ngrams: int = typer.Option(3, help="word n-grams (MAP-Neo: 3)"),
    min_count: int = typer.Option(3, help="minimum word count (MAP-Neo: 3)"),
    quantize: bool = typer.Option(True, "--quantize/--no-quantize", help="quantise the model (smaller .ftz)"),
    max_samples: int = typer.Option(500_000, help="at most this many samples in all (MAP-Neo: 500k)"),
    seed: int = typer.Option(0, help="seed for sampling and the split"),
    text_key: str = typer.Option("text", help="text field of jsonl inputs"),
):
    """Train the fastText quality classifier (MAP-Neo settings by default) and print held-out figures."""
    try:
        from stages.clean.quality import train_quality_model
    except ImportError as e:  # the clean family is optional at this layer
        _fail(f"the quality classifier is not available: {e}")
    for f in [*positive, *negative]:
        if not os.path.exists(f):
            _fail(f"input file '{f}' does not exist")
    result = train_quality_model(
        positive, negative, out, epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams, min_count=min_count,
        quantize=quantize, max_samples=max_samples, seed=seed, text_key=text_key,
    )
    for k, v in result.items():
        out_console.print(f"{k}: {v}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `curate stages | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
