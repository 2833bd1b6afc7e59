"""The dataset view of a batch (SPEC §8): importance percentiles, figures and report.html.

Everything is derived from the summary rows and each image folder's
stats.json, so a resumed batch (images skipped as complete) gets the same
view as one computed from scratch.

Files in OUTPUT:

* ``dataset.json`` -- per-scale importance percentiles (p5 .. p95) over all
  non-PAD cells of the batch, cell counts, and the mean v2 thresholds;
* ``importance_histogram.png`` -- per-scale histograms with v1/v2 thresholds;
* ``psnr_vs_retention.png`` -- APT vs uniform at equal tokens;
* ``report.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import fmean

from aptviz._log import logger
from aptviz._text import text_path
from aptviz.output.atomic import read_json, write_json_atomic
from aptviz.render.figures import merge_histograms, percentiles, write_importance_histogram, write_psnr_curves
from aptviz.render.report import write_report

__all__ = ["DATASET_NAME", "dataset_summary", "write_dataset_view"]

DATASET_NAME = "dataset.json"
HISTOGRAM_NAME = "importance_histogram.png"
PSNR_NAME = "psnr_vs_retention.png"


def _stats_of(rows: list[dict]) -> list[dict]:
    """stats.json of every image folder named by the rows (unreadable ones left out)."""
    out, seen = [], set()
    for row in rows:
        folder = row.get("output")
        if row.get("status") != "ok" or not folder or folder in seen:
            continue
        seen.add(folder)
        data = read_json(Path(folder) / "stats.json")
        if isinstance(data, dict):
            out.append(data)
    return out


def dataset_summary(stats_list: list[dict]) -> dict:
    """Per-scale importance percentiles over every non-PAD cell, and the mean v2 thresholds.

    Examples
    --------
    >>> h = {"14": {"lo": 0.0, "hi": 9.0, "counts": [0] * 250 + [4]}}
    >>> s = dataset_summary([{"importance_histogram": h, "selections": []}])
    >>> s["cells"]["14"], s["percentiles"]["14"]["p50"]
    (4, 4.509)
    """
    hists = [s["importance_histogram"] for s in stats_list if s.get("importance_histogram")]
    merged = merge_histograms(hists)
    v2: dict = {}
    for s in stats_list:
        for sel in s.get("selections", []):
            if sel.get("method") == "v2" and sel.get("thresholds"):
                scales = sorted(s.get("grid", {}), key=int)[1:]
                for ps, thr in zip(scales, sel["thresholds"]):
                    if thr is not None:
                        v2.setdefault(sel["alpha"], {}).setdefault(ps, []).append(thr)
    return {
        "images": len(stats_list),
        "measure": "entropy",
        "cells": {ps: int(sum(h["counts"])) for ps, h in merged.items()},
        "percentiles": {ps: percentiles(h) for ps, h in merged.items()},
        "histogram": merged,
        "v2_mean_thresholds": {
            repr(alpha): {ps: fmean(v) for ps, v in per.items()} for alpha, per in sorted(v2.items())
        },
    }


def write_dataset_view(
    output: str | Path, rows: list[dict], columns: list[str], figures: bool = True, figure_format: str = "png"
) -> list[str]:
    """Write dataset.json, the dataset figures (when ``figures``, as png, pdf or svg) and report.html.

    Returns
    -------
    list of str
        One line per problem (nothing is raised): the first file that cannot
        be written stops the rest (a full disk fails every write alike).
    """
    output = Path(output)
    started = time.monotonic()
    stats_list = _stats_of(rows)
    summary = dataset_summary(stats_list)
    v1 = _v1_thresholds(stats_list)
    v2_lines = [(float(a), thr) for a, thr in summary["v2_mean_thresholds"].items()]
    steps = [(DATASET_NAME, lambda p: write_json_atomic(p, summary))]
    if figures and stats_list:
        steps.append((_named(HISTOGRAM_NAME, figure_format),
                      lambda p: write_importance_histogram(p, summary["histogram"], v1, v2_lines)))
        steps.append((_named(PSNR_NAME, figure_format), lambda p: write_psnr_curves(p, rows)))
    steps.append(("report.html", lambda p: write_report(output, rows, columns)))
    for name, write in steps:
        for old in output.glob(f"{Path(name).stem}.*"):  # the same figure in another format, from an earlier run
            if old.suffix in (".png", ".pdf", ".svg") and old.name != name:
                old.unlink(missing_ok=True)
        try:
            write(output / name)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
            return [f"cannot write {text_path(output / name)}: {exc}"]
    logger.debug("dataset view in {:.2f} s", time.monotonic() - started)
    return []


def _named(name: str, fmt: str) -> str:
    """``name`` with the suffix of ``fmt``.

    Examples
    --------
    >>> _named("psnr_vs_retention.png", "svg")
    'psnr_vs_retention.svg'
    """
    return str(Path(name).with_suffix("." + fmt))


def _v1_thresholds(stats_list: list[dict]) -> list[float] | None:
    for s in stats_list:
        for sel in s.get("selections", []):
            if sel.get("method") == "v1" and sel.get("thresholds"):
                return sel["thresholds"]
    return None
