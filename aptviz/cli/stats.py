"""``aptviz stats`` and ``aptviz stats-summary``: numbers only, to a Parquet dataset.

``aptviz stats INPUTS... -o OUT`` takes the selection and pipeline options of
the main command (the same definitions, :mod:`aptviz.cli.options`) and calls
:func:`aptviz.datasets.engines.run_stats`; ``aptviz stats-summary OUT`` calls
:func:`aptviz.datasets.summary.summarize`. This module only parses and prints.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aptviz._text import ERROR_CHARS, terminal_text
from aptviz.cli.options import (
    PIPELINE_OPTIONS,
    SCAN_OPTIONS,
    SELECTION_OPTIONS,
    MaxMemory,
    Shared,
    memory_from,
    request_from,
    start_progress,
    usage_error,
    usage_errors,
    with_options,
)
from aptviz.compute.params import Engine

__all__ = ["app", "summary_app"]

SUMMARY_NAME = "summary.json"


StatsInputs = Annotated[
    list[str],
    typer.Argument(help="Image files, Parquet files, WebDataset .tar shards, and folders of them.", show_default=False),
]
StatsOutput = Annotated[Path, typer.Option("-o", "--output", help="Output dataset folder (part-*.parquet).")]
ImageColumn = Annotated[
    str, typer.Option("--image-column", help="Parquet column holding the images (binary or {bytes, path}).")
]
EngineOpt = Annotated[
    Engine, typer.Option("--engine", case_sensitive=False, help="local: a process pool; ray: Ray Data.")
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster to join (e.g. auto); without it a local Ray starts."),
]
Summary = Annotated[bool, typer.Option("--summary", help="Print and write the summary afterwards.")]
FidelityOpt = Annotated[
    bool,
    typer.Option(
        "--fidelity",
        "--psnr",
        help="Add psnr_apt, uniform_vit_tokens, psnr_uniform, ssim_apt, ssim_uniform (uniform at equal ViT "
        "tokens) and llm_uniform_tokens, psnr_uniform_llm, ssim_uniform_llm (at equal LLM tokens) to each row "
        "(slower: model views); --psnr is an alias.",
    ),
]
JsonSummary = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout instead of a table.")]

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
summary_app = typer.Typer(
    add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]}
)


@app.command(help="Numbers only, for datasets: one Parquet row per (image, selection), locally or on Ray.")
@with_options(SELECTION_OPTIONS, PIPELINE_OPTIONS, SCAN_OPTIONS, after="output")
def stats(
    inputs: StatsInputs,
    output: StatsOutput,
    image_column: ImageColumn = "image",
    engine: EngineOpt = Engine.local,
    ray_address: RayAddress = None,
    max_memory: MaxMemory = None,
    fidelity: FidelityOpt = False,
    summary: Summary = False,
    *,
    opts: Shared,
) -> None:
    """Parse, run :func:`~aptviz.datasets.engines.run_stats`, print, exit with the report's code."""
    from aptviz.datasets.engines import run_stats

    from aptviz.errors import OutputError

    view = StatsView(opts.quiet)
    with usage_errors(view):
        params, runs = request_from(opts)
        try:
            report = run_stats(
                inputs, output, runs, params, recursive=opts.recursive, image_column=image_column,
                engine=engine.value, workers=opts.workers, ray_address=ray_address, log_level=opts.log_level,
                on_progress=view.on_progress, max_memory=memory_from(max_memory), fidelity=fidelity,
            )  # fmt: skip
        except OutputError as exc:  # a full disk: one line, exit 1 (the rows not written are redone next time)
            view.stop()
            sys.stderr.write(f"aptviz: error: {terminal_text(exc, ERROR_CHARS)}\n")
            raise typer.Exit(1) from None
    view.finish(report)
    written = True
    if summary and report.rows + report.skipped and not report.interrupted:
        written = _summary(output, json_out=False, quiet=opts.quiet)
    raise typer.Exit(report.return_code or (0 if written else 1))


@summary_app.command(help="Aggregate an aptviz stats dataset per selection (table, and OUT/summary.json).")
@with_options()
def stats_summary(
    output: Annotated[Path, typer.Argument(help="The folder written by aptviz stats.", show_default=False)],
    json_out: JsonSummary = False,
    *,
    opts: Shared,
) -> None:
    from aptviz.errors import InputError, MissingExtraError

    try:
        written = _summary(output, json_out, opts.quiet)
    except MissingExtraError as exc:
        raise usage_error(str(exc)) from None
    except InputError as exc:
        sys.stderr.write(f"aptviz: error: {terminal_text(exc, ERROR_CHARS)}\n")
        raise typer.Exit(1) from None
    if not written:  # the table was shown, but summary.json is not there: a script must not read it as done
        raise typer.Exit(1)


def _summary(output: Path, json_out: bool, quiet: bool) -> bool:
    """Print the summary of ``output`` and write its summary.json; False when that file could not be written."""
    from aptviz.datasets.summary import summarize, write_summary_json

    summaries = summarize(output)
    path = output / SUMMARY_NAME
    try:
        write_summary_json(summaries, path)
    except OSError as exc:
        sys.stderr.write(f"aptviz: error: {terminal_text(f'cannot write {path}: {exc}', ERROR_CHARS)}\n")
        path = None
    if json_out:
        sys.stdout.write(json.dumps({"selections": [asdict(s) for s in summaries]}, indent=2) + "\n")
    elif not quiet:
        console = Console(highlight=False)
        console.print(summary_table(summaries))
        if path is not None:
            console.print(f"Summary written to {terminal_text(path)}", markup=False)
    return path is not None


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else f"{v:,}"


