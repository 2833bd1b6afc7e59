"""Many images: input discovery, output naming, resuming, parallel workers.

:func:`discover` turns files and folders into jobs with collision-free output
folders; :func:`run_batch` runs them (skipping complete ones) and yields one
:class:`~aptviz.runs.results.JobResult` per input as it finishes, using a
:class:`RecoveringPool` that survives workers killed mid-image. The whole run
(summary, plot, report) is :func:`aptviz.runs.runner.run`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from aptviz._log import logger
from aptviz._version import __version__
from aptviz.compute.loading import file_identity
from aptviz.compute.params import Params, RunSpec
from aptviz.compute.stats import ImageStats
from aptviz.errors import InputError
from aptviz.output.atomic import clean_stale_temp_files, read_json
from aptviz.runs.results import JobResult, Status

__all__ = [
    "IMAGE_EXTENSIONS",
    "Job",
    "JobResult",
    "RecoveringPool",
    "default_workers",
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
                failures.append(JobResult.failed(p, "no images found in folder"))
            for f in sorted(found, key=lambda f: f.as_posix()):
                candidates.append((f, f.relative_to(p).with_suffix("").as_posix()))
        elif p.exists() or p.is_symlink():
            candidates.append((p, p.stem))
        else:
            failures.append(JobResult.failed(p, "file not found"))

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


def is_complete(
    out_dir: str | Path,
    runs: list[RunSpec],
    params: Params,
    save_maps: bool,
    export_tokens: bool = False,
    source: str | Path | None = None,
    render=None,
) -> ImageStats | None:
    """The stats of a finished earlier run with the same input and parameters, or None.

    Same parameters means: same aptviz version, same pipeline parameters (the
    device is ignored: results do not depend on it), the same selections in
    the same order, and every file it lists still present. Same input (when
    ``source`` is given) means the same resolved path, size in bytes and
    modification time as recorded in stats.json: another file under the same
    output name, or the same file changed since, is not complete.

    Examples
    --------
    >>> import tempfile
    >>> is_complete(tempfile.mkdtemp(), [RunSpec("v1")], Params(), False) is None
    True
    """
    out = Path(out_dir)
    data = read_json(out / "stats.json")
    if not isinstance(data, dict) or data.get("aptviz_version") != __version__:
        return None
    try:
        stats = ImageStats.from_dict(data)
        if source is not None and not _same_input(stats, source):
            return None
        old = {k: v for k, v in stats.params.to_dict().items() if k != "device"}
        new = {k: v for k, v in params.to_dict().items() if k != "device"}
        if old != new or len(stats.selections) != len(runs):
            return None
        if not all(sel.matches(spec, params) for sel, spec in zip(stats.selections, runs)):
            return None
        files = stats.files
        if bool(files.get("maps")) != save_maps or bool(files.get("tokens")) != export_tokens:
            return None
        if stats.render != _render(render).to_dict():
            return None
        listed = list(files["heatmaps"].values()) + [files["original"], files["resized"]]
        listed += [files["blend"], files["compare"]]
        listed += [sel.files[k] for sel in stats.selections for k in ("overlay", "model_view", "uniform")]
        if save_maps:
            listed.append(files["maps"])
        if export_tokens:
            listed.append(files["tokens"])
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    if not all((out / rel).is_file() for rel in listed):
        return None
    return stats


def _render(render):
    from aptviz.render.extras import RenderOptions

    return render or RenderOptions()


def _same_input(stats: ImageStats, source: str | Path) -> bool:
    """Whether ``stats`` was made from the file now at ``source`` (path, size, mtime)."""
    now = file_identity(source)
    img = stats.image
    return now is not None and (img.resolved_path, img.size_bytes, img.mtime_ns) == (
        now.resolved_path,
        now.size_bytes,
        now.mtime_ns,
    )


def _work(
    path: Path,
    out_dir: Path,
    runs: list[RunSpec],
    params: Params,
    save_maps: bool,
    export_tokens: bool = False,
    max_image_pixels: int | None = None,
    render=None,
) -> JobResult:
    """Process one image; every failure becomes a ``failed`` result."""
    from aptviz.pipeline import process_image

    try:
        stats = process_image(path, out_dir, runs, params, save_maps, export_tokens, max_image_pixels, render)
        return JobResult(path, None, Status.done, stats=stats)
    except InputError as exc:
        return JobResult.failed(path, str(exc), traceback.format_exc())
    except MemoryError:
        return JobResult.failed(path, "out of memory", traceback.format_exc())
    except OSError as exc:  # writing the outputs failed (disk full, permissions, ...)
        return JobResult.failed(path, f"cannot write outputs: {exc}", traceback.format_exc())
    except Exception as exc:  # a bug: still one line, the rest of the batch goes on
        return JobResult.failed(path, f"internal error: {type(exc).__name__}: {exc}", traceback.format_exc())


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when the main process dies, however it dies (kill -9 included).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Everywhere: a daemon thread
    that exits the process once its parent is no longer ``parent``.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    import threading

    threading.Thread(target=watch, name="aptviz-parent-watch", daemon=True).start()


def _init_worker(level: str | None, parent: int | None = None) -> None:
    """Worker start-up: die with the parent, leave Ctrl-C and SIGTERM to it, one compute thread each."""
    if parent is not None:
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent stops the run cleanly; it kills us if it dies
    from aptviz.compute.entropy import set_num_threads

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


class RecoveringPool:
    """A process pool that survives a worker dying mid-image (e.g. killed for memory).

    When a worker dies, every image in flight is suspect: a fresh pool reruns
    them one at a time, so only the image that kills its worker alone is
    reported as failed. At most ``2 * workers`` images are in flight, so
    Ctrl-C has little to cancel.

    Parameters
    ----------
    new_pool : callable
        Returns a fresh :class:`ProcessPoolExecutor`.
    workers : int
        Its number of processes.
    submit : callable
        ``submit(pool, job) -> Future`` of a :class:`JobResult`.
    """

    def __init__(self, new_pool: Callable[[], ProcessPoolExecutor], workers: int, submit: Callable):
        self._new_pool = new_pool
        self._workers = workers
        self._submit = submit
        self._pool = new_pool()
        self._broken = False
        self._pending: dict[Future, Job] = {}
        self._alone: set[Future] = set()  # futures run with nothing else in flight
        self._suspects: list[Job] = []  # jobs in flight when a worker died: rerun one by one

    def run(self, jobs: list[Job]) -> Iterator[JobResult]:
        """Yield one result per job, in completion order; on any exception, cancel and shut down."""
        queue = list(reversed(jobs))
        try:
            while queue or self._pending or self._suspects:
                self._fill(queue)
                done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    res = self._collect(fut)
                    if res is not None:
                        yield res
        except BaseException:
            for fut in self._pending:
                fut.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            raise
        self._pool.shutdown(wait=True)

    def _fill(self, queue: list[Job]) -> None:
        if self._broken:  # a worker died: start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._broken = self._new_pool(), False
        if self._suspects:
            if not self._pending:
                job = self._suspects.pop(0)
                fut = self._submit(self._pool, job)
                self._pending[fut] = job
                self._alone.add(fut)
            return
        while queue and len(self._pending) < 2 * self._workers:
            job = queue.pop()
            self._pending[self._submit(self._pool, job)] = job

    def _collect(self, fut: Future) -> JobResult | None:
        job = self._pending.pop(fut)
        try:
            res = fut.result()
        except BrokenProcessPool:
            self._broken = True
            if fut not in self._alone:  # maybe another image killed the worker
                self._suspects.append(job)
                return None
            res = JobResult.failed(job.path, "worker process died (out of memory?)")
        except Exception as exc:
            res = JobResult.failed(job.path, f"worker failed: {type(exc).__name__}: {exc}")
        self._alone.discard(fut)
        res.name = job.name
        return res


def run_batch(
    jobs: list[Job],
    output: str | Path,
    runs: list[RunSpec],
    params: Params,
    workers: int | None = None,
    overwrite: bool = False,
    save_maps: bool = False,
    log_level: str | None = None,
    export_tokens: bool = False,
    max_image_pixels: int | None = None,
    render=None,
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
    export_tokens : bool
        Also write tokens.npz per image.
    max_image_pixels : int, optional
        Decompression-bomb limit (see :mod:`aptviz.runs.memory`).
    render : RenderOptions, optional
        How the overlays are drawn (part of "same parameters" when resuming).

    Yields
    ------
    JobResult
        In completion order. On Ctrl-C, running images are finished, pending
        ones are dropped, and KeyboardInterrupt propagates.
    """
    output = Path(output)
    todo: list[Job] = []
    for job in jobs:
        stats = None if overwrite else is_complete(
            output / job.name, runs, params, save_maps, export_tokens, job.path, render
        )
        if stats is not None:
            logger.debug("{}: complete with the same input and parameters, skipped", job.path)
            clean_stale_temp_files(output / job.name)  # a worker killed after stats.json was written
            yield JobResult(job.path, job.name, Status.skipped, stats=stats)
        else:
            todo.append(job)
    if not todo:
        return
    params = params.resolved()
    workers = min(default_workers() if workers is None else max(1, workers), len(todo))
    if workers <= 1:
        for job in todo:
            res = _work(job.path, output / job.name, runs, params, save_maps, export_tokens, max_image_pixels, render)
            res.name = job.name
            yield res
        return

    ctx = multiprocessing.get_context("spawn" if params.device.startswith("cuda") else "fork")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(log_level, os.getpid())
        )

    def submit(pool: ProcessPoolExecutor, job: Job) -> Future:
        args = (runs, params, save_maps, export_tokens, max_image_pixels, render)
        return pool.submit(_work, job.path, output / job.name, *args)

    yield from RecoveringPool(new_pool, workers, submit).run(todo)
