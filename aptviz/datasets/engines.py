"""``aptviz stats`` as a library call: dataset in, Parquet rows out, local or on Ray.

:func:`run_stats` lists the inputs lazily, drops images whose rows are
already in OUT (resume), sends small tasks to an engine -- a local process
pool or Ray Data -- and writes the rows as atomic ``part-*.parquet`` files.
Both engines run :func:`aptviz.datasets.sources.run_task`, so they give identical rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from enum import Enum
from itertools import islice
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz.compute.params import Params, RunSpec
from aptviz.datasets.parquet import PartWriter, contains, existing_row_ids, require_pyarrow
from aptviz.datasets.rows import failed_rows, row_id, run_key
from aptviz.datasets.sources import (
    Task,
    Unit,
    chunk_tasks,
    iter_units,
    run_task,
)
from aptviz.errors import MissingExtraError, ParameterError

__all__ = ["Engine", "StatsProgress", "StatsReport", "run_stats"]

RAY_WINDOW = 4096  # tasks per Ray dataset: the driver holds at most this many task descriptors


class Engine(str, Enum):
    """Where the per-image work runs."""

    local = "local"
    ray = "ray"


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

    @property
    def return_code(self) -> int:
        """0 all images ok, 1 some failed, 130 interrupted."""
        from aptviz.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

        return EXIT_INTERRUPTED if self.interrupted else EXIT_FAILED if self.failed else EXIT_OK


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
    """Stream tasks through a process pool, at most 2 per worker in flight (Ctrl-C has little to cancel).

    When a worker dies (killed for memory, say), every task in flight is
    suspect: a fresh pool reruns them one at a time, then image by image, and
    only an image that kills its worker alone gets failed rows.
    """
    if workers <= 1:
        for task in tasks:
            yield run_task(task, params, runs, limit, fidelity)
        return
    import multiprocessing
    import os

    from aptviz.runs.batch import _init_worker

    ctx = multiprocessing.get_context("spawn" if params.device.startswith("cuda") else "fork")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(log_level, os.getpid()))

    pool = new_pool()
    pending: dict[Future, Task] = {}
    suspects: list[Task] = []
    try:
        while True:
            if suspects:  # one at a time, alone in the pool
                if not pending:
                    task = suspects.pop(0)
                    pending[pool.submit(run_task, task, params, runs, limit, fidelity)] = task
            else:
                for task in islice(tasks, 2 * workers - len(pending)):
                    pending[pool.submit(run_task, task, params, runs, limit, fidelity)] = task
            if not pending:
                break
            alone = len(pending) == 1  # a death then is this task's own
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = pending.pop(fut)
                try:
                    rows = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if not alone:
                        suspects.append(task)
                        continue
                    if len(task.units) > 1:  # which of its images? each alone
                        suspects += [Task(task.source, task.shard, task.image_column, (u,)) for u in task.units]
                        continue
                    error = "worker process died (out of memory?)"
                    rows = [r for u in task.units for r in failed_rows(u.ref, params, runs, error, fidelity)]
                yield rows
            if broken:  # a fresh pool; what was in flight is rerun one task at a time
                suspects += pending.values()
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


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
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kwargs)
        except Exception as exc:  # no cluster there, or a local Ray that cannot start
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            raise ParameterError(f"cannot start or reach {where}: {type(exc).__name__}: {exc}") from exc
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
    runs : list of RunSpec
        Selections (:func:`aptviz.compute.params.expand_runs`).
    params : Params
        Pipeline parameters.
    recursive : bool
        Scan folders recursively.
    image_column : str
        Parquet column holding the images.
    engine : {"local", "ray"}
        Process pool on this machine, or Ray Data.
    workers : int, optional
        Local processes, or CPUs of the local Ray started when no ``ray_address``
        is given (default: CPU cores).
    ray_address : str, optional
        Connect to this Ray cluster (``"auto"`` or ``"ray://host:10001"``).
    rows_per_part, task_size : int
        Rows per Parquet part file; images per task sent to a worker.
    log_level : str, optional
        Loguru level for local worker processes.
    max_memory : int, optional
        Bytes the local run may use (default: half the RAM): the options are
        refused (ParameterError naming the estimate), or fewer workers used
        when ``workers`` is not given, as for the main command. With Ray it
        bounds each worker (one image at a time).
    fidelity, psnr : bool
        Add stats.json's PSNR and SSIM fields (psnr_apt, uniform_vit_tokens, psnr_uniform, ssim_apt,
        ssim_uniform) to each row; part of the resume key. ``psnr`` is the former name.
    on_progress : callable, optional
        Called with a :class:`StatsProgress` after each task.

    Returns
    -------
    StatsReport
        Counts, parts written, and whether Ctrl-C stopped the run (rows
        finished before then are written as a last complete part).
    """
    engine, params, budget, out = _check(engine, runs, params, workers, max_memory, output)
    fidelity = fidelity or psnr
    report, start, progress = StatsReport(out, engine.value), time.monotonic(), StatsProgress()
    existing = existing_row_ids(out) if out.is_dir() else np.empty(0, dtype=np.int64)
    keys = [run_key(params, spec, fidelity) for spec in runs]
    units = _pending_units(iter_units(inputs, recursive, image_column, exclude=out), existing, keys, progress)
    tasks = chunk_tasks(units, image_column, task_size)
    writer = PartWriter(out, rows_per_part=rows_per_part, fidelity=fidelity)
    if engine is Engine.local:
        results = _local_engine(tasks, params, runs, budget.workers, log_level, budget.decode_pixels, fidelity)
    else:
        results = _ray_engine(tasks, params, runs, budget.workers, ray_address, budget.decode_pixels, fidelity)
    report.interrupted = _drain(results, writer, existing, runs, progress, on_progress)
    report.images, report.failed, report.skipped = progress.done, progress.failed, progress.skipped
    report.rows, report.parts = writer.rows_written, writer.parts
    report.seconds = time.monotonic() - start
    return report


def _drain(results, writer, existing, runs: list[RunSpec], progress, on_progress) -> bool:
    """Write the engine's rows as they come; True when Ctrl-C stopped it (the parts are complete either way)."""
    try:
        for rows in results:
            _account(rows, runs[0].label, len(runs), progress)
            writer.add(_drop_existing(rows, existing))
            if on_progress is not None:
                on_progress(progress)
    except KeyboardInterrupt:
        return True
    finally:
        results.close()  # running tasks finish, queued ones are dropped
        writer.close()
    return False


def _check(engine, runs: list[RunSpec], params: Params, workers: int | None, max_memory: int | None, output):
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
    return engine, params, budget, out


def _memory_plan(params: Params, engine: Engine, workers: int | None, max_memory: int | None):
    """Workers and decode limit within ``max_memory`` (the main command's estimate, :mod:`aptviz.runs.memory`)."""
    from aptviz.runs.batch import default_workers
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
        failures = [(r["path"], r["error"]) for r in rows if r["status"] == "failed" and r["selection"] == first_label]
    else:
        import pyarrow.compute as pc

        n = rows.num_rows
        bad = rows.filter(pc.and_(pc.equal(rows["status"], "failed"), pc.equal(rows["selection"], first_label)))
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
