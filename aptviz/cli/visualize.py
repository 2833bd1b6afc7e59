"""How the ``aptviz`` command shows a run: progress bar, per-image tables or lines, summary.

:class:`RunView` receives :class:`~aptviz.runs.runner.ProgressEvent` callbacks and
the final :class:`~aptviz.runs.results.RunReport`; it only prints. Human output
goes to stdout (stderr with ``--json``), errors to stderr, and while the
progress bar is on the terminal everything is printed through its console,
so the bar is cleared before each line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from aptviz._text import ERROR_CHARS, clean_text, terminal_text, text_path
from aptviz.cli.options import start_progress
from aptviz.compute.measures import DEFAULT_MEASURE
from aptviz.compute.params import format_alpha
from aptviz.compute.stats import ImageStats
from aptviz.errors import Status
from aptviz.runs.results import JobResult, RunReport
from aptviz.runs.runner import ProgressEvent

if TYPE_CHECKING:  # rich is imported when something is printed: a quiet run without errors never needs it
    from rich.console import Console
    from rich.table import Table

__all__ = ["COMPACT_ABOVE", "RunView", "aggregate_table", "image_line", "image_table"]

COMPACT_ABOVE = 5  # more images than this: one line per image instead of a table (-v shows tables)


def image_title(stats: ImageStats) -> str:
    img = stats.image
    (ow, oh), (rw, rh) = img.original_size, img.resized_size
    title = f"{terminal_text(img.path)}  {ow}x{oh} -> {rw}x{rh}"
    time = stats.time
    if time is not None and time.total_frames is not None:  # a video (docs/video.md)
        title += f"  ({time.frames} of {time.total_frames} frames, {time.tubelets} tubelets)"
    elif img.frames > 1:
        title += f"  (first of {img.frames} frames)"
    if len(stats.measures) > 1:
        title += "  importance: " + ", ".join(stats.measures)
    elif stats.params.importance != DEFAULT_MEASURE:
        title += f"  importance: {stats.params.importance} ({stats.params.aggregate})"
    return title


def _num(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def image_table(stats: ImageStats) -> Table:
    """Every selection of one image: kept patches per scale, then ViT and LLM tokens and retention side by side.

    ViT tokens are the kept patches; LLM tokens are what reaches the language
    model after Qwen2-VL's merger. Both retentions are against plain Qwen2-VL
    (``N`` finest patches, ``N / merge**2`` LLM tokens), named in the caption.
    """
    from rich.table import Table
    from rich.text import Text

    scales = stats.scales
    several = len(stats.measures) > 1
    table = Table(title=Text(image_title(stats)), title_justify="left", caption_justify="left")
    if several:  # 80 columns: one "selection" column under a row per measure (see _by_measure)
        table.add_column("selection")
    else:
        table.add_column("method")
        table.add_column("alpha", justify="right")
    table.add_column("/".join(str(ps) for ps in scales) + " px", justify="right")
    for col in ("ViT\ntokens", "LLM\ntokens", "ViT\nret.", "LLM\nret.", "target"):
        table.add_column(col, justify="right")
    for sel, end in _by_measure(table, stats.selections, several):
        target = sel.target_retention
        table.add_row(
            *([_selection(sel.method, sel.alpha)] if several else [sel.method, format_alpha(sel.alpha)]),
            "/".join(str(sel.tokens_by_scale[ps]) for ps in scales),
            str(sel.tokens),
            _num(sel.llm_tokens),
            f"{sel.retention:.4f}",
            _num(sel.llm_retention, "{:.4f}"),
            "-" if target is None else f"{target:.4f}",
            end_section=end,
        )
    if stats.selections:
        first = stats.selections[0]
        name = stats.params.preset.title
        table.caption = f"ret.: retention against plain {name}'s {first.base_small_tokens} ViT tokens"
        if first.llm_tokens_uniform is not None:
            table.caption += f" and {first.llm_tokens_uniform} LLM tokens"
    extra = _fidelity_caption(stats, several, bool(table.caption))
    if extra:
        table.caption = (table.caption or "") + extra
    return table


def _fidelity_caption(stats: ImageStats, several: bool, after: bool) -> str:
    """The caption's fidelity part: PSNR and SSIM of APT and both uniform baselines, OCR, a video's static rule."""
    text = ""
    views = [
        f"{_name(sel, several)} "
        f"{_db(sel.psnr_apt, sel.uniform_vit_tokens)}/{_db(sel.psnr_uniform, sel.uniform_vit_tokens)}"
        f"{_llm_part(_db(sel.psnr_uniform_llm, sel.llm_uniform_tokens), sel)} "
        f"({sel.uniform_vit_tokens}{_llm_part(sel.llm_uniform_tokens, sel)})"
        for sel in stats.selections
        if sel.uniform_vit_tokens is not None
    ]
    if views:
        text = ("; " if after else "") + (
            f"PSNR dB, APT / uniform {stats.params.preset.title} at equal ViT tokens / at equal LLM tokens "
            "(their ViT / LLM tokens): " + ", ".join(views)
        )
    ssims = [
        f"{_name(sel, several)} {sel.ssim_apt:.3f}/{sel.ssim_uniform:.3f}"
        f"{_llm_part(None if sel.ssim_uniform_llm is None else f'{sel.ssim_uniform_llm:.3f}', sel)}"
        for sel in stats.selections
        if sel.ssim_apt is not None and sel.ssim_uniform is not None
    ]
    if ssims:
        text += "; SSIM, APT / uniform at equal ViT / equal LLM tokens: " + ", ".join(ssims)
    if stats.params.ocr:
        text += "; " + _ocr_caption(stats, several)
    return text + _static_caption(stats, several)


def _ocr_caption(stats: ImageStats, several: bool) -> str:
    """``--ocr``: Tesseract's character accuracy of every selection's three views, or that the image has no text."""
    if stats.time is not None and stats.time.total_frames is not None:  # a video: no model views, nothing read
        return "OCR accuracy: not measured on videos (--ocr reads images)"
    if all(sel.ocr_apt is None for sel in stats.selections):
        return "OCR accuracy: no text in the image"
    scores = [
        f"{_name(sel, several)} " + "/".join(_num(v, "{:.3f}") for v in (sel.ocr_apt, sel.ocr_uniform, sel.ocr_uniform_llm))
        for sel in stats.selections
    ]
    return "OCR accuracy, APT / uniform at equal ViT / at equal LLM tokens: " + ", ".join(scores)


def _selection(method: str, alpha) -> str:
    """``budget 0.3`` (``v1`` alone): a selection under its measure's row.

    Examples
    --------
    >>> _selection("budget", 0.3), _selection("v1", None)
    ('budget 0.3', 'v1')
    """
    return method if alpha is None else f"{method} {format_alpha(alpha)}"


def _by_measure(table: Table, items, several: bool, measure=lambda item: item.importance):
    """``(item, ends its section)`` in order; with several measures grouped by measure, each group under a
    bold row naming it. The measure then needs no column of its own: the table fits 80 columns
    without cutting a word."""
    from rich.text import Text

    items = list(items)
    if not several:
        yield from ((item, False) for item in items)
        return
    groups: dict = {}
    for item in items:
        groups.setdefault(measure(item), []).append(item)
    blanks = [""] * (len(table.columns) - 1)
    for i, (name, group) in enumerate(groups.items()):
        table.add_row(Text(str(name), style="bold"), *blanks)
        for j, item in enumerate(group):
            yield item, j == len(group) - 1 and i < len(groups) - 1


def _static_caption(stats: ImageStats, several: bool) -> str:
    """A video's LLM tokens with the static rule, per selection (docs/video.md); empty otherwise."""
    static = [f"{_name(sel, several)} {sel.static_llm_tokens}" for sel in stats.selections
              if sel.static_llm_tokens is not None]  # fmt: skip
    if not static or stats.time is None:
        return ""
    return (f"; LLM tokens with the static rule (T={stats.time.static_threshold:g}), all "
            f"{stats.time.tubelets} tubelets: " + ", ".join(static))  # fmt: skip


