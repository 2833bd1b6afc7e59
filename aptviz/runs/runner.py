"""The library run API: a whole batch, from inputs to a :class:`RunReport`.

:func:`run` discovers the inputs, skips complete images (resume), computes the
rest on worker processes, keeps summary.csv/json up to date, decides and
draws the retention plot, and returns a typed report. It prints nothing: the
caller follows the run through ``on_progress`` and renders the report (the
``aptviz`` command does exactly that).

Examples
--------
>>> import aptviz, tempfile
>>> report = aptviz.run(["sample_images/chelsea.png"], tempfile.mkdtemp(), ["budget:0.3"], workers=1)
>>> report.return_code, report.images[0].stats.selections[0].tokens
(0, 209)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aptviz._log import logger
from aptviz._text import text_path
from aptviz.compute.params import Params, RunSpec, as_runs
from aptviz.errors import ParameterError, Status
from aptviz.output.layout import PLOT_NAME, figure_name
from aptviz.output.lock import check_not_an_input, check_output, lock_output, read_only_fs
from aptviz.runs.batch import Job, discover, run_batch
from aptviz.runs.pool import default_workers, stop_on_sigterm
from aptviz.runs.results import JobResult, RunReport

__all__ = ["ProgressEvent", "RunOptions", "run"]

PLOTS_NOTICE = "batch figures skipped: install aptviz[plots] (matplotlib)"


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to ``on_progress``: once at the start (``result`` None), then once per input.

    ``done`` counts finished images out of ``total`` images found; inputs
    that failed before becoming an image (missing file, empty folder) come
    with their result and leave ``done`` unchanged.
    """

    done: int
    total: int
    result: JobResult | None = None


@dataclass(frozen=True)
class RunOptions:
    """How to run, besides what to compute."""

    workers: int | None = None  # None: every CPU core
    recursive: bool = False
    overwrite: bool = False
    save_maps: bool = False
    export_tokens: bool = False  # tokens.npz per image (APT's tokens as Qwen2-VL rows)
    log_level: str | None = None  # loguru level for worker processes
    summary_interval: float = 1.0  # seconds between summary rewrites while running
    render: object = None  # RenderOptions: how overlays are drawn (None: 2 px green JPEG)
    dataset_view: bool = True  # dataset.json, dataset figures and report.html at the end
    max_memory: int | None = None  # bytes the run may use (None: half the machine's RAM)


def _run_options(options: RunOptions | None, workers: int | None, values: dict) -> RunOptions:
    """``options`` with ``workers`` and the keyword options given beside it (they win), or built from them."""
    if workers is not None:
        values = {**values, "workers": workers}
    return replace(options, **values) if options is not None else RunOptions(**values)


class _Recorder:
    """Collects results into the report and the summary, and tells the caller."""

    def __init__(self, report: RunReport, summary, on_progress: Callable[[ProgressEvent], None] | None):
        self.report = report
        self.summary = summary
        self.on_progress = on_progress
        self.done = 0
        self.summary_failed = False

    def add(self, result: JobResult) -> None:
        self.report.add(result)
        self.summary.add(result)
        if result.name is not None:
            self.done += 1
        self.write_summary()
        self.tell(result)

    def tell(self, result: JobResult | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.done, self.report.jobs, result))

    def write_summary(self, force: bool = False) -> None:
        try:
            self.summary.write(force=force)
        except OSError as exc:  # reported once; the images themselves go on
            if not self.summary_failed:
                self.summary_failed = True
                self.report.errors.append(f"cannot write the summary in {self.report.output}: {exc}")


def run(
    inputs: Iterable[str | Path],
    output: str | Path = "visualizations",
    selections: Sequence[RunSpec | str] = (),
    params: Params | None = None,
    workers: int | None = None,
    *,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    options: RunOptions | None = None,
    **option_values,
) -> RunReport:
    """Run every selection on every input image and write the outputs.

    Parameters
    ----------
    inputs : iterable of str or Path
        Image files and/or folders.
    output : str or Path
        Output folder (created).
    selections : sequence of RunSpec or str
        What to select: RunSpecs, or text as on the command line
        (``"v1"``, ``"budget:0.3"``, ``"v2:0.8,1"``). Empty: v1.
    params : Params, optional
        Pipeline parameters (default ``Params()``); ``device="auto"`` is
        resolved only when there is work to do.
    workers : int, optional
        Worker processes (default: CPU cores).
    on_progress : callable, optional
        Called with a :class:`ProgressEvent` at the start and per input.
    options : RunOptions, optional
        recursive, overwrite, save_maps, export_tokens, log_level; or give them as keywords.

    Returns
    -------
    RunReport
        Every result in completion order, errors not about one image, whether
        it was interrupted (Ctrl-C), and ``return_code``.

    Raises
    ------
    ParameterError
        Before any work, for a bad value or an unusable output folder.
    MissingExtraError
        Before any work, for ``params.ocr`` without Tesseract.
    """
    options = _run_options(options, workers, option_values)
    params = params or Params()
    if params.ocr:  # before any work: without Tesseract every image would fail alike
        from aptviz.compute.ocr import check_tesseract

        check_tesseract()
    runs = as_runs(selections, num_scales=params.num_scales, measure=params.importance)
    inputs = list(inputs)
    check_not_an_input(inputs, output)
    if params.device != "auto":  # cuda is checked now; auto only when there is work (resuming needs no torch)
        params = params.resolved()
    jobs, failures = discover(inputs, recursive=options.recursive, exclude=output)
    budget = _memory_plan(params, options, len(jobs))  # before anything is written
    output = check_output(output)
    lock = lock_output(output)
    try:
        if lock.read_only or read_only_fs(output):
            _check_nothing_to_write(jobs, output, runs, params, options)
        report = RunReport(output, jobs=len(jobs))
        summary = _new_summary(output, params, jobs, options, read_only=lock.read_only)
        rec = _Recorder(report, summary, on_progress)
        rec.tell()
        for failure in failures:
            rec.add(failure)
        _run_jobs(rec, jobs, output, runs, params, budget, options)
        if not lock.read_only:
            _maybe_plot(report, rec.summary.rows, runs, _figure_format(options))
            _dataset_view(report, rec.summary, options, runs, params)
    finally:
        lock.release()
    return report


