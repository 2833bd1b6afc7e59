"""Many images: input discovery, output naming, resuming, parallel workers.

:func:`discover` turns files and folders into jobs with collision-free output
folders; :func:`run_batch` runs them (skipping complete ones) and yields one
:class:`~aptviz.runs.results.JobResult` per input as it finishes, on the
worker pool (:class:`aptviz.runs.pool.WorkerPool`) that survives workers
killed mid-image. Inputs are expanded by :func:`aptviz.runs.scan.scan_inputs`. The whole run
(summary, plot, report) is :func:`aptviz.runs.runner.run`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aptviz._log import logger
from aptviz._version import __version__
from aptviz.compute.loading import file_identity
from aptviz.compute.params import Params, RunSpec
from aptviz.compute.stats import ImageStats
from aptviz.errors import InputError, Status
from aptviz.output.atomic import clean_stale_temp_files, read_json
from aptviz.output.layout import listed_files
from aptviz.runs.pool import WorkerPool, default_workers
from aptviz.runs.results import JobResult
from aptviz.runs.scan import INPUT_EXTENSIONS, scan_inputs

__all__ = [
    "Job",
    "discover",
    "is_complete",
    "run_batch",
]

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

    for found in scan_inputs(inputs, recursive, INPUT_EXTENSIONS, exclude):
        if found.error is not None:
            failures.append(JobResult.failed(found.path, found.error))
        elif found.folder is not None:  # mirrors the path below the folder given
            candidates.append((found.path, found.path.relative_to(found.folder).with_suffix("").as_posix()))
        else:
            candidates.append((found.path, found.path.stem))

    jobs: list[Job] = []
    used: dict[str, str] = dict.fromkeys(_run_file_names(), "")  # lower-cased name -> suffix of the file holding it
    for path, name in candidates:
        try:
            key = path.resolve()
        except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
            failures.append(JobResult.failed(path, "symbolic link loop: the link never reaches a file"))
            continue
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


def _run_file_names() -> set[str]:
    """Lower-cased names the run itself writes in OUTPUT: an input ``report.html.mkv`` must not get a folder
    ``report.html`` (the report, summaries and figures would fail to be written, or land in its place)."""
    from aptviz.output import layout
    from aptviz.output.lock import OutputLock

    files = {layout.SUMMARY_CSV, layout.SUMMARY_JSON, layout.DATASET_NAME, layout.REPORT_NAME, OutputLock.NAME}
    figures = (layout.PLOT_NAME, layout.HISTOGRAM_NAME, layout.PSNR_NAME, layout.FIDELITY_NAME, layout.OCR_NAME)
    for figure in figures:
        files |= {layout.figure_name(figure, fmt) for fmt in ("png", "pdf", "svg")}
    return {name.lower() for name in files}


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
        if "timeline" in files:  # a video's folder (docs/video.md): its own files
            return stats if all((out / rel).is_file() for rel in _video_listed(stats)) else None
        needed = [files[k] for k in ("heatmaps", "original", "resized", "blend", "compare")]
        needed += [sel.files[k] for sel in stats.selections for k in ("overlay", "model_view", "uniform")]
        if not all(needed):
            return None
        listed = listed_files(stats)  # every file it lists: each measure's heatmaps, explorer.js too
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    if not all((out / rel).is_file() for rel in listed):
        return None
    from aptviz.runs.dataset_view import explorer_file_ok

    if files.get("explorer") is not None and not explorer_file_ok(out, files["explorer"]):
        return None  # a file planted in place of the explorer data (report.html runs it): written again
    return stats


def _video_listed(stats: ImageStats) -> list[str]:
    """The files a video's stats.json lists (KeyError when one is missing from it)."""
    listed = [stats.files[k] for k in ("timeline", "card", "scrubber")]
    listed += [stats.files[k] for k in ("tokens", "maps") if k in stats.files]
    return listed + [sel.files[k] for sel in stats.selections for k in ("contact_sheet", "animation")]


def _render(render):
    from aptviz.render.image_pictures import RenderOptions

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
    pool = WorkerPool(
        _work_job,
        (output, runs, params, save_maps, export_tokens, max_image_pixels, render),
        workers=workers,
        device=params.device,
        log_level=log_level,
        on_failure=_job_failed,
    )
    for job, res in pool.map(todo):
        res.name = job.name
        yield res


def _work_job(job: Job, output: Path, *args) -> JobResult:
    """:func:`_work` for one job (what the worker pool calls)."""
    return _work(job.path, output / job.name, *args)


def _job_failed(job: Job, message: str) -> JobResult:
    """The result of a job whose worker process died (or failed outside :func:`_work`)."""
    return JobResult.failed(job.path, message)
