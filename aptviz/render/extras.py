"""Every picture of one image, in memory (SPEC §8); the output package writes them.

:func:`iter_pictures` yields ``(relative path, picture)`` in the order they
are written, one at a time (a large image's pictures are never all held):

* the heatmaps of every scale and the original and resized images;
* the overlays with the render options (line width, colour by scale with a
  legend, caption), 4:4:4 JPEG or PNG;
* the model views: what the ViT sees and the uniform baseline at the same
  tokens, per selection;
* the finest informative map blended over the photo, and ``compare.png``.

The relative paths are the ``files`` entries of the stats (named by
:mod:`aptviz.output.layout`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from aptviz.compute.importance import informative_scale, measure_unit
from aptviz.compute.params import Measure
from aptviz.render.figures import (
    build_compare,
    display_blend,
    display_image,
    draw_png,
    encode_figure,
    selection_title,
)
from aptviz.render.pictures import (
    LINE_WIDTH,
    annotate,
    draw_overlay,
    draw_windows,
    render_heatmap,
    scale_legend,
    window_legend,
)

__all__ = ["Picture", "RenderOptions", "heat_style", "iter_pictures", "overlay_picture", "render_pictures"]

FIGURE_FORMATS = ("png", "pdf", "svg")
OVERLAY_FORMATS = ("jpg", "png")
VIEW_QUALITY = 90  # model views have no thin lines: plain 4:2:0 JPEG


@dataclass(frozen=True)
class Picture:
    """An RGB uint8 picture and how to encode it (the format comes from the file name)."""

    pixels: np.ndarray
    quality: int = 95  # JPEG quality
    chroma_444: bool = False  # JPEG without chroma subsampling: thin coloured lines keep their colour


@dataclass(frozen=True)
class RenderOptions:
    """How the pictures are drawn (recorded in stats.json ``render``; part of "same parameters").

    Examples
    --------
    >>> RenderOptions().overlay_suffix
    '.jpg'
    >>> RenderOptions(line_width=0)
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: line-width must be an integer in [1, 16], got 0
    """

    line_width: int = LINE_WIDTH
    color_by_scale: bool = False
    caption: bool = False
    overlay_format: str = "jpg"
    window: int = 0  # attention-window side in px drawn on overlays (--show-windows); 0: none
    figure_format: str = "png"

    def __post_init__(self) -> None:
        from aptviz.errors import ParameterError

        if not isinstance(self.window, int) or self.window < 0:
            raise ParameterError(f"window must be an integer >= 0 px, got {self.window!r}")
        if not isinstance(self.line_width, int) or not 1 <= self.line_width <= 16:
            raise ParameterError(f"line-width must be an integer in [1, 16], got {self.line_width!r}")
        if self.overlay_format not in OVERLAY_FORMATS:
            raise ParameterError(f"overlay-format must be jpg or png, got {self.overlay_format!r}")
        if self.figure_format not in FIGURE_FORMATS:
            raise ParameterError(f"figure-format must be png, pdf or svg, got {self.figure_format!r}")

    @property
    def overlay_suffix(self) -> str:
        return "." + self.overlay_format

    def to_dict(self) -> dict:
        """stats.json ``render``; ``window`` and ``figure_format`` only when not the default
        (so the entries of other runs, and the folders of earlier runs, stay as they were)."""
        out = asdict(self)
        if not self.window:
            del out["window"]
        if out["figure_format"] == "png":
            del out["figure_format"]
        return out


def overlay_picture(resized: np.ndarray, masks: dict, entry: dict, options: RenderOptions) -> np.ndarray:
    """The overlay of one selection as written to ``02_patches_grid``.

    With default options exactly :func:`aptviz.render.pictures.draw_overlay` (2 px
    green, the resized image's size); ``window`` draws the attention-window
    borders over it (:func:`aptviz.render.pictures.draw_windows`) and keeps
    the resized image's size (compare.png names the red lines); a legend
    (colour by scale, with the windows' entry) and/or a caption (numbers of
    ``entry``) add a strip below.
    """
    pic = draw_overlay(resized, masks, options.line_width, options.color_by_scale)
    legend = None
    if options.color_by_scale:
        legend = scale_legend(sorted(masks), {int(k): v for k, v in entry.get("tokens_by_scale", {}).items()})
    lines = [" | ".join(selection_title(entry))] if options.caption else None
    if options.window:
        pic = draw_windows(pic, options.window, options.line_width)
        if legend or lines:  # a strip is there anyway: it names the red lines too; alone they keep the size
            legend = [*(legend or []), window_legend(options.window)]
    return annotate(pic, lines, legend)


def heat_style(params, measure: str | None = None, aggregate: str | None = None) -> dict:
    """``unit`` and ``measure`` of the heatmap colorbar (entropy's colorbar keeps its plain title).

    ``measure`` (runs of several measures, with its ``aggregate``): that
    measure's colorbar, always named.
    """
    if measure is not None:
        return {"unit": measure_unit(measure, aggregate or "mean"), "measure": measure}
    unit = measure_unit(params.importance, params.aggregate or "mean")
    return {"unit": unit, "measure": None if params.measure is Measure.entropy else params.importance}


def _value_range(summaries: dict) -> tuple[float, float]:
    """One colour scale for all scales of a measure: its non-PAD range (``stats.importance`` per scale)."""
    summaries = [e for e in summaries.values() if e.min is not None]
    return min((e.min for e in summaries), default=0.0), max((e.max for e in summaries), default=0.0)


def _heatmaps(analysis, stats) -> Iterator[tuple[str, object]]:
    """Every heatmap: the run's measure, or each measure's (named by measure) in runs of several."""
    h, w = analysis.resized.shape[:2]
    several = analysis.several_measures
    by_measure = stats.importance_by_measure if several else {analysis.measure: stats.importance}
    names = stats.files.get("heatmaps_by_measure") if several else {analysis.measure: stats.files["heatmaps"]}
    aggregates = {s.importance: s.aggregate for s in stats.selections}
    for measure, summaries in by_measure.items():
        vrange = _value_range(summaries)
        style = heat_style(analysis.params, *((measure, aggregates.get(measure)) if several else ()))
        for ps, ent in analysis.maps_by_measure[measure].items():
            picture = render_heatmap(ent, ps, (w, h), vmin=vrange[0], vmax=vrange[1], **style)
            yield names[measure][str(ps)], Picture(picture)
            del picture


def _original(analysis):
    """original_image.jpg: a plain JPEG file's own bytes (lossless, no re-encoding), else the decoded pixels."""
    if analysis.loaded.is_plain_jpeg:
        return analysis.path.read_bytes()
    return Picture(np.asarray(analysis.loaded.image))


def iter_pictures(analysis, stats, options: RenderOptions | None = None) -> Iterator[tuple[str, object]]:
    """Every picture of one image as ``(path relative to its folder, Picture or encoded bytes)``.

    Parameters
    ----------
    analysis : aptviz.compute.analysis.Analysis
        The image, computed.
    stats : ImageStats
        Its stats with ``files`` filled in (the paths of the pictures).
    options : RenderOptions, optional
        How overlays are drawn (default: 2 px green, JPEG).
    """
    options = options or RenderOptions()
    files = stats.files
    first = analysis.measure
    vrange = _value_range(stats.importance_by_measure[first] if analysis.several_measures else stats.importance)
    aggregate = next((s.aggregate for s in stats.selections if s.importance == first), None)
    style = heat_style(analysis.params, first, aggregate) if analysis.several_measures else heat_style(analysis.params)
    yield from _heatmaps(analysis, stats)
    yield files["original"], _original(analysis)
    yield files["resized"], Picture(analysis.resized)
    several = analysis.several_measures  # captions and compare rows then name each selection's measure
    for entry, s in zip(stats.selections, analysis.selections):
        numbers = dict(entry.to_dict(), show_measure=several)
        pic = overlay_picture(analysis.resized, s.selection.masks, numbers, options)
        yield entry.files["overlay"], Picture(pic, chroma_444=True)
    for entry, s in zip(stats.selections, analysis.selections):
        if s.view is not None and entry.files.get("model_view"):
            yield entry.files["model_view"], Picture(s.view.apt, VIEW_QUALITY)
            yield entry.files["uniform"], Picture(s.view.uniform.image, VIEW_QUALITY)
    yield from _blend_and_compare(analysis, stats, vrange, options, style)


def _blend_and_compare(analysis, stats, vrange, options: RenderOptions, style: dict):
    """The blended heatmap, and the comparison figure as file bytes (``options.figure_format``)."""
    shown = analysis.shown_scale  # upsample-mse: its finest map is all 0
    small = display_image(analysis.resized)  # the blend's size
    blended = display_blend(analysis.resized, analysis.maps[shown], shown, vrange, small)
    yield stats.files["blend"], Picture(blended, chroma_444=True)
    del blended, small
    several = analysis.several_measures  # rows then name each selection's measure
    panels = [
        (dict(entry.to_dict(), show_measure=several), s.selection.masks, s.view)
        for entry, s in zip(stats.selections, analysis.selections)
    ]
    heat = [{"map": analysis.maps[shown], "scale": shown, "finest": min(analysis.maps), "vrange": vrange, "style": style}]
    if several:  # one heatmap per measure, each on its own colour scale
        aggregates = {s.importance: s.aggregate for s in stats.selections}
        for measure in list(analysis.maps_by_measure)[1:]:
            maps = analysis.maps_by_measure[measure]
            scale = informative_scale(measure, maps)
            heat.append({"map": maps[scale], "scale": scale, "finest": min(maps),
                         "vrange": _value_range(stats.importance_by_measure[measure]),
                         "style": heat_style(analysis.params, measure, aggregates.get(measure))})  # fmt: skip
    layout = build_compare(
        analysis.loaded.image, analysis.resized, heat, panels, options.color_by_scale, options.window
    )
    if options.figure_format == "png":  # encoded by the writer, as every other picture
        yield stats.files["compare"], Picture(draw_png(layout))
    else:
        yield stats.files["compare"], encode_figure(layout, options.figure_format)


def render_pictures(analysis, stats, options: RenderOptions | None = None) -> dict[str, object]:
    """:func:`iter_pictures` as a dict ``{relative path: Picture or bytes}`` (all held at once)."""
    return dict(iter_pictures(analysis, stats, options))
