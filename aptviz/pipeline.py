"""One image, one flow: compute -> stats -> pictures -> files.

* :func:`compute` -- :class:`~aptviz.compute.analysis.Analysis`: load, resize,
  importance, selections, model views (NumPy arrays, read-only);
* :func:`image_stats` -- the complete stats.json numbers, pure;
* what the pictures show, computed before drawing: the heatmaps' units,
  colour ranges and shown scales (:func:`aptviz.compute.heatmaps.heat_scales`),
  the explorer's data (:mod:`aptviz.compute.explorer_data`);
* :func:`aptviz.render.image_pictures.iter_pictures` -- the pictures, in memory, drawn
  from those numbers;
* :func:`aptviz.output.writer.write_image_folder` -- the files, stats.json last.

:func:`write_outputs` chains the last three; :func:`process_image` all four
(what a batch worker runs); :func:`analyze` is the public "numbers only"
entry point and returns exactly the numbers stats.json holds.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np

from aptviz.compute.analysis import Analysis, analyse_file, analyse_loaded, image_stats
from aptviz.compute.explorer_data import image_explorer_data
from aptviz.compute.heatmaps import heat_scales
from aptviz.compute.params import Params, RunSpec, as_runs, params_and_measures
from aptviz.compute.stats import ImageResult, ImageStats
from aptviz.compute.video import VideoAnalysis, analyse_video, is_video, video_stats
from aptviz.errors import ParameterError
from aptviz.output.layout import MAPS_NAME, TOKENS_NAME, image_files, video_files
from aptviz.output.writer import maps_arrays, write_image_folder
from aptviz.render.explorer import explorer_file
from aptviz.render.image_pictures import RenderOptions, iter_pictures

__all__ = [
    "analyze",
    "compute",
    "compute_loaded",
    "process_image",
    "write_outputs",
    "write_video_outputs",
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
    if is_video(path):
        return ImageResult(video_stats(analyse_video(path, runs, p), (render or RenderOptions()).to_dict()))
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
    heat = heat_scales(analysis, stats)  # every number is computed before anything is drawn
    explorer = explorer_file(stats, image_explorer_data(analysis, stats))
    pictures = chain(iter_pictures(analysis, stats, heat, render), explorer)
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
    """:func:`compute` then :func:`write_outputs` (a video: :func:`write_video_outputs`); returns the stats written."""
    if is_video(path):
        return write_video_outputs(analyse_video(path, runs, params, max_image_pixels), out_dir, render, export_tokens,
                                   save_maps)  # fmt: skip
    return write_outputs(compute(path, runs, params, max_image_pixels), out_dir, save_maps, export_tokens, render)


def _video_token_arrays(analysis: VideoAnalysis):
    """tokens.npz of a video: every selection's rows per tubelet (and, with the static rule, ``<label>_static``)."""
    from aptviz.compute.packing import iter_video_token_arrays

    p, tubelets = analysis.params, analysis.tubelets
    selections = []
    for j, s in enumerate(tubelets[0].selections):
        selections.append((s.label, [t.selections[j].selection.masks for t in tubelets]))
        if analysis.kept is not None:
            selections.append((f"{s.label}_static", list(analysis.kept[j])))
    frames = analysis.clip.frames
    extra = -frames.shape[0] % p.temporal_patch_size  # padded as the tubelets were (the last frame repeated)
    if extra:
        frames = np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)])
    sizes = (p.patch_size, p.merge_size, p.temporal_patch_size)
    return iter_video_token_arrays(frames, selections, *sizes, p.preset.image_mean, p.preset.image_std)


def _video_maps(analysis: VideoAnalysis) -> dict:
    """maps.npz of a video: every map and mask with a leading tubelet axis, and the static units if any."""
    tubelets = analysis.tubelets
    arrays = {f"{m}_{ps}": np.stack([t.maps_by_measure[m][ps] for t in tubelets])
              for m in tubelets[0].maps_by_measure for ps in tubelets[0].maps_by_measure[m]}  # fmt: skip
    for j, s in enumerate(tubelets[0].selections):
        for ps in s.selection.masks:
            arrays[f"mask_{s.label}_{ps}"] = np.stack([t.selections[j].selection.masks[ps] for t in tubelets])
    if analysis.static is not None:
        arrays["static_units"] = analysis.static
    return arrays


def write_video_outputs(
    analysis: VideoAnalysis, out_dir: str | Path, render: RenderOptions | None = None, export_tokens: bool = False,
    save_maps: bool = False,
) -> ImageStats:  # fmt: skip
    """Stats, pictures and files of one computed video (docs/video.md); stats.json is written last.

    The same flow as an image with a time axis: :func:`aptviz.compute.video.video_stats`
    (every tubelet's selections summed, and per tubelet), the pictures in
    memory (:func:`aptviz.render.video.iter_video_pictures`), the writer.
    ``export_tokens`` also writes tokens.npz (:func:`aptviz.compute.packing.iter_video_token_arrays`),
    ``save_maps`` maps.npz (every tubelet's maps and masks, and the static units).
    """
    from aptviz.render.video import iter_video_pictures

    render = render or RenderOptions()
    stats = video_stats(analysis, render.to_dict())
    files, per_selection = video_files([s.label for s in analysis.tubelets[0].selections], render.overlay_suffix)
    if export_tokens:
        files["tokens"] = TOKENS_NAME
    if save_maps:
        files["maps"] = MAPS_NAME
    stats.files = files
    for entry, names in zip(stats.selections, per_selection):
        entry.files = names
    tokens = _video_token_arrays(analysis) if export_tokens else None
    maps = _video_maps(analysis) if save_maps else None
    return write_image_folder(out_dir, stats, iter_video_pictures(analysis, stats, render), maps, tokens)
