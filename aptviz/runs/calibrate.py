"""Calibration over image files: importance maps computed once per image, in workers."""

from __future__ import annotations

from aptviz.compute.calibration import Calibration, calibrate_maps
from aptviz.compute.params import DEFAULT_THRESHOLDS
from aptviz.errors import ParameterError
from aptviz.runs.pool import WorkerPool


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
    """Maps of every image, computed once each (in ``workers`` processes of the worker pool).

    A worker that dies on an image (killed for memory, say) fails that image
    only, with one line naming it; the others go on.

    Returns
    -------
    (list of (path, maps), list of (path, error))
        In input order.
    """
    jobs = [(str(p), params) for p in paths]
    pool = WorkerPool(_maps_of, workers=min(workers, len(jobs)), device=str(params.device), on_failure=_died)
    done = dict(pool.map(jobs))
    results = [done[j] for j in jobs]
    ok = [(p, m) for p, m, err in results if m is not None]
    failed = [(p, err) for p, m, err in results if m is None]
    return ok, failed


def _died(job: tuple[str, object], message: str) -> tuple[str, None, str]:
    """The failure of an image whose worker process died."""
    return job[0], None, message


def calibrate_paths(
    paths: list[str], method: str = "v2", target: float = 0.3, statistic: str = "mean",
    thresholds=DEFAULT_THRESHOLDS, params=None, workers: int = 1,
) -> tuple[Calibration, list[tuple[str, str]]]:  # fmt: skip
    """:func:`calibrate_maps` over image files (maps computed on ``workers`` processes).

    Returns the calibration and the failures, ``(path, error)`` each; raises
    :class:`NoImagesError` (carrying each reason) when every image failed.
    """
    from aptviz.compute.params import Params

    ok, failed = image_maps(paths, params or Params(), workers)
    if not ok and failed:
        raise NoImagesError(failed)
    cal = calibrate_maps([m for _, m in ok], method, target, statistic, thresholds, [p for p, _ in ok])
    return cal, failed


def calibrate(
    inputs, selection="v2", target: float = 0.3, statistic: str = "mean", params=None, workers: int = 1,
    recursive: bool = False, **param_values,
) -> Calibration:  # fmt: skip
    """``aptviz.calibrate``: the alpha (v2) or threshold factor (v1) whose retention over the images meets ``target``.

    Parameters
    ----------
    inputs : iterable of str or Path
        Image files and/or folders (``recursive``: their subfolders too).
    selection : str or RunSpec
        What to calibrate, as everywhere in the API: ``"v2"`` or ``"v1"``
        (text; an alpha given in it is ignored), or a
        :class:`~aptviz.compute.params.RunSpec` (v1: its thresholds are the base).
    target : float
        Target retention in (0, 1].
    statistic : {"mean", "median"}
        Statistic of the per-image retentions.
    params : Params, optional
        Pipeline parameters; or give its fields as keywords (``model=``, ``importance=`` ...).
    workers : int
        Worker processes computing the maps.

    Returns
    -------
    Calibration
        Typed, with ``to_dict()``; ``failed`` holds ``(path, reason)`` of the images that failed.

    Examples
    --------
    >>> cal = calibrate(["sample_images/chelsea.png"], "v2", target=0.3)
    >>> cal.method, cal.achieved <= 0.3, cal.failed
    ('v2', True, [])
    """
    from aptviz.compute.params import Params, RunSpec, parse_method_spec
    from aptviz.runs.batch import discover

    params = params or Params(**param_values)
    if isinstance(selection, RunSpec):
        method, base = selection.method, selection.thresholds
    else:
        method, base = parse_method_spec(selection)[0], None
    thresholds = tuple(base) if base is not None else DEFAULT_THRESHOLDS
    if method.value == "v1":
        RunSpec(method, None, thresholds).check_scales(params.num_scales)
    jobs, missing = discover(list(inputs), recursive)
    if not jobs:
        raise ParameterError("no images found in the inputs")
    cal, failed = calibrate_paths([str(j.path) for j in jobs], method.value, target, statistic, thresholds,
                                  params.resolved(), workers)  # fmt: skip
    cal.failed = [(str(f.path), f.error) for f in missing] + failed
    return cal
