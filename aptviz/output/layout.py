"""The output folder's layout, in one place: every name aptviz gives a file or folder.

An output folder (``OUTPUT``) holds the batch files and one folder per image
(``OUTPUT/<name>``, nested like the inputs: ``a/x`` for ``a/x.jpg``)::

    OUTPUT/summary.csv, summary.json, dataset.json, report.html, *.png
    OUTPUT/<name>/stats.json            written last: its presence means "complete"
    OUTPUT/<name>/01_heatmaps/          importance_map_scale_<P>.png, importance_blend_scale_<P>.jpg
                                        (several measures: importance_map_<measure>_scale_<P>.png)
    OUTPUT/<name>/02_patches_grid/      patches_visualization.jpg or patches_<label>.jpg
    OUTPUT/<name>/03_original_resized/  original_image.jpg, resized_image.jpg
    OUTPUT/<name>/04_model_view/        model_view[_<label>].jpg, uniform[_<label>].jpg
    OUTPUT/<name>/compare.png, maps.npz, tokens.npz
    OUTPUT/<name>/explorer.js           the report's explorer data for the image (docs/explorer.md)

A folder is an image folder when it holds ``stats.json``; its own
subfolders (:data:`IMAGE_SUBDIRS`) never hold image folders.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "COMPARE_NAME",
    "DATASET_NAME",
    "EXPLORER_NAME",
    "FIDELITY_NAME",
    "HEATMAP_DIR",
    "HISTOGRAM_NAME",
    "IMAGES_DIR",
    "IMAGE_SUBDIRS",
    "MAPS_NAME",
    "OCR_NAME",
    "MODEL_VIEW_DIR",
    "OVERLAY_DIR",
    "PLOT_NAME",
    "PSNR_NAME",
    "REPORT_NAME",
    "STATS_NAME",
    "SUMMARY_CSV",
    "SUMMARY_JSON",
    "TOKENS_NAME",
    "VIDEO_DIR",
    "compare_name",
    "figure_name",
    "image_files",
    "is_image_folder",
    "kept_views",
    "overlay_name",
    "video_files",
    "view_names",
]

# -- inside an image folder
STATS_NAME = "stats.json"
HEATMAP_DIR = "01_heatmaps"
OVERLAY_DIR = "02_patches_grid"
IMAGES_DIR = "03_original_resized"
MODEL_VIEW_DIR = "04_model_view"
IMAGE_SUBDIRS = frozenset({HEATMAP_DIR, OVERLAY_DIR, IMAGES_DIR, MODEL_VIEW_DIR, "05_video"})
COMPARE_NAME = "compare.png"
MAPS_NAME = "maps.npz"
TOKENS_NAME = "tokens.npz"
EXPLORER_NAME = "explorer.js"
ORIGINAL_NAME = f"{IMAGES_DIR}/original_image.jpg"
RESIZED_NAME = f"{IMAGES_DIR}/resized_image.jpg"

# -- the batch files in OUTPUT
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
PLOT_NAME = "retention_vs_alpha.png"
DATASET_NAME = "dataset.json"
HISTOGRAM_NAME = "importance_histogram.png"
PSNR_NAME = "psnr_vs_retention.png"
FIDELITY_NAME = "fidelity_vs_tokens.png"
OCR_NAME = "ocr_vs_tokens.png"  # --ocr runs only
REPORT_NAME = "report.html"


def is_image_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a complete image folder (it holds stats.json)."""
    return (Path(folder) / STATS_NAME).is_file()


def heatmap_name(scale: int, measure: str | None = None) -> str:
    """``importance_map_scale_14.png``; in runs of several measures ``importance_map_<measure>_scale_14.png``."""
    infix = "" if measure is None else f"{measure}_"
    return f"{HEATMAP_DIR}/importance_map_{infix}scale_{scale}.png"


def blend_name(scale: int) -> str:
    return f"{HEATMAP_DIR}/importance_blend_scale_{scale}.jpg"


def compare_name(fmt: str = "png") -> str:
    """The comparison figure's file name in ``fmt`` (png, pdf or svg).

    Examples
    --------
    >>> compare_name(), compare_name("svg")
    ('compare.png', 'compare.svg')
    """
    return f"compare.{fmt}"


