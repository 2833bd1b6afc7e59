"""Per-image analysis outputs (SPEC §8), called by the pipeline when an image's files are written.

* the overlay with the render options (line width, colour by scale with a
  legend, caption), 4:4:4 JPEG or PNG;
* ``04_model_view/``: what the ViT sees and the uniform baseline at the same
  tokens, per selection;
* ``01_heatmaps/importance_blend_scale_<P>.jpg``: the finest map over the photo;
* ``compare.png``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aptviz.compute.importance import informative_scale
from aptviz.compute.views import ModelView, compare_views
from aptviz.output.atomic import encode_image, write_bytes_atomic, write_image
from aptviz.render.figures import build_compare, display_blend, display_image, encode_figure, selection_title
from aptviz.render.pictures import (
    LINE_WIDTH,
    annotate,
    draw_overlay,
    render_heatmap,
    scale_legend,
)

__all__ = ["RenderOptions", "kept_views", "model_views", "overlay_picture", "view_names", "write_extras"]

MODEL_VIEW_DIR = "04_model_view"
COMPARE_NAME = "compare.png"
FIGURE_FORMATS = ("png", "pdf", "svg")


def compare_name(fmt: str = "png") -> str:
    """File name of the comparison figure in ``fmt``.

    Examples
    --------
    >>> compare_name("svg")
    'compare.svg'
    """
    return f"compare.{fmt}"
OVERLAY_FORMATS = ("jpg", "png")
VIEW_QUALITY = 90  # model views have no thin lines: plain 4:2:0 JPEG


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
    figure_format: str = "png"

    def __post_init__(self) -> None:
        from aptviz.errors import ParameterError

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
        """The options for stats.json; ``figure_format`` only when not png (folders of earlier runs still match)."""
        out = asdict(self)
        if out["figure_format"] == "png":
            del out["figure_format"]
        return out


def overlay_picture(resized: np.ndarray, masks: dict, entry: dict, options: RenderOptions) -> np.ndarray:
    """The overlay of one selection as written to ``02_patches_grid``.

    With default options exactly :func:`aptviz.render.pictures.draw_overlay` (2 px
    green, the resized image's size); a legend (colour by scale) and/or a
    caption (numbers of ``entry``) add a strip below.
    """
    pic = draw_overlay(resized, masks, options.line_width, options.color_by_scale)
    legend = None
    if options.color_by_scale:
        legend = scale_legend(sorted(masks), {int(k): v for k, v in entry.get("tokens_by_scale", {}).items()})
    lines = [" | ".join(selection_title(entry))] if options.caption else None
    return annotate(pic, lines, legend)


def model_views(result, masks_and_tokens) -> list[ModelView]:
    """Model view and uniform baseline of every selection of one image."""
    p = result.params
    return [
        compare_views(result.loaded.image, result.resized, masks, tokens, p.patch_size, p.merge_size, p.min_pixels)
        for masks, tokens in masks_and_tokens
    ]


def view_names(label: str, single: bool) -> dict[str, str]:
    """Relative paths of one selection's model view and uniform baseline.

    Examples
    --------
    >>> view_names("budget_alpha0.3", False)["model_view"]
    '04_model_view/model_view_budget_alpha0.3.jpg'
    """
    suffix = "" if single else f"_{label}"
    return {
        "model_view": f"{MODEL_VIEW_DIR}/model_view{suffix}.jpg",
        "uniform": f"{MODEL_VIEW_DIR}/uniform{suffix}.jpg",
    }


def kept_views(stats) -> set[str]:
    """Relative paths of the model-view pictures a stats object lists."""
    return {sel.files[k] for sel in stats.selections for k in ("model_view", "uniform") if sel.files.get(k)}


def write_extras(
    out: Path,
    result,
    entries: list,
    labels: list[str],
    heatmap_finest: np.ndarray,
    vrange: tuple[float, float],
    options: RenderOptions,
    heat_style: dict | None = None,
) -> dict:
    """Write the model views, the blended heatmap and compare.png; return the image-level files.

    Parameters
    ----------
    out : Path
        The image's folder.
    result : ImageResult
        With ``views`` computed.
    entries : list of SelectionStats
        The selections' stats; their ``files`` get ``model_view`` and ``uniform``.
    labels : list of str
        The selections' labels (file names).
    heatmap_finest : ndarray
        The finest heatmap picture as written.
    vrange : (float, float)
        Colour range of the heatmaps.
    options : RenderOptions
        Overlay options (the compare figure follows ``color_by_scale``).
    heat_style : dict, optional
        ``unit`` and ``measure`` of the heatmap colorbar (redrawn larger for small images).

    Returns
    -------
    dict
        ``{"blend": ..., "compare": ...}``.
    """
    single = len(entries) == 1
    for entry, view, label in zip(entries, result.views, labels):
        names = view_names(label, single)
        write_bytes_atomic(out / names["model_view"], encode_image(view.apt, ".jpg", VIEW_QUALITY))
        write_bytes_atomic(out / names["uniform"], encode_image(view.uniform.image, ".jpg", VIEW_QUALITY))
        entry.files.update(names)
    shown = informative_scale(result.params.importance, result.maps)  # upsample-mse: its finest map is all 0
    blend = f"01_heatmaps/importance_blend_scale_{shown}.jpg"
    small = display_image(result.resized)  # one reduction for the blend and every compare panel
    blended = display_blend(result.resized, result.maps[shown], shown, vrange, small)
    write_image(out / blend, blended, chroma_444=True)
    panels = [(entry.to_dict(), sel.masks, view) for entry, (_, sel), view in zip(entries, result.selections, result.views)]
    heat = {"map": result.maps[shown], "scale": shown, "finest": min(result.maps), "vrange": vrange,
            "style": heat_style or {}}  # fmt: skip
    layout = build_compare(result.loaded.image, result.resized, heat, panels, options.color_by_scale)
    name = compare_name(options.figure_format)
    write_bytes_atomic(out / name, encode_figure(layout, options.figure_format))
    for other in FIGURE_FORMATS:  # a comparison figure of an earlier run in another format no longer belongs here
        if other != options.figure_format:
            (out / compare_name(other)).unlink(missing_ok=True)
    return {"blend": blend, "compare": name}