def _run_jobs(rec: _Recorder, jobs: list[Job], output: Path, runs: list[RunSpec], params: Params, budget, options):
    """The jobs on the worker pool, each result recorded, until done, Ctrl-C or SIGTERM; the summary written last."""
    with stop_on_sigterm() as caught:
        try:
            for result in run_batch(
                jobs, output, runs, params, budget.workers, options.overwrite, options.save_maps,
                options.log_level, export_tokens=options.export_tokens, max_image_pixels=budget.decode_pixels,
                render=options.render,
            ):  # fmt: skip
                rec.add(result)
        except KeyboardInterrupt:
            rec.report.interrupted = True
            rec.report.stop_signal = caught[0] if caught else signal.SIGINT
            rec.summary.refresh_from_disk()
            rec.report.complete = rec.summary.complete(j.name for j in jobs)  # folders workers finished count too
        finally:
            rec.write_summary(force=True)


def _memory_plan(params: Params, options: RunOptions, jobs: int):
    """Workers and decode limit within ``--max-memory``; ParameterError naming the estimate otherwise."""
    from aptviz.runs.memory import plan

    budget = plan(
        params,
        workers=options.workers,
        max_memory=options.max_memory,
        jobs=max(1, jobs),
        save_maps=options.save_maps,
        export_tokens=options.export_tokens,
        workers_given=options.workers is not None,
    )
    logger.debug("memory: {}", budget.describe())
    if options.workers is None and budget.workers < min(default_workers(), jobs):
        logger.warning("using {} worker(s) to stay within --max-memory ({})", budget.workers, budget.describe())
    return budget


def _check_nothing_to_write(jobs: list[Job], output: Path, runs: list[RunSpec], params: Params, options) -> None:
    """On a read-only file system a run can only confirm that everything is complete."""
    from aptviz.runs.batch import is_complete

    for job in jobs:
        done = is_complete(
            output / job.name, runs, params, options.save_maps, options.export_tokens, job.path, options.render
        )
        if options.overwrite or done is None:
            raise ParameterError(
                f"cannot write to the output folder {text_path(output)!r}: read-only file system "
                f"({text_path(job.path)} needs computing)"
            )


def _dataset_view(report: RunReport, summary, options: RunOptions, runs: list[RunSpec], params: Params) -> None:
    """dataset.json, the dataset figures (as the retention plot) and report.html."""
    if report.interrupted or not options.dataset_view:
        return
    from aptviz.runs.dataset_view import write_dataset_view

    # the matplotlib figures follow the retention plot's rule: a batch with 2+ selections, redrawn when computed
    figures = len(runs) >= 2 and report.jobs >= 2 and report.count(Status.done) > 0 and _can_plot(report)
    measure = (params.importance, params.aggregate)
    report.errors += write_dataset_view(
        report.output, summary.rows, summary.columns, summary.images, figures=figures, measure=measure,
        figure_format=_figure_format(options),
    )  # fmt: skip


def _figure_format(options: RunOptions) -> str:
    """png, pdf or svg: the batch figures' format (``RenderOptions.figure_format``)."""
    return getattr(options.render, "figure_format", None) or "png"


def _new_summary(output: Path, params: Params, jobs: list[Job], options: RunOptions, read_only: bool = False):
    from aptviz.runs.summary import Summary

    order = [str(j.path) for j in jobs]
    summary = Summary(output, params.scales, order=order, interval=options.summary_interval, enabled=not read_only)
    summary.load_existing(skip={j.name for j in jobs})
    return summary


def _can_plot(report: RunReport) -> bool:
    """Whether matplotlib (the ``plots`` extra) is importable; if not, the notice goes into the report once."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if PLOTS_NOTICE not in report.notices:
            logger.debug(PLOTS_NOTICE)
            report.notices.append(PLOTS_NOTICE)
        return False
    return True


def _maybe_plot(report: RunReport, rows: list[dict], runs: list[RunSpec], fmt: str = "png") -> None:
    """The retention plot: for a batch with 2+ selections, redrawn when something was computed."""
    plot = report.output / figure_name(PLOT_NAME, fmt)
    if len(runs) < 2 or report.jobs < 2 or report.interrupted:
        return
    if not report.count(Status.done) and plot.exists():
        return
    if not _can_plot(report):
        return
    from aptviz.runs.summary import write_retention_plot

    started = time.monotonic()
    for old in (plot.with_suffix(s) for s in (".png", ".pdf", ".svg")):  # the plot in another format
        if old != plot:
            old.unlink(missing_ok=True)
    try:
        report.plot = write_retention_plot(plot, rows)
    except (OSError, ValueError, RuntimeError) as exc:
        report.errors.append(f"cannot write {plot}: {exc}")
    logger.debug("retention plot in {:.2f} s", time.monotonic() - started)
