"""The dataset view of a batch (SPEC §8): importance percentiles, figures and report.html.

Everything is derived from the summary rows and each image folder's stats,
as the summary holds them in memory (this run's results, and the folders of
earlier runs read once when the summary loaded them), so a resumed batch
(images skipped as complete) gets the same view as one computed from scratch.

Files in OUTPUT:

* ``dataset.json`` -- per-scale importance percentiles (p5 .. p95) over all
  non-PAD cells of the batch, cell counts, and the mean v2 thresholds;
* ``importance_histogram.png`` -- per-scale histograms with v1/v2 thresholds;
* ``psnr_vs_retention.png`` -- APT vs uniform at equal ViT tokens;
* ``fidelity_vs_tokens.png`` -- PSNR and SSIM against LLM tokens and against
  ViT tokens for every measure x method, the uniform baseline swept over sizes
  and the Pareto front where both are measured (rows with SSIM);
* ``ocr_vs_tokens.png`` -- ``--ocr``: Tesseract's character accuracy of APT
  and both uniform baselines against LLM retention (rows with text);
* ``report.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import fmean

from aptviz._log import logger
from aptviz._text import text_path
from aptviz.compute.histogram import merge_histograms
from aptviz.compute.importance import measure_unit
from aptviz.compute.measures import DEFAULT_MEASURE
from aptviz.output.atomic import write_bytes_atomic, write_json_atomic
from aptviz.output.layout import (
    DATASET_NAME,
    FIDELITY_NAME,
    HISTOGRAM_NAME,
    OCR_NAME,
    PSNR_NAME,
    REPORT_NAME,
    figure_name,
    shown_figures,
)

__all__ = ["DATASET_NAME", "dataset_summary", "explorer_file_ok", "own_explorer", "write_dataset_view"]

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def _measure(stats_list: list[dict]) -> str:
    """The measure of the images (the default measure when they have none, or several)."""
    found = {(s.get("params") or {}).get("importance", DEFAULT_MEASURE) for s in stats_list}
    return found.pop() if len(found) == 1 else DEFAULT_MEASURE


def dataset_summary(stats_list: list[dict], measure: str | None = None) -> dict:
    """Per-scale importance percentiles over every non-PAD cell, and the mean v2 thresholds.

    Parameters
    ----------
    stats_list : list of dict
        stats.json content of every image.
    measure : str, optional
        The importance measure (the run's); by default the images'.

    Examples
    --------
    >>> h = {"14": {"lo": 0.0, "hi": 9.0, "counts": [0] * 250 + [4]}}
    >>> s = dataset_summary([{"importance_histogram": h, "selections": []}])
    >>> s["measure"], s["cells"]["14"], s["percentiles"]["14"]["p50"]
    ('entropy', 4, 4.509)
    """
    from aptviz.compute.histogram import binned_percentiles as percentiles

    hists = [s["importance_histogram"] for s in stats_list if s.get("importance_histogram")]
    merged = merge_histograms(hists)
    v2: dict = {}
    for s in stats_list:
        for sel in s.get("selections", []):
            own = sel.get("importance") in (None, (s.get("params") or {}).get("importance"))  # the histogram's
            if own and sel.get("method") == "v2" and sel.get("thresholds"):
                scales = sorted(s.get("grid", {}), key=int)[1:]
                for ps, thr in zip(scales, sel["thresholds"]):
                    if thr is not None:
                        v2.setdefault(sel["alpha"], {}).setdefault(ps, []).append(thr)
    return {
        "images": len(stats_list),
        "measure": measure or _measure(stats_list),
        "cells": {ps: int(sum(h["counts"])) for ps, h in merged.items()},
        "percentiles": {ps: percentiles(h) for ps, h in merged.items()},
        "histogram": merged,
        "v2_mean_thresholds": {
            repr(alpha): {ps: fmean(v) for ps, v in per.items()} for alpha, per in sorted(v2.items())
        },
        **_by_measure(stats_list, percentiles),
    }


def _by_measure(stats_list: list[dict], percentiles) -> dict:
    """``{"by_measure": {measure: {"cells", "percentiles"}}}`` when the batch holds several measures, else ``{}``."""
    hists: dict[str, list[dict]] = {}
    for s in stats_list:
        per = s.get("importance_histograms") or {
            (s.get("params") or {}).get("importance", DEFAULT_MEASURE): s.get("importance_histogram")
        }
        for measure, h in per.items():
            if h:
                hists.setdefault(measure, []).append(h)
    if len(hists) < 2:
        return {}
    merged = {m: merge_histograms(hs) for m, hs in hists.items()}
    return {"by_measure": {
        m: {"cells": {ps: int(sum(h["counts"])) for ps, h in mh.items()},
            "percentiles": {ps: percentiles(h) for ps, h in mh.items()}}
        for m, mh in merged.items()
    }}  # fmt: skip


def write_dataset_view(
    output: str | Path,
    rows: list[dict],
    columns: list[str],
    images: list[tuple[str, dict]],
    figures: bool = True,
    measure: tuple[str, str] | None = None,
    figure_format: str = "png",
) -> list[str]:
    """Write dataset.json, the dataset figures (when ``figures``; png, pdf or svg) and report.html.

    Parameters
    ----------
    output : str or Path
        The output folder.
    rows, columns : list
        The summary rows and columns (:class:`aptviz.runs.summary.Summary`).
    images : list of (str, dict)
        ``(image folder, stats.json content)`` of every image folder (:attr:`Summary.images`).
    figures : bool
        Draw the matplotlib figures.
    measure : (str, str), optional
        The run's importance measure and aggregate (default: the images' measure).

    Returns
    -------
    list of str
        One line per problem (nothing is raised): the first file that cannot be written stops the rest.
    """
    from aptviz.compute.explorer_data import dataset_start
    from aptviz.compute.fidelity import fidelity_points, ocr_points, retention_curves
    from aptviz.compute.heatmaps import card_scale
    from aptviz.render import figures as fig
    from aptviz.render.fidelity import fidelity_figure
    from aptviz.render.report import build_report, output_links, report_cards

    output = Path(output)
    started = time.monotonic()
    stats_list = [stats for _, stats in images]
    name, aggregate = measure or (_measure(stats_list), None)
    summary = dataset_summary(stats_list, name)
    fidelity = fidelity_points(rows, [s.get("uniform_sweep") or [] for s in stats_list])
    if fidelity is not None:  # which measure, at which cost: also in dataset.json, with the figure's caption
        summary["fidelity"] = fidelity.to_dict()
    v1 = _v1_thresholds(stats_list)
    v2_lines = [(float(a), thr) for a, thr in summary["v2_mean_thresholds"].items()]
    unit = measure_unit(name, aggregate or "mean")
    steps = [(DATASET_NAME, lambda p: write_json_atomic(p, summary))]
    if figures and stats_list:
        hist, pct = summary["histogram"], summary["percentiles"]
        steps.append((figure_name(HISTOGRAM_NAME, figure_format),
                      lambda p: _write(p, fig.importance_histogram_png(hist, v1, v2_lines, unit, figure_format, pct))))
        psnr = figure_name(PSNR_NAME, figure_format)
        curves = retention_curves(rows)
        steps.append((psnr, lambda p: _write(p, fig.psnr_curves_png(curves, figure_format))))
        if fidelity is not None:
            fid = figure_name(FIDELITY_NAME, figure_format)
            steps.append((fid, lambda p: _write(p, fig.figure_bytes(fidelity_figure(fidelity), figure_format))))
        if any(r.get("ocr_apt") is not None for r in rows):  # --ocr, on images with text
            ocr, points = figure_name(OCR_NAME, figure_format), ocr_points(rows)
            steps.append((ocr, lambda p: _write(p, fig.ocr_curves_png(points, figure_format))))

    def page(path: Path) -> None:
        shown = shown_figures(p.name for p in output.glob("*.*"))
        cards = report_cards(output, [(folder, own_explorer(folder, stats)) for folder, stats in images])
        start = dataset_start([stats for _, stats in cards if (stats.get("files") or {}).get("explorer")])
        _write(path, build_report(rows, cards, columns, shown, output_links=output_links(output, rows),
                                  dataset_start=start, card_scales=[card_scale(s) for _, s in cards]).encode("utf-8"))

    steps.append((REPORT_NAME, page))
    for name, write in steps:
        for old in output.glob(f"{Path(name).stem}.*"):  # the same figure in another format, from an earlier run
            if old.suffix in FIGURE_SUFFIXES and old.name != name:
                old.unlink(missing_ok=True)
        try:
            write(output / name)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
            return [f"cannot write {text_path(output / name)}: {exc}"]
    logger.debug("dataset view in {:.2f} s", time.monotonic() - started)
    return []


def _write(path: Path, data: bytes | None) -> None:
    if data is not None:  # None: nothing to draw
        write_bytes_atomic(path, data)


def _v1_thresholds(stats_list: list[dict]) -> list[float] | None:
    for s in stats_list:
        for sel in s.get("selections", []):
            if sel.get("method") == "v1" and sel.get("thresholds"):
                return sel["thresholds"]
    return None


def own_explorer(folder: str | Path, stats: dict) -> dict:
    """``stats`` as report.html may use it: ``files.explorer`` only when it is the data file aptviz writes.

    The report runs an image's explorer data file as script (``<script src>``):
    it is referenced only when :func:`explorer_file_ok`. Otherwise the card
    has no explorer, with one warning; ``stats`` itself is not changed.

    Examples
    --------
    >>> own_explorer("/nowhere", {"files": {"explorer": "../../evil/x.js", "blend": "b.png"}})
    {'files': {'blend': 'b.png'}}
    """
    files = stats.get("files") if isinstance(stats, dict) else None
    if not isinstance(files, dict) or files.get("explorer") is None or explorer_file_ok(folder, files["explorer"]):
        return stats
    logger.warning("report.html: no explorer for {}: {!r} is not the explorer data aptviz writes",
                   text_path(folder), files["explorer"])
    return {**stats, "files": {k: v for k, v in files.items() if k != "explorer"}}


def explorer_file_ok(folder: str | Path, rel) -> bool:
    """Whether ``rel`` (stats.json ``files.explorer``) is the explorer data file aptviz writes in ``folder``.

    That is ``explorer.js`` in the image folder, a regular file (not a link)
    holding data and nothing else (:func:`aptviz.render.explorer.is_data_script`):
    a file planted in its place, or a name pointing elsewhere, is not.
    """
    import os
    import stat

    from aptviz.output.layout import EXPLORER_NAME
    from aptviz.render.explorer import is_data_script

    if rel != EXPLORER_NAME:
        return False
    path = Path(folder) / EXPLORER_NAME
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            return is_data_script(fh.read())
    except OSError:
        return False