def _llm_part(text, sel) -> str:
    """``/text`` for the baseline at equal LLM tokens, ``/-`` when it is missing, nothing for a selection
    without an LLM token count."""
    if sel.llm_tokens is None:
        return ""
    return f"/{'-' if text is None else text}"


def _name(sel, several: bool) -> str:
    """``budget 0.3``, or ``laplacian budget 0.3`` in a run of several measures."""
    name = f"{sel.method}{'' if sel.alpha is None else ' ' + format_alpha(sel.alpha)}"
    return f"{sel.importance} {name}" if several and sel.importance else name


def _db(value: float | None, known) -> str:
    """PSNR in dB; ``lossless`` when the picture is identical (None with the numbers present), as everywhere.

    Examples
    --------
    >>> _db(33.456, 10), _db(None, 10), _db(None, None)
    ('33.5', 'lossless', '-')
    """
    if value is None:
        return "-" if known is None else "lossless"
    return f"{value:.1f}"


def image_line(result: JobResult) -> str:
    """One line per image for large batches: tokens and retention of each selection.

    Examples
    --------
    >>> from aptviz.errors import Status
    >>> from aptviz.runs.results import JobResult
    >>> image_line(JobResult.failed("x.jpg", "file not found"))
    'x.jpg: failed'
    """
    if result.stats is None:
        return f"{terminal_text(text_path(result.path))}: failed"
    several = len(result.stats.measures) > 1
    parts = [
        f"{_name(sel, several)}: {sel.tokens} ({sel.retention:.4f})"
        + ("" if sel.llm_tokens is None else f" LLM {sel.llm_tokens} ({sel.llm_retention:.4f})")
        for sel in result.stats.selections
    ]
    skipped = "  [skipped: complete]" if result.status is Status.skipped else ""
    return f"{image_title(result.stats)}  " + "  ".join(parts) + skipped


