"""Calibration over image files: importance maps computed once per image, in workers."""

from __future__ import annotations

from aptviz.compute.calibration import Calibration, calibrate_maps
from aptviz.errors import ParameterError


class NoImagesError(ParameterError):
    """Every input failed: nothing to calibrate on. ``failed`` holds each ``(path, reason)``."""

    def __init__(self, failed: list[tuple[str, str]]) -> None:
        super().__init__("no images to calibrate on: every input failed")
        self.failed = failed


def _maps_of(job: tuple[str, object]) -> tuple[str, dict | None, str | None]:
    """Importance maps of one image (NumPy), or the reason it failed."""
    from aptviz.errors import InputError
    from aptviz.pipeline import compute

    path, params = job
    try:
        result = compute(path, [], params)
    except InputError as exc:
        return path, None, str(exc)
    except (OSError, ValueError) as exc:  # unreadable file and the like: one line, the batch goes on
        return path, None, f"{type(exc).__name__}: {exc}"
    return path, dict(result.maps), None  # NumPy already


def image_maps(paths: list[str], params, workers: int = 1) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """Maps of every image, computed once each (in ``workers`` processes).

    Returns
    -------
    (list of (path, maps), list of (path, error))
        In input order.
    """
    jobs = [(str(p), params) for p in paths]
    if workers <= 1 or len(jobs) <= 1:
        done = [_maps_of(j) for j in jobs]
    else:
        import multiprocessing as mp
        import os
        from concurrent.futures import ProcessPoolExecutor

        from aptviz.runs.batch import (
            _init_worker,  # one compute thread a worker, Ctrl-C left to the parent, dies with it
        )

        ctx = mp.get_context("spawn" if str(params.device).startswith("cuda") else "fork")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker, initargs=(None, os.getpid())
        ) as pool:
            done = list(pool.map(_maps_of, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    ok = [(p, m) for p, m, err in done if m is not None]
    failed = [(p, err) for p, m, err in done if m is None]
    return ok, failed


def calibrate_paths(
    paths: list[str],
    method: str = "v2",
    target: float = 0.3,
    statistic: str = "mean",
    thresholds=(3.0, 2.0),
    params=None,
    workers: int = 1,
) -> tuple[Calibration, list[tuple[str, str]]]:
    """:func:`calibrate_maps` over image files; returns the calibration and the failures.

    Raises
    ------
    NoImagesError
        When every image failed (it carries each reason).
    """
    from aptviz.compute.params import Params

    params = params or Params()
    ok, failed = image_maps(paths, params, workers)
    if not ok and failed:
        raise NoImagesError(failed)
    cal = calibrate_maps([m for _, m in ok], method, target, statistic, thresholds, [p for p, _ in ok])
    return cal, failed
