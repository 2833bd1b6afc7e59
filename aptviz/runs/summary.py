"""Batch summaries: summary.csv / summary.json rows, aggregates and the
retention-versus-alpha plot."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from aptviz._log import logger
from aptviz._text import clean_text, text_path
from aptviz.compute.params import format_alpha
from aptviz.compute.stats import OCR_FIELDS, ImageStats
from aptviz.errors import ROW_FAILED, ROW_OK
from aptviz.output.atomic import csv_lines, read_json, write_bytes_atomic
from aptviz.output.layout import IMAGE_SUBDIRS, STATS_NAME, SUMMARY_CSV, SUMMARY_JSON
from aptviz.runs.results import JobResult, Status

__all__ = ["GroupStats", "Summary", "aggregate", "retention_figure", "rows_for", "write_retention_plot"]


#: The numbers of a selection a summary row carries (SelectionStats fields), in column order.
SELECTION_NUMBERS = (
    "tokens", "base_small_tokens", "retention", "target_retention", "vit_tokens", "llm_tokens",
    "llm_tokens_uniform", "llm_retention", "psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt",
    "ssim_uniform", "llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm",
)  # fmt: skip


def rows_for(result: JobResult, output: Path, scales) -> list[dict]:
    """Summary rows of one input: one per selection, or one failure row.

    Paths are written with :func:`aptviz._text.text_path` (valid UTF-8 for any file name).
    """
    image = text_path(result.path)
    stats = result.stats
    if stats is None:
        return [{"image": image, "status": ROW_FAILED, "error": result.error, "output": None}]
    folder = text_path(output / result.name) if result.name else None
    w, h = stats.image.resized_size
    rows = []
    for sel in stats.selections:
        row = {
            "image": image,
            "status": ROW_OK,
            "method": sel.method,
            "alpha": sel.alpha,
            "model": stats.params.model,
            # the selection's own measure (several in one run), else the run's (stats.json before it was recorded)
            "importance": sel.importance or stats.params.importance,
            "aggregate": sel.aggregate if sel.importance else stats.params.aggregate,
            "resized_width": w,
            "resized_height": h,
        }
        for ps in scales:
            row[f"tokens_{ps}"] = sel.tokens_by_scale.get(int(ps))
        row.update({name: getattr(sel, name) for name in SELECTION_NUMBERS})
        if stats.params.ocr:  # --ocr runs only
            row.update({name: getattr(sel, name) for name in OCR_FIELDS})
        row.update(output=folder, error=None)
        rows.append(row)
    return rows


class Summary:
    """Collects rows as images finish and rewrites summary.csv/json atomically.

    The summary describes every image folder of the output (docs/pipeline.md, trust): rows of
    folders written by earlier runs are loaded from their stats.json
    (:meth:`load_existing`) and replaced when this run redoes them; earlier
    failure rows are kept unless this run has a row for the same input.
    It keeps every folder's stats beside its rows (:attr:`images`), so the
    dataset view and the report read no stats.json again.

    Writes are throttled to one per ``interval`` seconds, and further so that
    writing takes at most 1/:data:`WRITE_SHARE` of the time between writes
    (the files grow with the batch; the per-image cost stays flat). Each
    input's rows are serialized once and kept, so a write joins text.
    :meth:`write` with ``force=True`` (at the end, or on Ctrl-C) always
    writes, complete.
    """

    def __init__(
        self, output: str | Path, scales, order: list[str] | None = None, interval: float = 1.0, enabled: bool = True
    ):
        self.output = Path(output)
        self.scales = list(scales)
        self.interval = interval
        self.enabled = enabled
        self._order = {text_path(p): i for i, p in enumerate(order or [])}
        self._rows: dict[str, list[dict]] = {}  # by output folder (images) or "failed:" + input (failures)
        self._stats: dict[str, ImageStats] = {}  # by output folder, as in _rows
        self._decided: set[str] = set()  # folders this run computed or confirmed
        self._last = 0.0
        self._wait = interval  # seconds until the next unforced write may happen
        self._text: dict[str, tuple[list[dict], tuple, str, str]] = {}  # key -> (rows, columns, CSV, JSON)
        self._row_scales: dict[str, tuple[list[dict], frozenset]] = {}  # key -> (rows, scales of their columns)

    @property
    def columns(self) -> list[str]:
        scales = sorted(set(self.scales).union(*(self._scales_of(key) for key in self._rows)))
        return (
            ["image", "status", "method", "alpha", "model", "importance", "aggregate"]
            + ["resized_width", "resized_height"]
            + [f"tokens_{ps}" for ps in scales]
            + ["tokens", "base_small_tokens", "retention", "target_retention"]
            + ["vit_tokens", "llm_tokens", "llm_tokens_uniform", "llm_retention"]
            + ["psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt", "ssim_uniform"]
            + ["llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm"]
            + (list(OCR_FIELDS) if any(s.params.ocr for s in self._stats.values()) else [])
            + ["output", "error"]
        )

    def _scales_of(self, key: str) -> frozenset:
        """The scales of the ``tokens_<s>`` columns of one input's rows (kept until its rows change)."""
        rows = self._rows[key]
        cached = self._row_scales.get(key)
        if cached is None or cached[0] is not rows:
            found = frozenset(int(k[7:]) for r in rows for k in r if k.startswith("tokens_") and k[7:].isdigit())
            cached = self._row_scales[key] = (rows, found)
        return cached[1]

    def _key(self, result: JobResult) -> str:
        return f"folder:{result.name}" if result.ok and result.name else f"failed:{text_path(result.path)}"

    def add(self, result: JobResult) -> None:
        """Record (or replace) the rows of one input."""
        scales = result.stats.scales if result.stats is not None else self.scales
        if result.ok:  # an input that is done now has no failure row any more
            self._rows.pop(f"failed:{text_path(result.path)}", None)
            self._decided.add(result.name)
        key = self._key(result)
        self._rows[key] = rows_for(result, self.output, scales)
        if result.ok and result.name and result.stats is not None:
            self._stats[key] = result.stats

    def load_existing(self, skip: set[str] = frozenset()) -> None:
        """Rows of the image folders already in the output (from their stats.json) and earlier failures.

        ``skip``: folder names this run will decide about itself.
        """
        for name, stats in _image_folders(self.output, skip):
            result = JobResult(Path(stats.image.path), name, Status.skipped, stats=stats)
            self._rows[self._key(result)] = rows_for(result, self.output, stats.scales)
            self._stats[self._key(result)] = stats
        previous = read_json(self.output / SUMMARY_JSON)
        for row in previous if isinstance(previous, list) else []:
            if isinstance(row, dict) and row.get("status") == ROW_FAILED and isinstance(row.get("image"), str):
                self._rows.setdefault(f"failed:{row['image']}", [row])

    def refresh_from_disk(self) -> None:
        """After an interrupted run: folders this run did not finish are described as they are on disk.

        A folder finished by a worker after the interruption gets its row; a
        folder whose rewrite was cut short (no stats.json) loses its old row.
        """
        for key in [k for k in self._rows if k.startswith("folder:") and k[7:] not in self._decided]:
            del self._rows[key]
            self._stats.pop(key, None)
        self.load_existing(skip=self._decided)

    def complete(self, names) -> int:
        """How many of the folders ``names`` the summary describes as done (rows from their stats)."""
        return sum(f"folder:{name}" in self._stats for name in set(names))

    def _sorted_keys(self) -> list[str]:
        def order(key: str):
            image = self._rows[key][0].get("image") or ""
            return (self._order.get(image, len(self._order)), image, key)

        return sorted(self._rows, key=order)

    @property
    def rows(self) -> list[dict]:
        return [row for k in self._sorted_keys() for row in self._rows[k]]

    @property
    def images(self) -> list[tuple[str, dict]]:
        """``(image folder, stats.json content)`` of every image folder, in the order of :attr:`rows`."""
        return [
            (text_path(self.output / k[7:]), self._stats[k].to_dict()) for k in self._sorted_keys() if k in self._stats
        ]

    def write(self, force: bool = False) -> bool:
        """Write both files if forced or the wait has passed; True if written."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self._wait):
            return False
        columns = self.columns
        keys = self._sorted_keys()
        texts = [self._serialized(k, columns) for k in keys]
        if len(self._text) > len(keys):  # forget inputs that have no rows any more
            self._text = {k: self._text[k] for k in keys}
            self._row_scales = {k: v for k, v in self._row_scales.items() if k in self._text}
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(columns)
        write_bytes_atomic(self.output / SUMMARY_CSV, (header.getvalue() + "".join(c for c, _ in texts)).encode("utf-8"))
        items = [j for _, j in texts if j]
        body = "[\n" + ",\n".join(items) + "\n]\n" if items else "[]\n"
        write_bytes_atomic(self.output / SUMMARY_JSON, body.encode("utf-8"))
        self._last = time.monotonic()
        self._wait = max(self.interval, WRITE_SHARE * (self._last - now))
        return True

    def _serialized(self, key: str, columns: list[str]) -> tuple[str, str]:
        """The CSV lines and the JSON list items of one input's rows (as the whole-file writers give them)."""
        rows = self._rows[key]
        cached = self._text.get(key)
        if cached is not None and cached[0] is rows and cached[1] == tuple(columns):
            return cached[2], cached[3]
        lines = csv_lines(rows, columns)
        items = [json.dumps(clean_text(row), indent=2, ensure_ascii=False, allow_nan=False) for row in rows]
        text = ",\n".join("\n".join("  " + line for line in item.split("\n")) for item in items)
        self._text[key] = (rows, tuple(columns), lines, text)
        return lines, text


