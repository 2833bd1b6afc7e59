"""One image, one flow: compute -> stats -> pictures -> files.

* :func:`compute` -- :class:`~aptviz.compute.analysis.Analysis`: load, resize,
  importance, selections, model views (NumPy arrays, read-only);
* :func:`image_stats` -- the complete stats.json numbers, pure;
* :func:`aptviz.render.image_pictures.iter_pictures` -- the pictures, in memory;
* :func:`aptviz.output.writer.write_image_folder` -- the files, stats.json last.

:func:`write_outputs` chains the last three; :func:`process_image` all four
(what a batch worker runs); :func:`analyze` is the public "numbers only"
entry point and returns exactly the numbers stats.json holds.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

from aptviz.compute.analysis import Analysis, analyse_file, analyse_loaded, image_stats
from aptviz.compute.params import Params, RunSpec, as_runs, params_and_measures
from aptviz.compute.stats import ImageResult, ImageStats
from aptviz.errors import ParameterError
from aptviz.output.layout import image_files
from aptviz.output.writer import maps_arrays, write_image_folder
from aptviz.render.explorer import explorer_files
from aptviz.render.image_pictures import RenderOptions, iter_pictures

__all__ = [
    "analyze",
    "compute",
    "compute_loaded",
    "process_image",
    "write_outputs",
]

compute = analyse_file
compute_loaded = analyse_loaded


def analyze(
    path: str | Path,
    selections=None,
    alphas=(1.0,),
    thresholds=None,
    render: RenderOptions | None = None,
    *,
    methods=None,
    **params,
) -> ImageResult:
    """Run the whole pipeline on one image and return the stats.json numbers.

    No file is written: the result is stats.json without ``files`` (the
    selections' ``files`` are empty).

    Parameters
    ----------
    path : str or Path
        Image file.
    selections : str, RunSpec or a sequence of them
        What to select, as everywhere in the API (:func:`aptviz.compute.params.as_runs`):
        ``"budget:0.3"``, ``"v2:0.8,1"``, ``"v1"`` (any case) or
        :class:`~aptviz.compute.params.RunSpec` objects. Default: v1.
    alphas : sequence of float
        Alphas of the v2 and budget selections given as text without their own.
    methods : optional
        The earlier name of ``selections`` (keyword only).
    thresholds : sequence of float, optional
        v1 thresholds; default ``(3.0, 2.0)`` for entropy, required for the
        other measures.
    render : RenderOptions, optional
        The drawing options recorded in ``render`` (as the command's; default
        2 px green JPEG overlays).
    **params
        Any :class:`aptviz.compute.params.Params` field (model -- "qwen2-vl",
        "qwen2.5-vl" or "qwen3-vl", which sets the three sizes below unless
        they are given; patch_size, merge_size, temporal_patch_size,
        num_scales, min_pixels, max_pixels, bins, device -- "auto", "cpu" or
        "cuda", importance -- "entropy", "laplacian" or "upsample-mse", or
        several as a list or ``"entropy,laplacian"`` (every selection on
        each), aggregate -- "mean", "max" or "std").

    Returns
    -------
    ImageResult
        The typed :class:`~aptviz.compute.stats.ImageStats` (``.stats``, or
        its fields as attributes), which is also the stats.json dict
        (docs/pipeline.md §2; ``files`` aside; ``to_dict()`` for a plain one).

    Examples
    --------
    >>> stats = analyze("sample_images/chelsea.png", "budget:0.3")
    >>> stats.selections[0].tokens, stats["selections"][0]["tokens"], sorted(stats["importance_histogram"])
    (209, 209, ['14', '28', '56'])
    """
    if methods is not None:
        if selections is not None:
            raise ParameterError("give the selections once: selections= (methods= is its earlier name)")
        selections = methods
    p, measures = params_and_measures(**params)
    runs = as_runs(selections, alphas, thresholds, p.num_scales, measures, params.get("aggregate"))
    return ImageResult(image_stats(compute(path, runs, p), (render or RenderOptions()).to_dict()))


def _token_arrays(analysis: Analysis):
    """tokens.npz: every selection's tokens as Qwen2-VL rows (docs/qwen2vl.md), NumPy only, one at a time."""
    from aptviz.compute.packing import iter_token_arrays

    p = analysis.params
    selections = [(s.label, s.selection.masks) for s in analysis.selections]
    sizes = (p.patch_size, p.merge_size, p.temporal_patch_size)
    return iter_token_arrays(analysis.resized, selections, *sizes, p.preset.image_mean, p.preset.image_std)


def complete_stats(
    analysis: Analysis, render: RenderOptions, save_maps: bool = False, export_tokens: bool = False
) -> ImageStats:
    """:func:`image_stats` with the ``files`` entries the output layout gives them."""
    stats = image_stats(analysis, render.to_dict())
    files, per_selection = image_files(
        list(analysis.maps), analysis.shown_scale, [s.label for s in analysis.selections], render.overlay_suffix,
        save_maps, export_tokens, views=all(s.view is not None for s in analysis.selections),
        measures=list(analysis.maps_by_measure) if analysis.several_measures else None,
        figure_format=render.figure_format,
    )  # fmt: skip
    stats.files = files
    for entry, names in zip(stats.selections, per_selection):
        entry.files = names
    return stats


def write_outputs(
    analysis: Analysis,
    out_dir: str | Path,
    save_maps: bool = False,
    export_tokens: bool = False,
    render: RenderOptions | None = None,
) -> ImageStats:
    """Stats, pictures and files of one computed image; stats.json is written last.

    Parameters
    ----------
    analysis : Analysis
        Output of :func:`compute`.
    out_dir : str or Path
        The image's own folder (``OUTPUT/<name>``).
    save_maps : bool
        Also write ``maps.npz`` (importance maps and every mask).
    export_tokens : bool
        Also write ``tokens.npz`` (each selection's tokens in Qwen2-VL's row layout).
    render : RenderOptions, optional
        How overlays are drawn (default: 2 px green, JPEG).

    Returns
    -------
    ImageStats
        The stats written, ``files`` filled in.
    """
    render = render or RenderOptions()
    stats = complete_stats(analysis, render, save_maps, export_tokens)
    pictures = chain(iter_pictures(analysis, stats, render), explorer_files(analysis, stats))
    maps = maps_arrays(analysis) if save_maps else None
    tokens = _token_arrays(analysis) if export_tokens else None
    return write_image_folder(out_dir, stats, pictures, maps, tokens)


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
    return write_outputs(compute(path, runs, params, max_image_pixels), out_dir, save_maps, export_tokens, render)
