"""One image, computed once: the immutable :class:`Analysis` and its complete stats.

The flow of one image (docs/layout.md)::

    load -> resize -> importance -> selections -> model views -> Analysis -> ImageStats

:func:`analyse_loaded` runs it. Maps and masks come back as read-only NumPy
arrays: on the torch backend they are converted here, once, and nothing
downstream (pictures, files, rows) converts again. :func:`image_stats` turns
an analysis into the stats.json numbers, purely: the same analysis gives the
same stats whether or not any file is written (``files`` is the writer's).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from aptviz._log import logger
from aptviz._text import text_path
from aptviz._version import __version__
from aptviz.compute.entropy import PAD
from aptviz.compute.histogram import value_histogram
from aptviz.compute.importance import compute_importance, informative_scale
from aptviz.compute.loading import LoadedImage, decode_limit, open_image
from aptviz.compute.ocr import OcrScores
from aptviz.compute.params import Params, RunSpec
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import Selection, select
from aptviz.compute.stats import ImageInfo, ImageStats, ImportanceSummary, SelectionStats, TimeAxis
from aptviz.compute.tokens import llm_tokens
from aptviz.compute.views import SWEEP_RETENTIONS, ModelView, all_views, uniform_sweep
from aptviz.compute.xp import to_numpy
from aptviz.errors import InputError, ParameterError

__all__ = [
    "Analysis",
    "SelectionKey",
    "SelectionResult",
    "analyse_file",
    "analyse_frames",
    "analyse_loaded",
    "entropy_summary",
    "image_stats",
    "selection_stats",
]

SelectionKey = tuple  # (measure, method, alpha): what names one selection of an image


@dataclass(frozen=True)
class SelectionResult:
    """One selection of one image: the measure it ran on, what was asked, what came out.

    ``selection.masks`` are read-only NumPy arrays; ``view`` is None when the
    model views were not computed (``aptviz stats`` without ``--psnr``).
    """

    measure: str
    spec: RunSpec
    selection: Selection
    view: ModelView | None = None
    ocr: OcrScores | None = None  # --ocr only

    @property
    def key(self) -> SelectionKey:
        """``(measure, method, alpha)``, e.g. ``("entropy", "budget", 0.3)``."""
        return (self.measure, self.spec.method.value, self.spec.alpha)

    @property
    def label(self) -> str:
        """The selection's file-name id (:attr:`aptviz.compute.params.RunSpec.label`)."""
        return self.spec.label


@dataclass(frozen=True)
class Analysis:
    """Everything computed for one image, as read-only NumPy arrays.

    Attributes
    ----------
    path : Path
        The image as named by the caller (nothing is read from it here).
    loaded : LoadedImage
        The decoded image.
    resized : ndarray
        ``(H, W, 3)`` uint8, the Qwen2-VL resize.
    params : Params
        The parameters, device resolved.
    maps_by_measure : Mapping[str, Mapping[int, ndarray]]
        ``{measure: {patch_size: map}}``; :attr:`maps` is the run's measure.
    selections : tuple of SelectionResult
        In the order asked.
    shown_scale : int
        The scale the one-scale pictures show (:func:`informative_scale`).
    clip : ndarray or None
        The time axis: ``(T, H, W, 3)`` uint8 frames analysed together (a
        video tubelet, ``resized`` is its first frame), None for an image (T = 1).
    """

    path: Path
    loaded: LoadedImage
    resized: np.ndarray
    params: Params
    maps_by_measure: Mapping[str, Mapping[int, np.ndarray]]
    selections: tuple[SelectionResult, ...]
    shown_scale: int
    clip: np.ndarray | None = None

    @property
    def frames(self) -> int:
        """Frames analysed together: 1 for an image, the temporal patch size for a video tubelet."""
        return 1 if self.clip is None else int(self.clip.shape[0])
    # the uniform baseline at a sweep of sizes (compute.views.uniform_sweep): fidelity_vs_tokens.png's curve
    uniform_sweep: tuple = ()

    @property
    def measure(self) -> str:
        """The run's measure (the first, when several were run)."""
        return self.params.importance if self.params.importance in self.maps_by_measure else next(
            iter(self.maps_by_measure))

    @property
    def several_measures(self) -> bool:
        """Whether the selections ran on several measures (their labels then name the measure)."""
        return len(self.maps_by_measure) > 1

    @property
    def maps(self) -> Mapping[int, np.ndarray]:
        """``{patch_size: importance map}`` of the run's measure."""
        return self.maps_by_measure[self.measure]

    @property
    def keys(self) -> list[SelectionKey]:
        """``(measure, method, alpha)`` of every selection, in order."""
        return [s.key for s in self.selections]

    def selection(self, method: str, alpha: float | None = None, measure: str | None = None) -> SelectionResult:
        """The selection with this key (the run's measure by default); KeyError when absent."""
        key = (measure or self.measure, str(method), alpha)
        for s in self.selections:
            if s.key == key:
                return s
        raise KeyError(key)

    def stats(self, render: dict | None = None) -> ImageStats:
        """:func:`image_stats` of this analysis."""
        return image_stats(self, render)