WRITE_SHARE = 20
"""An unforced summary write waits at least this many times as long as the last write took."""


def _image_folders(output: Path, skip: set[str] = frozenset()):
    """``(name, ImageStats)`` of every folder below ``output`` with a readable stats.json.

    An image folder is one that holds stats.json; its own subfolders
    (01_heatmaps ...) are not searched, anything else is (image folders nest
    like their inputs). Folders named in ``skip`` are not read at all.
    """
    import os

    for root, dirs, files in os.walk(output):
        image_folder = STATS_NAME in files and Path(root) != output
        dirs[:] = sorted(d for d in dirs if not (image_folder and d in IMAGE_SUBDIRS))
        name = Path(root).relative_to(output).as_posix()
        if image_folder and name not in skip:
            data = read_json(Path(root) / STATS_NAME)
            try:
                stats = ImageStats.from_dict(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                why = "not valid JSON" if data is None else str(exc) if isinstance(exc, TypeError) else repr(exc)
                logger.warning("{}: left out of the summary ({})", text_path(Path(root) / STATS_NAME), why)
                continue
            yield name, stats


@dataclass(frozen=True)
class GroupStats:
    """Retention and tokens of one (method, alpha) across the images of a batch."""

    method: str
    alpha: float | None
    images: int
    mean_retention: float
    min_retention: float
    max_retention: float
    mean_tokens: float
    mean_llm_retention: float | None = None  # None when some image has no LLM count
    min_llm_retention: float | None = None
    max_llm_retention: float | None = None
    mean_llm_tokens: float | None = None
    importance: str | None = None  # the measure (rows of several measures are grouped apart)


def aggregate(rows: list[dict]) -> list[GroupStats]:
    """Per (method, alpha): images, mean/min/max retention and mean tokens, at the ViT and the LLM.

    Examples
    --------
    >>> rows = [{"status": "ok", "method": "v1", "alpha": None, "retention": r, "tokens": t,
    ...          "llm_retention": lr, "llm_tokens": lt} for r, t, lr, lt in ((0.5, 10, 0.75, 4), (1.0, 20, 1.0, 5))]
    >>> g = aggregate(rows)[0]
    >>> g.images, g.mean_retention, g.min_retention, g.max_retention, g.mean_tokens
    (2, 0.75, 0.5, 1.0, 15.0)
    >>> g.mean_llm_retention, g.min_llm_retention, g.max_llm_retention, g.mean_llm_tokens
    (0.875, 0.75, 1.0, 4.5)
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("status") == ROW_OK:
            groups.setdefault((row.get("importance"), row["method"], row["alpha"]), []).append(row)
    out = []
    for (importance, method, alpha), members in groups.items():
        ret = [r["retention"] for r in members]
        llm = [r.get("llm_retention") for r in members]
        llm = llm if None not in llm else []
        out.append(
            GroupStats(
                method=method,
                alpha=alpha,
                images=len(members),
                mean_retention=fmean(ret),
                min_retention=min(ret),
                max_retention=max(ret),
                mean_tokens=fmean(r["tokens"] for r in members),
                mean_llm_retention=fmean(llm) if llm else None,
                min_llm_retention=min(llm) if llm else None,
                max_llm_retention=max(llm) if llm else None,
                mean_llm_tokens=fmean(r["llm_tokens"] for r in members) if llm else None,
                importance=importance,
            )
        )
    return out


COLORS = {"v1": "tab:gray", "v2": "tab:blue", "budget": "tab:orange"}


def _plot_retention_vs_alpha(ax, groups: list[GroupStats], llm: bool = True) -> None:
    """Mean retention per alpha with a min-max band; v1 (no alpha) as a dashed line and a grey band.

    With ``llm``, the LLM retention (after Qwen2-VL's merger) is drawn beside
    it for every group that has it: open squares on a dashed line (v1: a
    dash-dot line).
    """
    measures = list(dict.fromkeys(g.importance for g in groups))
    markers = dict(zip(measures, "o^vDP*"))  # one marker per measure when several were run
    for method, measure in ((m, i) for m in ("v2", "budget") for i in measures):
        pts = sorted((g for g in groups if g.method == method and g.importance == measure), key=lambda g: g.alpha)
        if not pts:
            continue
        xs = [g.alpha for g in pts]
        name = f"{measure} {method}" if len(measures) > 1 else method
        ax.plot(xs, [g.mean_retention for g in pts], f"{markers[measure]}-", color=COLORS[method],
                label=f"{name} ViT (mean)")  # fmt: skip
        ax.fill_between(
            xs, [g.min_retention for g in pts], [g.max_retention for g in pts], color=COLORS[method], alpha=0.2
        )
        if llm and all(g.mean_llm_retention is not None for g in pts):
            ys = [g.mean_llm_retention for g in pts]
            ax.plot(xs, ys, "s--", color=COLORS[method], mfc="none", label=f"{name} LLM (mean)")
    for g in groups:
        if g.method == "v1":
            ax.axhline(g.mean_retention, color=COLORS["v1"], ls="--", label="v1 ViT (mean, no alpha)")
            ax.axhspan(g.min_retention, g.max_retention, color=COLORS["v1"], alpha=0.12, label="v1 ViT (min-max)")
            if llm and g.mean_llm_retention is not None:
                ax.axhline(g.mean_llm_retention, color=COLORS["v1"], ls="-.", label="v1 LLM (mean)")
    if any(g.method == "budget" for g in groups):
        ax.plot([0, 1], [0, 1], ":", color="black", lw=0.8, label="target (budget)")
    ax.set_xlabel("alpha")
    ax.set_ylabel("retention (ViT: tokens / N; LLM: llm_tokens / uniform)" if llm else "retention = tokens / N")
    ax.set_title("Retention vs alpha (band: min-max of ViT retention across images)")
    ax.legend(fontsize=7)


def _blues(n: int) -> list:
    """``n`` shades of the v2 blue, light to dark (v2 alphas in increasing order)."""
    from matplotlib import colormaps

    cmap = colormaps["Blues"]
    return [cmap(0.45 + 0.5 * i / max(n - 1, 1)) for i in range(n)]


def _plot_retention_histogram(ax, groups: list[GroupStats], ok: list[dict]) -> None:
    """Histogram of v1/v2 retention across images; integer counts, every group visible."""
    from matplotlib.ticker import MaxNLocator

    hist_groups = [g for g in groups if g.method in ("v1", "v2")]
    if hist_groups:
        values = [
            [r["retention"] for r in ok if r["method"] == g.method and r["alpha"] == g.alpha] for g in hist_groups
        ]
        labels = [g.method if g.alpha is None else f"{g.method} alpha={format_alpha(g.alpha)}" for g in hist_groups]
        n_v2 = sum(g.method == "v2" for g in hist_groups)
        shades = iter(_blues(n_v2))
        colors = [COLORS["v1"] if g.method == "v1" else next(shades) for g in hist_groups]
        # one bar per group side by side within each bin: no group's bars hide another's
        ax.hist(values, bins=20, range=(0, 1), histtype="bar", rwidth=0.9, label=labels, color=colors)
    ax.set_xlabel("retention")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Retention across images (v1 / v2)")
    if hist_groups:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no v1 / v2 runs", ha="center", va="center", transform=ax.transAxes)


def retention_figure(rows: list[dict], llm: bool = True):
    """The retention figure (a matplotlib Figure), or None when no row is ok.

    ``llm``: also draw the LLM retention beside the ViT retention.
    """
    ok = [r for r in rows if r.get("status") == ROW_OK]
    if not ok:
        return None
    from aptviz.render.figures import new_figure

    groups = aggregate(ok)
    fig = new_figure(11, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    _plot_retention_vs_alpha(ax1, groups, llm)
    _plot_retention_histogram(ax2, groups, ok)
    fig.tight_layout()
    return fig


def write_retention_plot(path: str | Path, rows: list[dict], llm: bool = True) -> Path | None:
    """Retention against alpha per method (mean, min-max band; with ``llm`` the LLM
    retention beside it), and for v1/v2 a histogram of retention across images.
    Returns None when there is nothing to plot. The format follows the suffix (png, pdf or svg)."""
    from aptviz.render.figures import figure_bytes

    fig = retention_figure(rows, llm)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return None if fig is None else write_bytes_atomic(path, figure_bytes(fig, fmt))
