"""The pipeline: load -> resize -> entropy -> selections -> pictures + stats.json.

:func:`compute` does the numbers for one image (once, whatever the number of
selections); :func:`write_outputs` renders and writes the files;
:func:`analyze` is the public "numbers only" entry point.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz._text import (
    text_path,
)
from aptviz._version import __version__
from aptviz.compute.entropy import PAD
from aptviz.compute.importance import compute_importance, informative_scale, measure_unit
from aptviz.compute.loading import LoadedImage, decode_limit, open_image
from aptviz.compute.params import Measure, Params, RunSpec, build_runs
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import Selection, select
from aptviz.compute.stats import EntropySummary, ImageInfo, ImageStats, SelectionStats
from aptviz.compute.xp import to_numpy
from aptviz.errors import InputError
from aptviz.output.atomic import (
    clean_stale_temp_files,
    write_bytes_atomic,
    write_image,
    write_json_atomic,
    write_npz_atomic,
    write_npz_stream_atomic,
)
from aptviz.render.extras import (
    MODEL_VIEW_DIR,
    RenderOptions,
    kept_views,
    model_views,
    overlay_picture,
    write_extras,
)
from aptviz.render.figures import value_histogram
from aptviz.render.pictures import render_heatmap

__all__ = [
    "ImageResult",
    "analyze",
    "compute",
    "compute_loaded",
    "overlay_name",
    "process_image",
    "write_outputs",
]

HEATMAP_DIR = "01_heatmaps"
OVERLAY_DIR = "02_patches_grid"
IMAGES_DIR = "03_original_resized"
STATS_NAME = "stats.json"
MAPS_NAME = "maps.npz"
TOKENS_NAME = "tokens.npz"
EXPLORER_NAME = "explorer.js"  # the report's explorer data for this image (docs/explorer.md)


@dataclass
class ImageResult:
    """Everything computed for one image."""

    path: Path
    loaded: LoadedImage
    resized: np.ndarray
    maps: dict  # {ps: ndarray (CPU) or torch.Tensor (CUDA)}
    params: Params
    selections: list[tuple[RunSpec, Selection]] = field(default_factory=list)
    views: list = field(default_factory=list)  # ModelView per selection (SPEC §8), same order

    def stats(self) -> ImageStats:
        """The stats.json content as :class:`ImageStats` (no ``files`` yet)."""
        return build_stats(self)


def entropy_summary(ent) -> EntropySummary:
    """Min, mean and max over the non-PAD cells of one map, and the PAD count.

    Examples
    --------
    >>> entropy_summary(np.array([[1.0, 3.0], [PAD, PAD]], np.float32))
    EntropySummary(min=1.0, mean=2.0, max=3.0, pad_cells=2)
    """
    ent = to_numpy(ent)
    valid = ent[ent != PAD].astype(np.float64)
    pad_cells = int(ent.size - valid.size)
    if valid.size == 0:
        return EntropySummary(None, None, None, pad_cells)
    return EntropySummary(float(valid.min()), float(valid.mean()), float(valid.max()), pad_cells)


def selection_stats(sel: Selection, params: Params, view=None) -> SelectionStats:
    """One element of stats.json ``selections`` (no files yet), with its ViT and LLM token counts
    and, given its ModelView, the model-view numbers."""
    numbers = view.stats.to_dict() if view is not None else {}
    stats = SelectionStats(
        method=str(sel.method),
        alpha=sel.alpha,
        thresholds=list(sel.thresholds) if sel.thresholds is not None else None,
        tokens_by_scale=dict(sel.tokens_by_scale),
        tokens=sel.tokens,
        base_small_tokens=sel.base_small_tokens,
        retention=sel.retention,
        target_retention=sel.target_retention,
        budget_info=sel.budget_info,
        **numbers,
    )
    return stats.with_token_counts(params.patch_size, params.merge_size)


def build_stats(result: ImageResult) -> ImageStats:
    """Assemble the stats of one image (stats.json, see docs/pipeline.md)."""
    img = result.loaded.image
    h, w = result.resized.shape[:2]
    ident = result.loaded.identity
    info = ImageInfo(
        path=text_path(result.path),
        original_size=(img.width, img.height),
        resized_size=(w, h),
        frames=result.loaded.frames,
        first_frame_only=result.loaded.frames > 1,
        source_mode=result.loaded.source_mode,
        resolved_path=None if ident is None else ident.resolved_path,
        size_bytes=None if ident is None else ident.size_bytes,
        mtime_ns=None if ident is None else ident.mtime_ns,
    )
    return ImageStats(
        aptviz_version=__version__,
        image=info,
        params=result.params,
        grid={ps: tuple(m.shape) for ps, m in result.maps.items()},
        entropy={ps: entropy_summary(m) for ps, m in result.maps.items()},
        selections=[
            selection_stats(sel, result.params, view)
            for (_, sel), view in zip(result.selections, result.views or [None] * len(result.selections))
        ],
    )


def compute(path: str | Path, runs: list[RunSpec], params: Params, max_image_pixels: int | None = None) -> ImageResult:
    """Load, resize, compute entropy maps and run every selection for one image.

    Parameters
    ----------
    path : str or Path
        Image file.
    runs : list of RunSpec
        Selections to run (see :func:`aptviz.compute.params.expand_runs`).
    params : Params
        Pipeline parameters (``device="auto"`` is resolved here).

    Returns
    -------
    ImageResult

    Raises
    ------
    InputError
        When the image cannot be loaded or resized, or the GPU runs out of memory.
    """
    params = params.resolved()
    limit = decode_limit(params.max_pixels) if max_image_pixels is None else max_image_pixels
    return compute_loaded(path, open_image(Path(path), limit), runs, params)


def compute_loaded(
    path: str | Path, loaded: LoadedImage, runs: list[RunSpec], params: Params, views: bool = True
) -> ImageResult:
    """:func:`compute` for an image already decoded (from a file, or from bytes inside a dataset shard).

    ``path`` only names the image in the result; nothing is read from it.
    ``views=False`` skips the model views and uniform baselines (their PSNR
    numbers are then absent from the stats): ``aptviz stats`` writes no
    column of theirs, and they cost several times the rest of the pipeline.
    """
    path = Path(path)
    params = params.resolved()
    resized_img = resize_image(loaded.image, params.factor, params.min_pixels, params.max_pixels)
    resized = np.asarray(resized_img)
    logger.debug(
        "{}: {}x{} -> {}x{}", path, loaded.image.width, loaded.image.height, resized.shape[1], resized.shape[0]
    )
    try:
        maps = compute_importance(
            resized, params.importance, params.aggregate, params.patch_size, params.num_scales, params.bins,
            params.device,
        )  # fmt: skip
        result = ImageResult(path, loaded, resized, maps, params)
        for spec in runs:
            result.selections.append((spec, select(maps, spec.check_scales(params.num_scales), params.importance)))
        if views:
            result.views = model_views(result, [(sel.masks, sel.tokens) for _, sel in result.selections])
    except Exception as exc:
        if _is_cuda_oom(exc):
            raise InputError("CUDA out of memory; retry with --device cpu") from exc
        raise
    return result


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def analyze(
    path: str | Path,
    methods=("v1",),
    alphas=(1.0,),
    thresholds=None,
    **params,
) -> dict:
    """Run the whole pipeline on one image and return the stats.json content.

    No file is written (``files`` entries are empty).

    Parameters
    ----------
    path : str or Path
        Image file.
    methods : sequence of {"v1", "v2", "budget"}
        Selection methods (any case; ``"v2:0.8,1"`` gives v2 its own alphas);
        every (method, alpha) combination is run.
    alphas : sequence of float
        Alphas for v2 and budget (v1 takes none).
    thresholds : sequence of float, optional
        v1 thresholds; default ``(3.0, 2.0)`` for entropy, required for the
        other measures.
    **params
        Any :class:`aptviz.compute.params.Params` field (patch_size, merge_size,
        temporal_patch_size, num_scales, min_pixels, max_pixels, bins,
        device -- "auto", "cpu" or "cuda", importance -- "entropy",
        "laplacian" or "upsample-mse", aggregate -- "mean", "max" or "std").

    Returns
    -------
    dict
        As stats.json (docs/pipeline.md §2).

    Examples
    --------
    >>> stats = analyze("sample_images/chelsea.png", methods=["budget"], alphas=[0.3])
    >>> stats["selections"][0]["tokens"]
    209
    """
    p = Params(**params)
    runs = build_runs(methods, alphas, thresholds, p.num_scales, p.importance)
    return compute(path, runs, p).stats().to_dict()


def overlay_name(spec: RunSpec, single: bool, suffix: str = ".jpg") -> str:
    """Overlay path (relative to the image folder) for one selection."""
    if single:
        return f"{OVERLAY_DIR}/patches_visualization{suffix}"
    return f"{OVERLAY_DIR}/patches_{spec.label}{suffix}"


def _maps_arrays(result: ImageResult) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for ps, m in result.maps.items():
        arrays[f"{result.params.importance}_{ps}"] = to_numpy(m)  # entropy_14, laplacian_14, upsample-mse_14
    for spec, sel in result.selections:
        for ps, mask in sel.masks.items():
            arrays[f"mask_{spec.label}_{ps}"] = to_numpy(mask)
    return arrays


def _token_arrays(result: ImageResult):
    """tokens.npz: every selection's tokens as Qwen2-VL rows (docs/qwen2vl.md), NumPy only, one at a time."""
    from aptviz.compute.packing import iter_token_arrays

    p = result.params
    selections = [(spec.label, sel.masks) for spec, sel in result.selections]
    return iter_token_arrays(result.resized, selections, p.patch_size, p.merge_size, p.temporal_patch_size)