def _frozen(array) -> np.ndarray:
    """``array`` as a read-only NumPy array (a torch tensor is copied to the host here, once)."""
    out = to_numpy(array)
    out.flags.writeable = False
    return out


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def _views(loaded: LoadedImage, resized: np.ndarray, selections: list[Selection], p: Params) -> list:
    """Model view and uniform baselines (equal ViT and equal LLM tokens) of every selection, their SSIMs in one
    pass over the image."""
    items = [(sel.masks, sel.tokens, _llm_tokens(sel, p)) for sel in selections]
    return all_views(loaded.image, resized, items, p.patch_size, p.merge_size, p.min_pixels)


def _llm_tokens(sel: Selection, p: Params) -> int | None:
    """The selection's LLM tokens, None when its patches do not fill whole merge units (compute.tokens)."""
    try:
        return llm_tokens(sel.tokens_by_scale, p.patch_size, p.merge_size)
    except ValueError:
        return None


def _sweep(loaded: LoadedImage, resized: np.ndarray, selections: list[Selection], p: Params, views: list) -> tuple:
    """The uniform baseline at :data:`SWEEP_RETENTIONS`, down to the image's lowest selection retention, and at the
    selections' own baselines (``views``: already scored, not computed again)."""
    n = max(1, selections[0].base_small_tokens) if selections else 1
    m2 = p.merge_size * p.merge_size
    lows = [sel.retention for sel in selections]
    lows += [t * m2 / n for t in (_llm_tokens(sel, p) for sel in selections) if t is not None]  # LLM retention
    targets = set(SWEEP_RETENTIONS) | {r for r in lows if 0 < r < min(SWEEP_RETENTIONS)}
    known = {}
    for v in filter(None, views):
        if v.stats.ssim_uniform is not None:
            known[tuple(v.uniform.size)] = (v.stats.psnr_uniform, v.stats.ssim_uniform)
        if v.uniform_llm is not None and v.stats.ssim_uniform_llm is not None:
            known[tuple(v.uniform_llm.size)] = (v.stats.psnr_uniform_llm, v.stats.ssim_uniform_llm)
    return tuple(uniform_sweep(loaded.image, resized, sorted(targets), p.patch_size, p.merge_size, p.min_pixels,
                               known))  # fmt: skip


def _ocr(resized: np.ndarray, seen: list) -> list:
    """Tesseract's character accuracy on every selection's model view and both uniform views (``--ocr``).

    A selection without an LLM count (merge units straddled) has no view at
    equal LLM tokens and scores None there.
    """
    from aptviz.compute.ocr import ocr_scores

    triples = [(v.apt, v.uniform.image, None if v.uniform_llm is None else v.uniform_llm.image) for v in seen]
    return ocr_scores(resized, triples)


def _measures(runs: list[RunSpec], params: Params) -> dict[str, str | None]:
    """``{measure: aggregate}`` the selections run on, in order: Params' unless a spec carries its own.

    Raises ParameterError when one measure is asked with two aggregates.
    """
    out: dict[str, str | None] = {}
    for spec in runs or [None]:
        own = spec is not None and spec.importance is not None
        m, agg = (spec.importance, spec.aggregate) if own else (params.importance, params.aggregate)
        if out.setdefault(m, agg) != agg:
            raise ParameterError(f"{m} is asked with two aggregates ({out[m]} and {agg}); run them apart")
    return out


