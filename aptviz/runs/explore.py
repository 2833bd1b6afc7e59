"""``aptviz.explore``: the explorer for images given in Python (a notebook, a script).

``aptviz.explore(path_or_image, ...)`` runs the pipeline up to the importance
maps, computes the explorer's data (:mod:`aptviz.compute.explorer_data`) and returns an
:class:`Explorer`: shown inline by Jupyter (``_repr_html_``, self-contained,
no network) and written as a standalone page by :meth:`Explorer.save`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz.compute.params import Method, Params, RunSpec, parse_method_spec
from aptviz.errors import ParameterError

__all__ = ["Explorer", "explore", "explorer_payload"]


@dataclass
class Explorer:
    """Explorers for one or more images, ready to show or save.

    Attributes
    ----------
    payloads : list of dict
        The explorer data of each image (:func:`aptviz.compute.explorer_data.explorer_data`).
    method : str
        The method the controls start with.
    alpha : float or None
        The alpha they start with (the method's default when None).
    """

    payloads: list[dict] = field(default_factory=list)
    method: str = "v2"
    alpha: float | None = None
    thresholds: list[float] | None = None
    title: str = "aptviz explorer"

    @property
    def names(self) -> list[str]:
        """``data-image`` of each explorer."""
        return [p["name"] for p in self.payloads]

    def _repr_html_(self) -> str:
        from aptviz.render.explorer import explorer_fragment

        return explorer_fragment(self.payloads, method=self.method, alpha=self.alpha, thresholds=self.thresholds)

    def html(self) -> str:
        """The standalone page (what :meth:`save` writes)."""
        from aptviz.render.explorer import explorer_page

        return explorer_page(self.payloads, self.title, method=self.method, alpha=self.alpha, thresholds=self.thresholds)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the standalone page atomically; returns its path (never over a folder or a device)."""
        from aptviz.output.atomic import write_bytes_atomic
        from aptviz.output.lock import check_output_file

        return write_bytes_atomic(check_output_file(path), self.html().encode("utf-8"))


def _loaded(image, params: Params):
    """A :class:`LoadedImage` and a name from a path, a PIL image or an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    from aptviz.compute.loading import LoadedImage, decode_limit, open_image, to_rgb

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return open_image(path, decode_limit(params.max_pixels)), path.stem, path
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if not isinstance(image, Image.Image):
        raise ParameterError(f"explore() takes a path, a PIL image or an (H, W, 3) uint8 array, not {type(image).__name__}")
    return LoadedImage(to_rgb(image), 1, image.mode), "image", Path("image")


def explorer_payload(loaded, name: str, params: Params, path: Path | None = None, image_url: str | None = None) -> dict:
    """The explorer data of one decoded image (resize and importance maps computed here)."""
    from aptviz.pipeline import compute_loaded
    from aptviz.compute.explorer_data import explorer_data

    result = compute_loaded(path or Path(name), loaded, [], params, views=False)
    return explorer_data(name, loaded.image, result.resized, result.maps, result.params, image_url)


def explore(image, selection: str | RunSpec = "v2", alpha: float | None = None, thresholds=None,
            name: str | None = None, *, method: str | Method | None = None, **params) -> Explorer:
    """Interactive explorers for one image or several (a list).

    Parameters
    ----------
    image : str, Path, PIL.Image.Image, ndarray, or a list of them
        What to explore.
    selection : str or RunSpec
        The selection the controls start with, as everywhere in the API:
        ``"v2"``, ``"budget:0.3"``, ``"v1"`` or a :class:`~aptviz.compute.params.RunSpec`
        (its method, alpha and v1 thresholds).
    alpha : float, optional
        The alpha they start with when ``selection`` gives none (v2: 1.0, budget: 0.5 by default).
    thresholds : sequence of float, optional
        The v1 thresholds they start with (one per scale above the finest).
    name : str, optional
        ``data-image`` of a single explorer (default: the file stem, or ``image``).
    method : optional
        The earlier name of ``selection`` (keyword only).
    **params
        Any :class:`aptviz.compute.params.Params` field (patch_size, importance, bins, ...).

    Returns
    -------
    Explorer
        Shown inline by Jupyter; ``.save("explore.html")`` writes a standalone page.

    Examples
    --------
    >>> ex = explore("sample_images/chelsea.png", "budget:0.3")
    >>> ex.names, ex.method, ex.alpha, "data-aptviz-explorer" in ex._repr_html_()
    (['chelsea'], 'budget', 0.3, True)
    """
    start, alpha, thresholds = _start(selection if method is None else method, alpha, thresholds)
    p = Params(**params)
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    payloads, seen = [], set()
    for item in images:
        loaded, stem, path = _loaded(item, p)
        base = name if (name and len(images) == 1) else stem
        unique, n = base, 1
        while unique in seen:
            n += 1
            unique = f"{base}_{n}"
        seen.add(unique)
        logger.debug("explorer data for {}", unique)
        payloads.append(explorer_payload(loaded, unique, p, path))
    thr = None if thresholds is None else [float(t) for t in thresholds]
    return Explorer(payloads, start.value, alpha, thr)


def _start(selection, alpha, thresholds) -> tuple[Method, float | None, object]:
    """``(method, alpha, thresholds)`` the controls start with, from text (``"budget:0.3"``) or a RunSpec."""
    if isinstance(selection, RunSpec):
        if selection.method.takes_alpha:
            return selection.method, selection.alpha, thresholds
        return selection.method, alpha, selection.thresholds if thresholds is None else thresholds
    method, own = parse_method_spec(selection)
    return method, own[0] if own else alpha, thresholds
