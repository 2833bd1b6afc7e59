"""``aptviz stats`` as a library call: dataset in, Parquet rows out, local or on Ray.

:func:`run_stats` lists the inputs lazily, drops images whose rows are
already in OUT (resume), sends small tasks to an engine -- a local process
pool or Ray Data -- and writes the rows as atomic ``part-*.parquet`` files.
Both engines run :func:`aptviz.datasets.sources.run_task`, so they give identical rows.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz._text import text_path
from aptviz.compute.params import Engine, Params, RunSpec
from aptviz.datasets.parquet import PartWriter, contains, existing_row_ids, require_pyarrow
from aptviz.datasets.rows import failed_rows, row_id, run_key
from aptviz.datasets.sources import (
    Task,
    Unit,
    chunk_tasks,
    iter_units,
    run_task,
)
from aptviz.errors import ROW_FAILED, MissingExtraError, OutputError, ParameterError, exit_code
from aptviz.output.atomic import clean_stale_temp_files
from aptviz.output.lock import check_not_an_input, check_output, lock_output
from aptviz.runs.pool import STOP_SIGNALS, WorkerPool, default_workers, stop_on_sigterm

__all__ = ["Engine", "StatsProgress", "StatsReport", "run_stats"]

RAY_WINDOW = 4096  # tasks per Ray dataset: the driver holds at most this many task descriptors


@dataclass
class StatsProgress:
    """Counts so far; ``total`` is None until every input has been listed."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    listed: int = 0
    total: int | None = None
    new_failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error) since the last call


@dataclass
class StatsReport:
    """What a stats run did."""

    output: Path
    engine: str
    images: int = 0  # processed in this run (ok or failed)
    failed: int = 0
    skipped: int = 0  # already in OUT with the same parameters
    rows: int = 0
    seconds: float = 0.0
    parts: list[Path] = field(default_factory=list)
    interrupted: bool = False
    stop_signal: int | None = None  # what interrupted the run: SIGINT (Ctrl-C) or SIGTERM

    @property
    def return_code(self) -> int:
        """0 all images ok, 1 some failed, 130 interrupted by Ctrl-C, 143 stopped by SIGTERM."""
        return exit_code(bool(self.failed), self.interrupted, self.stop_signal)


def _pending_units(
    units: Iterable[Unit], existing: np.ndarray, keys: list[str], progress: StatsProgress
) -> Iterator[Unit]:
    """Units that still miss a row for some selection (resume); counts listed/skipped."""
    for unit in units:
        progress.listed += 1
        ids = [row_id(unit.ref.key, k) for k in keys]
        if existing.size and contains(existing, ids).all():
            progress.skipped += 1
            continue
        yield unit
    progress.total = progress.listed


def _local_engine(
    tasks: Iterator[Task],
    params: Params,
    runs: list[RunSpec],
    workers: int,
    log_level: str | None,
    limit: int,
    fidelity: bool = False,
) -> Iterator[list[dict]]:
    """Stream tasks through the worker pool (:class:`aptviz.runs.pool.WorkerPool`), yielding each task's rows.

    When a worker dies (killed for memory, say), every task in flight is
    rerun alone, then image by image, and only an image that kills its
    worker alone gets failed rows.
    """

    def failed(task: Task, message: str) -> list[dict]:
        return [r for u in task.units for r in failed_rows(u.ref, params, runs, message, fidelity)]

    pool = WorkerPool(
        run_task,
        (params, runs, limit, fidelity),
        workers=workers,
        device=params.device,
        log_level=log_level,
        on_failure=failed,
        split=_one_task_per_image,
    )
    for _, rows in pool.map(tasks):
        yield rows


def _one_task_per_image(task: Task) -> list[Task]:
    return [replace(task, units=(u,)) for u in task.units]