def analyse_loaded(
    path: str | Path, loaded: LoadedImage, runs: list[RunSpec], params: Params, views: bool = True,
    sweep: bool | None = None,
) -> Analysis:
    """Resize, compute the importance maps, run every selection and its model view, for a decoded image.

    Parameters
    ----------
    path : str or Path
        Names the image in the result; nothing is read from it.
    loaded : LoadedImage
        The decoded image.
    runs : list of RunSpec
        The selections, on ``params.importance`` unless a spec carries its
        own measure (runs of several measures: the maps are computed once per
        measure).
    params : Params
        ``device="auto"`` is resolved here.
    views : bool
        Compute the model views and uniform baselines (their PSNRs go into
        the stats); they cost several times the rest.
    sweep : bool, optional
        Compute the uniform baseline at a sweep of sizes (``uniform_sweep``
        in the stats, for fidelity_vs_tokens.png); default: with ``views``
        and 2+ selections (one selection draws no such figure, and the sweep
        costs about 0.4 s CPU per 1 MP image).

    Raises
    ------
    InputError
        When the GPU runs out of memory.
    """
    path = Path(path)
    params = params.resolved()
    resized = np.asarray(resize_image(loaded.image, params.factor, params.min_pixels, params.max_pixels))
    img = loaded.image
    logger.debug("{}: {}x{} -> {}x{}", path, img.width, img.height, resized.shape[1], resized.shape[0])
    return analyse_frames(path, loaded, resized, runs, params, views, sweep)


def analyse_frames(
    path: str | Path, loaded: LoadedImage, resized: np.ndarray, runs: list[RunSpec], params: Params,
    views: bool = True, sweep: bool | None = None,
) -> Analysis:  # fmt: skip
    """Importance maps, selections and model views of resized pixels with a time axis (t >= 1).

    ``resized`` is one ``(H, W, 3)`` image (t = 1), or ``(T, H, W, 3)``
    frames analysed together (a video tubelet): each cell's importance then
    covers every frame's pixels (:func:`aptviz.compute.importance.importance_over_time`,
    NumPy) and the selections are the image methods' on those maps. Model
    views are computed for t = 1 only. Parameters as :func:`analyse_loaded`.
    """
    path, params = Path(path), params.resolved()
    clip = None
    if resized.ndim == 4:
        clip = resized if resized.shape[0] > 1 else None
        resized = resized[0]
        views = views and clip is None
    pixels = resized if clip is None else clip
    measures = _measures(runs, params)
    on = [spec.importance or params.importance for spec in runs]  # each selection's measure
    try:
        all_maps = {
            m: compute_importance(pixels, m, agg, params.patch_size, params.num_scales, params.bins, params.device)
            for m, agg in measures.items()
        }
        chosen = [select(all_maps[m], spec.check_scales(params.num_scales), m) for spec, m in zip(runs, on)]
    except Exception as exc:
        if _is_cuda_oom(exc):
            raise InputError("CUDA out of memory; retry with --device cpu") from exc
        raise
    # the one conversion to NumPy (a no-op on the CPU backend)
    by_measure = {m: MappingProxyType({ps: _frozen(a) for ps, a in maps.items()}) for m, maps in all_maps.items()}
    chosen = [replace(sel, masks={ps: _frozen(m) for ps, m in sel.masks.items()}) for sel in chosen]
    seen = _views(loaded, resized, chosen, params) if views else [None] * len(chosen)
    for view in filter(None, seen):  # the views' pictures are read-only too
        view.apt.flags.writeable = False
        view.uniform.image.flags.writeable = False
    scored = _ocr(resized, seen) if params.ocr and views else [None] * len(chosen)
    first = next(iter(by_measure))
    if sweep is None:  # fidelity_vs_tokens.png's curve: only a run of 2+ selections draws it
        sweep = views and len(runs) >= 2
    swept = _sweep(loaded, resized, chosen, params, seen) if sweep else ()
    return Analysis(
        path=path,
        loaded=loaded,
        resized=resized,
        params=params,
        maps_by_measure=MappingProxyType(by_measure),
        selections=tuple(
            SelectionResult(m, spec, sel, v, o) for spec, m, sel, v, o in zip(runs, on, chosen, seen, scored)
        ),
        shown_scale=informative_scale(first, by_measure[first]),
        clip=None if clip is None else _frozen(clip),
        uniform_sweep=swept,
    )