def aggregate_table(groups) -> Table:
    """Per (method, alpha) across the batch: ViT retention (mean, min, max), LLM retention and mean tokens."""
    from rich.table import Table

    table = Table(title="Summary per method and alpha", title_justify="left")
    several = len({g.importance for g in groups}) > 1
    headers = ("method", "alpha", "n", "ViT\nret.", "min", "max", "LLM\nret.", "ViT\ntokens", "LLM\ntokens")
    if several:  # 80 columns: one "selection" column under a row per measure
        headers = ("selection",) + headers[2:]
    for col in headers:
        table.add_column(col, justify="left" if col in ("method", "selection") else "right")
    for g, end in _by_measure(table, groups, several):
        table.add_row(
            *([_selection(g.method, g.alpha)] if several else [g.method, format_alpha(g.alpha)]),
            str(g.images),
            f"{g.mean_retention:.4f}",
            f"{g.min_retention:.4f}",
            f"{g.max_retention:.4f}",
            _num(g.mean_llm_retention, "{:.4f}"),
            f"{g.mean_tokens:.1f}",
            _num(g.mean_llm_tokens, "{:.1f}"),
            end_section=end,
        )
    table.caption = "ret. (retention), tokens: means over the n images; min, max: of the ViT ret."
    table.caption_justify = "left"
    return table


class RunView:
    """Renders one run for the terminal from progress events and the final report."""

    def __init__(self, json_out: bool = False, quiet: bool = False, verbose: bool = False):
        self._err: Console | None = None
        self._out: Console | None = None
        self.json_out, self.quiet, self.verbose = json_out, quiet, verbose
        self.progress = None
        self.task = None
        self.started = time.monotonic()
        self.total = 0

    @property
    def err(self) -> Console:
        """The stderr console, made (and rich imported, ~20 ms) when first used: a quiet run may print nothing."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err

    @property
    def out(self) -> Console:
        """The console of the human output: stdout, or stderr with ``--json``."""
        if self._out is None:
            from rich.console import Console

            self._out = self.err if self.json_out else Console(highlight=False)
        return self._out

    # -- while running ------------------------------------------------------------------------------
    def on_progress(self, event: ProgressEvent) -> None:
        if event.result is None:
            self.total = event.total
            self._start_bar(event.total)
            return
        self._show(event.result)
        if self.progress is not None and event.result.name is not None:
            rate = event.done / max(time.monotonic() - self.started, 1e-9)
            self.progress.update(self.task, completed=event.done, rate=f"{rate:.2f} img/s")

    def _start_bar(self, total: int) -> None:
        if total <= 1 or self.quiet or not self.err.is_terminal:
            return
        self.progress, self.task = start_progress(self.err, total, "[progress.description]{task.description}")

    def _console(self, console: Console) -> Console:
        """While the bar is live, print through its console when both reach the same terminal."""
        if self.progress is not None and console.is_terminal:
            return self.progress.console
        return console

    def _show(self, result: JobResult) -> None:
        if not result.ok:
            self.error(f"{text_path(result.path)}: {clean_text(result.error)}")
            if self.verbose and result.detail:
                self._console(self.err).print(result.detail, markup=False)
            return
        if self.quiet:
            return
        out = self._console(self.out)
        if self.total > COMPACT_ABOVE and not self.verbose:
            out.print(image_line(result), markup=False)
            return
        table = image_table(result.stats)
        if result.status is Status.skipped:
            skipped = "already complete with these parameters: skipped (use --overwrite to redo)"
            table.caption = f"{table.caption}\n{skipped}" if table.caption else skipped
        out.print(table)

    def error(self, message: str) -> None:
        self._console(self.err).print(f"aptviz: error: {terminal_text(message, ERROR_CHARS)}", markup=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # -- at the end ---------------------------------------------------------------------------------
    def finish(self, report: RunReport) -> None:
        """Errors not about one image, JSON, the aggregate and the closing lines."""
        for message in report.errors:
            self.error(message)
        if not self.quiet:
            for message in report.notices:  # stderr, so that --json output stays clean
                self._console(self.err).print(f"aptviz: {terminal_text(message, ERROR_CHARS)}", markup=False)
        if report.interrupted:
            done = len(report.images) if report.complete is None else report.complete
            self.err.print(
                f"aptviz: interrupted: {done} of {report.jobs} image(s) complete in the output; "
                "run the same command again to resume.",
                markup=False,
            )
            return
        if self.json_out:
            stats = [r.stats.to_dict() for r in report.images]
            payload = stats[0] if len(stats) == 1 and report.jobs == 1 else stats
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        if not self.quiet:
            self._closing(report)

    def _closing(self, report: RunReport) -> None:
        from aptviz.runs.summary import aggregate, rows_for

        images = report.images
        if len(images) > 1:
            rows = [row for r in images for row in rows_for(r, report.output, r.stats.scales)]
            self.out.print(aggregate_table(aggregate(rows)))
        failed = len(report.failures)
        if failed:
            self.err.print(f"{failed} of {len(report.results)} input(s) failed (errors above).", markup=False)
        if images:
            skipped = report.count(Status.skipped)
            note = f" ({skipped} already complete, skipped)" if skipped and len(images) > COMPACT_ABOVE else ""
            self.out.print(f"Outputs in {terminal_text(report.output)}/{note}", markup=False)