def require_ray():
    """Import ray and Ray Data, or raise one line naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("--engine ray needs Ray Data: pip install 'aptviz[ray]'") from exc
    return ray


def _ray_map(batch, params: Params, runs: list[RunSpec], limit: int, fidelity: bool = False):
    """Ray Data ``map_batches`` function: task JSON strings in, row table out."""
    from aptviz.compute.entropy import set_num_threads
    from aptviz.datasets.parquet import rows_to_table

    set_num_threads(1)
    rows: list[dict] = []
    for text in batch.column("task").to_pylist():
        rows += run_task(Task.from_json(text), params, runs, limit, fidelity)
    return rows_to_table(rows, fidelity)


def _ray_engine(
    tasks: Iterator[Task],
    params: Params,
    runs: list[RunSpec],
    workers: int,
    address: str | None,
    limit: int,
    fidelity: bool = False,
):
    """Run tasks on Ray Data, ``window`` tasks per dataset (bounded driver memory); yield Arrow tables."""
    import logging

    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": workers}
        ours = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kwargs)
        except Exception as exc:  # no cluster there, or a local Ray that cannot start
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            raise ParameterError(f"cannot start or reach {where}: {type(exc).__name__}: {exc}") from exc
        finally:  # Ray's own handlers dump a stack and abort: Ctrl-C, SIGTERM and SIGHUP stay ours (a clean stop)
            _restore_handlers(ours)
        started = True
    for name in ("ray", "ray.data"):  # the caller shows progress; Ray's own lines would garble it
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        while chunk := list(islice(tasks, RAY_WINDOW)):
            ds = ray.data.from_items([{"task": t.to_json()} for t in chunk], override_num_blocks=len(chunk))
            ds = ds.map_batches(
                _ray_map,
                batch_size=1,
                batch_format="pyarrow",
                fn_kwargs={"params": params, "runs": runs, "limit": limit, "fidelity": fidelity},
            )
            yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)
    finally:
        if started:
            ray.shutdown()


def _restore_handlers(handlers: dict) -> None:
    """Put back the Python signal handlers a library replaced (in the main thread; elsewhere nothing to do)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


def run_stats(
    inputs: Iterable[str | Path],
    output: str | Path,
    runs: list[RunSpec],
    params: Params,
    *,
    recursive: bool = False,
    image_column: str = "image",
    engine: Engine | str = Engine.local,
    workers: int | None = None,
    ray_address: str | None = None,
    rows_per_part: int = 20000,
    task_size: int = 8,
    log_level: str | None = None,
    max_memory: int | None = None,
    fidelity: bool = False,
    on_progress: Callable[[StatsProgress], None] | None = None,
    psnr: bool = False,
) -> StatsReport:
    """Compute the numbers of every image of a dataset and write them to ``output`` as Parquet.

    Parameters
    ----------
    inputs : iterable of str or Path
        Image files, Parquet files, WebDataset ``.tar`` shards, folders of them.
    output : str or Path
        The dataset folder (``part-*.parquet``); created when missing.
    runs, params : list of RunSpec, Params
        Selections (:func:`aptviz.compute.params.expand_runs`); pipeline parameters.
    recursive, image_column : bool, str
        Scan folders recursively; the Parquet column holding the images.
    engine : {"local", "ray"}
        The worker pool on this machine, or Ray Data.
    workers, ray_address : int, str, optional
        Local processes, or CPUs of the local Ray started when no ``ray_address``
        is given (default: CPU cores); the Ray cluster to join (``"auto"``, ``"ray://host:10001"``).
    rows_per_part, task_size : int
        Rows per Parquet part file; images per task sent to a worker.
    log_level : str, optional
        Loguru level for local workers.
    max_memory : int, optional
        Bytes the local run may use (default: half the RAM): the options are
        refused (ParameterError naming the estimate), or fewer workers used
        when ``workers`` is not given, as for the main command. With Ray it
        bounds each worker (one image at a time).
    fidelity, psnr : bool
        Add stats.json's PSNR and SSIM fields (psnr_apt, uniform_vit_tokens, psnr_uniform, ssim_apt,
        ssim_uniform, llm_uniform_tokens, psnr_uniform_llm, ssim_uniform_llm) to each row; part of the resume key. ``psnr`` is the former name.
    on_progress : callable, optional
        Called with a :class:`StatsProgress` after each task.

    Returns
    -------
    StatsReport
        Counts, parts written, and whether Ctrl-C or SIGTERM stopped the run
        (rows finished before then are written as a last complete part).
        Usage errors raise ParameterError before any work: a bad value, OUT equal
        to an input folder, OUT in use by another run (:func:`aptviz.output.lock.lock_output`).
    """
    inputs, fidelity = list(inputs), fidelity or psnr
    engine, params, budget, out = _check(engine, runs, params, workers, max_memory, output, inputs)
    lock = lock_output(check_output(out))  # a second run on OUT is refused: it would write every row again
    try:
        clean_stale_temp_files(out, depth=0)  # parts of killed writers
        report, progress, start = StatsReport(out, engine.value), StatsProgress(), time.monotonic()
        existing = existing_row_ids(out)
        keys = [run_key(params, spec, fidelity) for spec in runs]
        units = _pending_units(iter_units(inputs, recursive, image_column, exclude=out), existing, keys, progress)
        tasks = chunk_tasks(units, image_column, task_size)
        where = (budget.workers, log_level) if engine is Engine.local else (budget.workers, ray_address)
        engine_run = _local_engine if engine is Engine.local else _ray_engine
        results = engine_run(tasks, params, runs, *where, budget.decode_pixels, fidelity)
        writer = PartWriter(out, rows_per_part=rows_per_part, fidelity=fidelity)
        _write(results, writer, existing, runs, progress, report, on_progress)
    finally:
        lock.release()
    report.images, report.failed, report.skipped = progress.done, progress.failed, progress.skipped
    report.rows, report.parts, report.seconds = writer.rows_written, writer.parts, time.monotonic() - start
    return report