def analyse_file(
    path: str | Path, runs: list[RunSpec], params: Params, max_image_pixels: int | None = None,
    sweep: bool | None = None,
) -> Analysis:
    """Load an image file and :func:`analyse_loaded` it (``sweep`` as there).

    Raises
    ------
    InputError
        When the image cannot be loaded or resized, or the GPU runs out of memory.
    """
    params = params.resolved()
    limit = decode_limit(params.max_pixels) if max_image_pixels is None else max_image_pixels
    return analyse_loaded(path, open_image(Path(path), limit), runs, params, sweep=sweep)


def entropy_summary(ent) -> ImportanceSummary:
    """Min, mean and max over the non-PAD cells of one map, and the PAD count.

    Examples
    --------
    >>> entropy_summary(np.array([[1.0, 3.0], [PAD, PAD]], np.float32))
    ImportanceSummary(min=1.0, mean=2.0, max=3.0, pad_cells=2)
    """
    ent = np.asarray(ent)
    valid = ent[ent != PAD].astype(np.float64)
    pad_cells = int(ent.size - valid.size)
    if valid.size == 0:
        return ImportanceSummary(None, None, None, pad_cells)
    return ImportanceSummary(float(valid.min()), float(valid.mean()), float(valid.max()), pad_cells)


def selection_stats(
    sel: Selection, params: Params, view: ModelView | None = None, spec: RunSpec | None = None,
    ocr: OcrScores | None = None,
) -> SelectionStats:
    """One element of stats.json ``selections`` (no files), with its measure (``spec``'s own, in runs
    of several, else Params'), its ViT and LLM token counts and, given its ModelView, the model-view
    numbers."""
    numbers = view.stats.to_dict() if view is not None else {}
    if ocr is not None:
        numbers.update(ocr.to_dict())
    own = spec is not None and spec.importance is not None
    stats = SelectionStats(
        method=str(sel.method),
        alpha=sel.alpha,
        thresholds=list(sel.thresholds) if sel.thresholds is not None else None,
        tokens_by_scale=dict(sel.tokens_by_scale),
        tokens=sel.tokens,
        base_small_tokens=sel.base_small_tokens,
        retention=sel.retention,
        target_retention=sel.target_retention,
        importance=spec.importance if own else params.importance,
        aggregate=spec.aggregate if own else params.aggregate,
        budget_info=sel.budget_info,
        **numbers,
    )
    return stats.with_token_counts(params.patch_size, params.merge_size)


def _image_info(analysis: Analysis) -> ImageInfo:
    img = analysis.loaded.image
    h, w = analysis.resized.shape[:2]
    ident = analysis.loaded.identity
    return ImageInfo(
        path=text_path(analysis.path),
        original_size=(img.width, img.height),
        resized_size=(w, h),
        frames=analysis.loaded.frames,
        first_frame_only=analysis.loaded.frames > 1,
        source_mode=analysis.loaded.source_mode,
        resolved_path=None if ident is None else ident.resolved_path,
        size_bytes=None if ident is None else ident.size_bytes,
        mtime_ns=None if ident is None else ident.mtime_ns,
    )


def image_stats(analysis: Analysis, render: dict | None = None) -> ImageStats:
    """The complete stats of one image: every number of stats.json (docs/pipeline.md §2), ``files`` aside.

    Pure: nothing is read or written. ``render`` is the drawing options
    recorded with the pictures (:class:`aptviz.render.image_pictures.RenderOptions`
    as a dict), left out when None.
    """
    p = analysis.params
    maps = analysis.maps
    return ImageStats(
        aptviz_version=__version__,
        image=_image_info(analysis),
        params=p,
        grid={ps: tuple(m.shape) for ps, m in maps.items()},
        entropy={ps: entropy_summary(m) for ps, m in maps.items()},
        selections=[selection_stats(s.selection, p, s.view, s.spec, s.ocr) for s in analysis.selections],
        importance_histogram=value_histogram(maps, analysis.measure, p.bins),
        render=render,
        importance_by_measure={
            m: {ps: entropy_summary(a) for ps, a in per.items()} for m, per in analysis.maps_by_measure.items()
        } if analysis.several_measures else None,
        importance_histograms={
            m: value_histogram(per, m, p.bins) for m, per in analysis.maps_by_measure.items()
        } if analysis.several_measures else None,
        time=TimeAxis(frames=analysis.frames, tubelets=1),
        uniform_sweep=[dict(point) for point in analysis.uniform_sweep] or None,
    )  # fmt: skip