def write_outputs(
    result: ImageResult,
    out_dir: str | Path,
    save_maps: bool = False,
    export_tokens: bool = False,
    render: RenderOptions | None = None,
) -> dict:
    """Render and write every file of one image; stats.json is written last.

    Parameters
    ----------
    result : ImageResult
        Output of :func:`compute`.
    out_dir : str or Path
        The image's own folder (``OUTPUT/<name>``).
    save_maps : bool
        Also write ``maps.npz`` (entropy maps and every mask).
    export_tokens : bool
        Also write ``tokens.npz`` (each selection's tokens in Qwen2-VL's row layout).
    render : RenderOptions, optional
        How overlays are drawn (default: 2 px green, JPEG).

    Returns
    -------
    ImageStats
        The stats written, with the ``files`` entries filled in.
    """
    out = Path(out_dir)
    if out.is_dir():
        # from here on the folder no longer describes an earlier run: its stats.json goes first,
        # so a run stopped half-way (kill -9, full disk) leaves a folder that is redone, never trusted
        (out / STATS_NAME).unlink(missing_ok=True)
        clean_stale_temp_files(out)  # left by killed writers; a live run's files are kept
    stats = result.stats()
    h, w = result.resized.shape[:2]
    files: dict = {"heatmaps": {}}
    # one colour scale for all scales of the image: the non-PAD range in stats["importance"]
    summaries = [e for e in stats.importance.values() if e.min is not None]
    vmin = min((e.min for e in summaries), default=0.0)
    vmax = max((e.max for e in summaries), default=0.0)
    p = result.params
    unit = measure_unit(p.importance, p.aggregate or "mean")
    label = None if p.measure is Measure.entropy else p.importance  # entropy's colorbar stays as it was
    shown = informative_scale(p.importance, result.maps)  # the finest scale, but 28 px for upsample-mse
    for ps, ent in result.maps.items():
        rel = f"{HEATMAP_DIR}/importance_map_scale_{ps}.png"
        picture = render_heatmap(ent, ps, (w, h), vmin=vmin, vmax=vmax, unit=unit, measure=label)
        write_image(out / rel, picture)
        if ps == shown:
            finest_heatmap = picture  # kept for compare.png
        del picture
        files["heatmaps"][str(ps)] = rel
    files["original"] = f"{IMAGES_DIR}/original_image.jpg"
    if result.loaded.is_plain_jpeg:  # the file itself: lossless and no re-encoding
        write_bytes_atomic(out / files["original"], result.path.read_bytes())
    else:
        write_image(out / files["original"], np.asarray(result.loaded.image))
    files["resized"] = f"{IMAGES_DIR}/resized_image.jpg"
    write_image(out / files["resized"], result.resized)
    single = len(result.selections) == 1
    overlays = set()
    render = render or RenderOptions()
    for entry, (spec, sel) in zip(stats.selections, result.selections):
        rel = overlay_name(spec, single, render.overlay_suffix)
        numbers = entry.to_dict()
        write_image(out / rel, overlay_picture(result.resized, sel.masks, numbers, render), chroma_444=True)
        entry.files = {"overlay": rel}
        overlays.add(Path(rel).name)
    labels = [spec.label for spec, _ in result.selections]
    heat_style = {"unit": unit, "measure": label}
    files.update(
        write_extras(out, result, stats.selections, labels, finest_heatmap, (vmin, vmax), render, heat_style)
    )
    stats.importance_histogram = value_histogram(result.maps, result.params.importance, result.params.bins)
    stats.render = render.to_dict()
    if save_maps:
        files["maps"] = MAPS_NAME
        write_npz_atomic(out / MAPS_NAME, _maps_arrays(result))
    if export_tokens:
        files["tokens"] = TOKENS_NAME
        write_npz_stream_atomic(out / TOKENS_NAME, _token_arrays(result))
    files["explorer"] = _write_explorer(result, out, files["resized"])
    stats.files = files
    write_json_atomic(out / STATS_NAME, stats.to_dict())
    # overlays of an earlier run with other selections no longer belong here
    keep = kept_views(stats)
    for old in [*(out / OVERLAY_DIR).glob("patches_*.*"), *(out / MODEL_VIEW_DIR).glob("*.jpg")]:
        if old.name not in overlays and old.relative_to(out).as_posix() not in keep:
            old.unlink(missing_ok=True)
    if not save_maps:
        (out / MAPS_NAME).unlink(missing_ok=True)
    if not export_tokens:
        (out / TOKENS_NAME).unlink(missing_ok=True)
    return stats


def _write_explorer(result: ImageResult, out: Path, picture: str) -> str:
    """``explorer.js``: the image's explorer data, loaded by report.html when its card comes into view."""
    from aptviz.render.explorer import data_script, explorer_data

    data = explorer_data(out.name, result.loaded.image, result.resized, result.maps, result.params, picture)
    write_bytes_atomic(out / EXPLORER_NAME, data_script(data).encode("utf-8"))
    return EXPLORER_NAME


def process_image(
    path: str | Path,
    out_dir: str | Path,
    runs: list[RunSpec],
    params: Params,
    save_maps: bool = False,
    export_tokens: bool = False,
    max_image_pixels: int | None = None,
    render: RenderOptions | None = None,
) -> ImageStats:
    """:func:`compute` then :func:`write_outputs`; returns the stats written."""
    return write_outputs(
        compute(path, runs, params, max_image_pixels), out_dir, save_maps, export_tokens, render
    )