def _write(results, writer: PartWriter, existing, runs, progress: StatsProgress, report: StatsReport, on_progress):
    """Rows from the engine to part files until done, Ctrl-C or SIGTERM (then what is finished is flushed)."""
    failure: OSError | None = None
    with stop_on_sigterm() as caught:
        try:
            for rows in results:
                _account(rows, runs[0].label, len(runs), progress)
                try:
                    writer.add(_drop_existing(rows, existing))
                except OSError as exc:  # a part cannot be written (full disk): stop; rows not written are redone
                    failure = exc
                    break
                if on_progress is not None:
                    on_progress(progress)
        except KeyboardInterrupt:
            report.interrupted = True
            report.stop_signal = caught[0] if caught else signal.SIGINT
        finally:
            results.close()  # running tasks finish, queued ones are dropped
            try:
                writer.close()
            except OSError as exc:
                failure = failure or exc
    if failure is not None:
        raise OutputError(f"cannot write the rows in {text_path(writer.out)}: {_reason(failure)}") from None


def _reason(exc: OSError) -> str:
    """An OS error as its message alone (``No space left on device``), without the file name or errno."""
    return exc.strerror or str(exc) or type(exc).__name__


def _check(engine, runs: list[RunSpec], params: Params, workers: int | None, max_memory: int | None, output, inputs):
    """Everything a usage error can come from, checked before any work: (engine, params, memory plan, OUT)."""
    engine = Engine(getattr(engine, "value", engine))
    require_pyarrow()
    if engine is Engine.ray:
        require_ray()
    if not runs:
        raise ParameterError("no selection to run")
    params = params.resolved()
    budget = _memory_plan(params, engine, workers, max_memory)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"output {out} exists and is not a folder")
    check_not_an_input(inputs, out)
    return engine, params, budget, out


def _memory_plan(params: Params, engine: Engine, workers: int | None, max_memory: int | None):
    """Workers and decode limit within ``max_memory`` (the main command's estimate, :mod:`aptviz.runs.memory`)."""
    from aptviz.runs.memory import plan

    if engine is Engine.ray:  # a Ray worker holds one image at a time, on its own node
        one = plan(params, workers=1, max_memory=max_memory, threads=1, workers_given=True)
        return replace(one, workers=default_workers() if workers is None else max(1, workers))
    budget = plan(params, workers=workers, max_memory=max_memory, workers_given=workers is not None)
    logger.debug("memory: {}", budget.describe())
    return budget


def _account(rows, first_label: str, per_image: int, progress: StatsProgress) -> None:
    """Update image counts and the latest failures from a batch of rows (one per selection per image)."""
    if isinstance(rows, list):
        n = len(rows)
        first = [r for r in rows if r["selection"] == first_label]
        failures = [(r["path"], r["error"]) for r in first if r["status"] == ROW_FAILED]
    else:
        import pyarrow.compute as pc

        n = rows.num_rows
        bad = rows.filter(pc.and_(pc.equal(rows["status"], ROW_FAILED), pc.equal(rows["selection"], first_label)))
        failures = list(zip(bad["path"].to_pylist(), bad["error"].to_pylist()))
    progress.done += n // per_image
    progress.failed += len(failures)
    progress.new_failures = failures


def _drop_existing(rows, existing: np.ndarray):
    """Leave out rows already in OUT (an image redone for a selection it was missing)."""
    if not existing.size:
        return rows
    if isinstance(rows, list):
        keep = ~contains(existing, [r["row_id"] for r in rows])
        return [r for r, k in zip(rows, keep) if k]
    keep = ~contains(existing, rows.column("row_id").to_numpy(zero_copy_only=False))
    return rows.filter(keep)
