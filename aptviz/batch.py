"""Many images: input discovery, output naming, resuming, parallel workers.

:func:`discover` turns files and folders into jobs with collision-free output
folders; :func:`run_batch` runs them (skipping complete ones) and yields one
:class:`JobResult` per input as it finishes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ._log import logger
from ._version import __version__
from .errors import InputError
from .output import read_json
from .params import Params, RunSpec

__all__ = [
    "IMAGE_EXTENSIONS",
    "Job",
    "JobResult",
    "discover",
    "is_complete",
    "run_batch",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class Job:
    """One input image and the name of its output folder (relative to OUTPUT)."""

    path: Path
    name: str


@dataclass
class JobResult:
    """What happened to one input: ``done``, ``skipped`` (already complete) or ``failed``."""

    path: Path
    name: str | None
    status: str
    stats: dict | None = None
    error: str | None = None
    detail: str | None = None  # traceback, for -v


def discover(
    inputs: Iterable[str | Path], recursive: bool = False, exclude: str | Path | None = None
) -> tuple[list[Job], list[JobResult]]:
    """Expand files and folders into jobs with unique output folder names.

    Folder contents are scanned for image extensions (case-insensitive);
    output names mirror paths relative to the folder given, so ``a/x.jpg`` and
    ``b/x.jpg`` never collide. A file given directly is always tried, whatever
    its extension. Remaining collisions (``x.jpg`` and ``x.png``, or two
    inputs with one stem) get the extension, then a counter, appended.

    Parameters
    ----------
    inputs : iterable of str or Path
        Files and/or folders.
    recursive : bool
        Scan sub-folders too.
    exclude : str or Path, optional
        A folder whose contents are never picked up when scanning folders
        (the output folder: re-running ``aptviz . -r`` must not process its
        own pictures).

    Returns
    -------
    (list of Job, list of JobResult)
        The jobs, in input order (folders sorted), and failures found while
        looking (missing path, folder without images).
    """
    candidates: list[tuple[Path, str]] = []
    failures: list[JobResult] = []
    seen: set[Path] = set()
    skip = Path(exclude).resolve() if exclude is not None else None

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            # the output folder matters only when it lies inside this input folder
            guard = skip if skip is not None and skip.is_relative_to(p.resolve()) else None
            found = []
            for f in p.glob("**/*" if recursive else "*"):
                if not f.is_file() or (guard is not None and f.resolve().is_relative_to(guard)):
                    continue
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(f)
                else:
                    logger.debug("skipping non-image file {}", f)
            if not found:
                failures.append(JobResult(p, None, "failed", error="no images found in folder"))
            for f in sorted(found, key=lambda f: f.as_posix()):
                candidates.append((f, f.relative_to(p).with_suffix("").as_posix()))
        elif p.exists() or p.is_symlink():
            candidates.append((p, p.stem))
        else:
            failures.append(JobResult(p, None, "failed", error="file not found"))

    jobs: list[Job] = []
    used: dict[str, str] = {}  # lower-cased name -> suffix of the file holding it
    for path, name in candidates:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        unique = name
        suffix = path.suffix.lstrip(".").lower()
        if unique.lower() in used:
            holder = used[unique.lower()]
            unique = f"{name}_{suffix}" if suffix and suffix != holder else f"{name}_2"
            n = 2
            while unique.lower() in used:
                n += 1
                unique = f"{name}_{n}"
        used[unique.lower()] = suffix
        jobs.append(Job(path, unique))
    return jobs, failures


def _selection_key(entry: dict) -> dict:
    return {
        "method": entry.get("method"),
        "alpha": entry.get("alpha"),
        "thresholds": entry.get("thresholds") if entry.get("method") == "v1" else None,
    }


def is_complete(out_dir: str | Path, runs: list[RunSpec], params: Params, save_maps: bool) -> dict | None:
    """The stats of a finished earlier run with the same parameters, or None.

    Same parameters means: same aptviz version, same pipeline parameters (the
    device is ignored: results do not depend on it), the same selections in
    the same order, and every file it lists still present.
    """
    out = Path(out_dir)
    stats = read_json(out / "stats.json")
    if not isinstance(stats, dict) or stats.get("aptviz_version") != __version__:
        return None
    try:
        old = {k: v for k, v in stats["params"].items() if k != "device"}
        new = {k: v for k, v in params.to_dict().items() if k != "device"}
        if old != new:
            return None
        if [_selection_key(e) for e in stats["selections"]] != [r.key() for r in runs]:
            return None
        files = stats["files"]
        if bool(files.get("maps")) != save_maps:
            return None
        listed = list(files["heatmaps"].values()) + [files["original"], files["resized"]]
        listed += [e["files"]["overlay"] for e in stats["selections"]]
        if save_maps:
            listed.append(files["maps"])
    except (KeyError, TypeError, AttributeError):
        return None
    if not all((out / rel).is_file() for rel in listed):
        return None
    return stats


def _work(path: Path, out_dir: Path, runs: list[RunSpec], params: Params, save_maps: bool) -> JobResult:
    """Process one image; every failure becomes a ``failed`` result."""
    from .pipeline import process_image

    try:
        stats = process_image(path, out_dir, runs, params, save_maps)
        return JobResult(path, None, "done", stats=stats)
    except InputError as exc:
        return JobResult(path, None, "failed", error=str(exc), detail=traceback.format_exc())
    except MemoryError:
        return JobResult(path, None, "failed", error="out of memory", detail=traceback.format_exc())
    except OSError as exc:  # writing the outputs failed (disk full, permissions, ...)
        return JobResult(path, None, "failed", error=f"cannot write outputs: {exc}", detail=traceback.format_exc())
    except Exception as exc:  # a bug: still one line, the rest of the batch goes on
        return JobResult(
            path, None, "failed", error=f"internal error: {type(exc).__name__}: {exc}", detail=traceback.format_exc()
        )


def _init_worker(level: str | None) -> None:
    """Worker start-up: leave Ctrl-C to the parent, one compute thread each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .entropy import set_num_threads

    set_num_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if level is not None:
        logger.remove()
        logger.add(sys.stderr, level=level, format="{level}: {message}")
        logger.enable("aptviz")


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def run_batch(
    jobs: list[Job],
    output: str | Path,
    runs: list[RunSpec],
    params: Params,
    workers: int | None = None,
    overwrite: bool = False,
    save_maps: bool = False,
    log_level: str | None = None,
) -> Iterator[JobResult]:
    """Process jobs, skipping complete ones, and yield each result as it finishes.

    Parameters
    ----------
    jobs : list of Job
        From :func:`discover`.
    output : str or Path
        The OUTPUT folder; job ``name`` folders go below it.
    runs : list of RunSpec
        Selections for every image.
    params : Params
        Pipeline parameters; device ``auto`` is resolved here when there is work.
    workers : int, optional
        Parallel processes (default: CPU cores). 1 runs in this process.
    overwrite : bool
        Redo images even when their stats.json is complete.
    save_maps : bool
        Also write maps.npz per image.
    log_level : str, optional
        Loguru level for worker processes.

    Yields
    ------
    JobResult
        In completion order. On Ctrl-C, running images are finished, pending
        ones are dropped, and KeyboardInterrupt propagates.
    """
    output = Path(output)
    todo: list[Job] = []
    for job in jobs:
        stats = None if overwrite else is_complete(output / job.name, runs, params, save_maps)
        if stats is not None:
            logger.debug("{}: complete with the same parameters, skipped", job.path)
            yield JobResult(job.path, job.name, "skipped", stats=stats)
        else:
            todo.append(job)
    if not todo:
        return
    if params.device == "auto":
        from dataclasses import replace

        from .device import resolve_device

        params = replace(params, device=resolve_device("auto"))
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, len(todo))
    if workers <= 1:
        for job in todo:
            res = _work(job.path, output / job.name, runs, params, save_maps)
            res.name = job.name
            yield res
        return

    method = "spawn" if params.device.startswith("cuda") else "fork"
    ctx = multiprocessing.get_context(method)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(log_level,))

    pool = new_pool()
    broken = False
    pending: dict[Future, Job] = {}
    alone: set[Future] = set()  # futures run with nothing else in flight
    suspects: list[Job] = []  # jobs in flight when a worker died: rerun one by one
    queue = list(reversed(todo))
    try:
        while queue or pending or suspects:
            if broken:  # a worker died (e.g. killed for memory): start a fresh pool
                pool.shutdown(wait=False, cancel_futures=True)
                pool, broken = new_pool(), False
            if suspects:
                if not pending:
                    job = suspects.pop(0)
                    fut = pool.submit(_work, job.path, output / job.name, runs, params, save_maps)
                    pending[fut] = job
                    alone.add(fut)
            else:
                # keep at most 2 jobs per worker in flight so Ctrl-C has little to cancel
                while queue and len(pending) < 2 * workers:
                    job = queue.pop()
                    pending[pool.submit(_work, job.path, output / job.name, runs, params, save_maps)] = job
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if fut not in alone:  # maybe another image killed the worker
                        suspects.append(job)
                        continue
                    res = JobResult(job.path, None, "failed", error="worker process died (out of memory?)")
                except Exception as exc:
                    res = JobResult(job.path, None, "failed", error=f"worker failed: {type(exc).__name__}: {exc}")
                alone.discard(fut)
                res.name = job.name
                yield res
    except BaseException:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