def summary_table(summaries):
    """Rich table, one column per selection: retention and LLM retention statistics, tokens saved, failures."""
    from rich.table import Table
    from rich.text import Text

    from aptviz.compute.params import format_alpha

    several = len({json.dumps(s.params, sort_keys=True) for s in summaries}) > 1
    table = Table(title="aptviz stats summary", title_justify="left")
    table.add_column("")
    for i, s in enumerate(summaries):
        head = s.method if s.alpha is None else f"{s.method} {format_alpha(s.alpha)}"
        if not s.selection.startswith(s.method):  # runs of several measures: the label starts with the measure
            head = f"{s.selection.split('_' + s.method)[0]}\n{head}"
        head = terminal_text(head)  # the method comes from the part files
        table.add_column(Text(f"{head}\n(params {i + 1})" if several else head), justify="right")
    rows = [("images", "images"), ("failed", "failed")]
    rows += [(f"retention {k}", f"retention_{k}") for k in ("mean", "median", "p5", "p95")]
    rows += [(f"LLM retention {k}", f"llm_retention_{k}") for k in ("mean", "median", "p5", "p95")]
    rows += [("ViT tokens saved", "vit_tokens_saved"), ("  of uniform", "vit_tokens_uniform")]
    rows += [("LLM tokens saved", "llm_tokens_saved"), ("  of uniform", "llm_tokens_uniform")]
    if any(s.ssim_apt_mean is not None or s.psnr_apt_mean is not None for s in summaries):  # --fidelity
        rows += [("PSNR APT mean (dB)", "psnr_apt_mean"), ("PSNR uniform, equal ViT (dB)", "psnr_uniform_mean")]
        rows += [("PSNR uniform, equal LLM (dB)", "psnr_uniform_llm_mean")]
        rows += [("SSIM APT mean", "ssim_apt_mean"), ("SSIM uniform, equal ViT", "ssim_uniform_mean")]
        rows += [("SSIM uniform, equal LLM", "ssim_uniform_llm_mean")]
        rows += [("uniform ViT tokens mean", "uniform_vit_tokens_mean")]
        rows += [("uniform LLM tokens mean", "llm_uniform_tokens_mean")]
    for label, attr in rows:
        table.add_row(label, *(_num(getattr(s, attr)) for s in summaries))
    if several:
        table.caption = Text(terminal_text("; ".join(
            f"params {i + 1}: " + ", ".join(f"{k}={v}" for k, v in s.params.items()) for i, s in enumerate(summaries)
        )))  # fmt: skip
    return table


def shard_of(path: str) -> str:
    """The shard of a row's ``path`` (``shard::member``), or the path itself for a file.

    >>> shard_of("d/a.parquet::17"), shard_of("x.png")
    ('d/a.parquet', 'x.png')
    """
    return path.rsplit("::", 1)[0]


class StatsView:
    """Progress bar (images, images/s) on stderr; failures printed above it, one line each.

    Rows of one shard that fail one after another for the same reason (a Parquet row group too large for
    ``--max-memory`` fails every row of it) are one line, then one line counting the rest.
    """

    def __init__(self, quiet: bool):
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.started = time.monotonic()
        self.progress = None
        self.task = None
        self.last: tuple[str, str] | None = None  # (shard, error) of the last failure printed
        self.repeats = 0  # rows since then that failed the same way, not printed yet
        if not quiet and self.err.is_terminal:
            self.progress, self.task = start_progress(self.err, None, elapsed=True)

    def _console(self):
        return self.progress.console if self.progress is not None else self.err

    def _flush_repeats(self) -> None:
        if self.repeats:
            shard, error = self.last
            line = f"{shard}: {self.repeats} more row(s) failed the same way: {error}"
            self._console().print(f"aptviz: error: {terminal_text(line, ERROR_CHARS)}", markup=False)
        self.repeats = 0

    def on_progress(self, p) -> None:
        for path, error in p.new_failures:
            key = (shard_of(str(path)), str(error))
            if key == self.last and "::" in str(path):
                self.repeats += 1
                continue
            self._flush_repeats()
            self.last = key
            self._console().print(f"aptviz: error: {terminal_text(f'{path}: {error}', ERROR_CHARS)}", markup=False)
        if self.progress is not None:
            rate = p.done / max(time.monotonic() - self.started, 1e-9)
            total = None if p.total is None else p.total - p.skipped
            self.progress.update(self.task, completed=p.done, total=total, rate=f"{rate:.1f} img/s")

    def stop(self) -> None:
        self._flush_repeats()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def finish(self, report) -> None:
        self._flush_repeats()
        rate = report.images / report.seconds if report.seconds > 0 else 0.0
        line = (
            f"{report.images} image(s) in {report.seconds:.1f} s ({rate:.1f} img/s): {report.failed} failed, "
            f"{report.skipped} already in {report.output}/ (skipped); {report.rows} rows in {len(report.parts)} part(s)"
        )
        if report.interrupted:
            self.err.print(f"aptviz: interrupted: {line}; run the same command again to resume.", markup=False)
        elif not self.quiet:
            Console(highlight=False).print(line, markup=False)