def figure_name(name: str, fmt: str = "png") -> str:
    """A batch figure's file name (``PLOT_NAME``, ``HISTOGRAM_NAME``, ``PSNR_NAME``) in ``fmt``.

    Examples
    --------
    >>> figure_name(PSNR_NAME, "svg")
    'psnr_vs_retention.svg'
    """
    return str(Path(name).with_suffix("." + fmt))


def overlay_name(label: str, single: bool, suffix: str = ".jpg") -> str:
    """Overlay path (relative to the image folder) of one selection.

    Examples
    --------
    >>> overlay_name("v1", True), overlay_name("budget_alpha0.3", False, ".png")
    ('02_patches_grid/patches_visualization.jpg', '02_patches_grid/patches_budget_alpha0.3.png')
    """
    if single:
        return f"{OVERLAY_DIR}/patches_visualization{suffix}"
    return f"{OVERLAY_DIR}/patches_{label}{suffix}"


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


def image_files(
    scales, shown: int, labels: list[str], overlay_suffix: str = ".jpg", save_maps: bool = False,
    export_tokens: bool = False, views: bool = True, measures: list[str] | None = None,
    figure_format: str = "png",
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The ``files`` entries of one image's stats.json: the image's, and one dict per selection.

    ``measures`` (runs of several): the heatmaps are named by measure, listed
    per measure in ``heatmaps_by_measure``; ``heatmaps`` is the first's.

    Examples
    --------
    >>> files, per = image_files([14, 28], 14, ["v1"])
    >>> files["heatmaps"], files["blend"], per[0]["overlay"]
    ({'14': '01_heatmaps/importance_map_scale_14.png', '28': '01_heatmaps/importance_map_scale_28.png'}, \
'01_heatmaps/importance_blend_scale_14.jpg', '02_patches_grid/patches_visualization.jpg')
    """
    by_measure = {m: {str(ps): heatmap_name(ps, m) for ps in scales} for m in measures or []}
    files: dict = {
        "heatmaps": next(iter(by_measure.values())) if by_measure else {str(ps): heatmap_name(ps) for ps in scales},
        "original": ORIGINAL_NAME,
        "resized": RESIZED_NAME,
        "blend": blend_name(shown),
        "compare": compare_name(figure_format),
    }
    if views:  # a batch's image folder: report.html's explorer reads it
        files["explorer"] = EXPLORER_NAME
    if by_measure:
        files["heatmaps_by_measure"] = by_measure
    if save_maps:
        files["maps"] = MAPS_NAME
    if export_tokens:
        files["tokens"] = TOKENS_NAME
    single = len(labels) == 1
    per = [
        {"overlay": overlay_name(label, single, overlay_suffix), **(view_names(label, single) if views else {})}
        for label in labels
    ]
    return files, per


def kept_views(stats) -> set[str]:
    """Relative paths of the model-view pictures a stats object lists."""
    return {sel.files[k] for sel in stats.selections for k in ("model_view", "uniform") if sel.files.get(k)}


# -- inside a video's folder (docs/video.md): stats.json and these
VIDEO_DIR = "05_video"
TIMELINE_NAME = "token_timeline.png"
CARD_NAME = "card.html"
SCRUBBER_NAME = f"{VIDEO_DIR}/tubelets.jpg"


def video_files(labels: list[str], overlay_suffix: str = ".jpg") -> tuple[dict, list[dict]]:
    """The ``files`` entries of one video's stats.json: the video's, and one dict per selection.

    Examples
    --------
    >>> files, per = video_files(["budget_alpha0.3"])
    >>> files["timeline"], per[0]["contact_sheet"], per[0]["animation"]
    ('token_timeline.png', '05_video/contact_sheet.jpg', '05_video/overlay.gif')
    """
    files = {"timeline": TIMELINE_NAME, "card": CARD_NAME, "scrubber": SCRUBBER_NAME}
    single = len(labels) == 1
    per = [
        {
            "contact_sheet": f"{VIDEO_DIR}/contact_sheet{'' if single else '_' + label}{overlay_suffix}",
            "animation": f"{VIDEO_DIR}/overlay{'' if single else '_' + label}.gif",
        }
        for label in labels
    ]
    return files, per
