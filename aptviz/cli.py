"""The ``aptviz`` command: parses options, calls the library, prints.

Heavy modules (torch, numpy, matplotlib) are imported inside :func:`run`
only, so ``aptviz --help`` and ``aptviz --version`` answer at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ._version import __version__

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


class MethodChoice(str, Enum):
    v1 = "v1"
    v2 = "v2"
    budget = "budget"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"aptviz {__version__}")
        raise typer.Exit(EXIT_OK)


def _parse_thresholds(text: str) -> list[float]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers such as 3,2, got {text!r}") from None


def _fmt_alpha(alpha) -> str:
    return "-" if alpha is None else f"{alpha:g}"


def _image_table(stats: dict):
    from rich.table import Table

    img = stats["image"]
    ow, oh = img["original_size"]
    rw, rh = img["resized_size"]
    scales = list(stats["grid"])
    title = f"{img['path']}  {ow}x{oh} -> {rw}x{rh}"
    if img.get("frames", 1) > 1:
        title += f"  (first of {img['frames']} frames)"
    table = Table(title=title, title_justify="left")
    table.add_column("method")
    table.add_column("alpha", justify="right")
    for ps in scales:
        table.add_column(f"{ps}px", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column(f"N ({scales[0]}px)", justify="right")
    table.add_column("retention", justify="right")
    table.add_column("target", justify="right")
    for sel in stats["selections"]:
        target = sel["target_retention"]
        table.add_row(
            sel["method"],
            _fmt_alpha(sel["alpha"]),
            *(str(sel["tokens_by_scale"][ps]) for ps in scales),
            str(sel["tokens"]),
            str(sel["base_small_tokens"]),
            f"{sel['retention']:.4f}",
            "-" if target is None else f"{target:.4f}",
        )
    return table


def _aggregate_table(groups: list[dict]):
    from rich.table import Table

    table = Table(title="Summary per method and alpha", title_justify="left")
    for col in ("method", "alpha", "images", "mean retention", "min", "max", "mean tokens"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for g in groups:
        table.add_row(
            g["method"],
            _fmt_alpha(g["alpha"]),
            str(g["images"]),
            f"{g['mean_retention']:.4f}",
            f"{g['min_retention']:.4f}",
            f"{g['max_retention']:.4f}",
            f"{g['mean_tokens']:.1f}",
        )
    return table


@app.command(help="Show where Adaptive Patch Tokenization puts its patches (Qwen2-VL pipeline).")
def run(
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")] = Path("visualizations"),
    methods: Annotated[
        list[MethodChoice] | None,
        typer.Option("-m", "--patch-selection-method", help="Selection method; repeat for several. [default: v1]"),
    ] = None,
    alphas: Annotated[
        list[float] | None,
        typer.Option(
            "-a",
            "--alpha",
            help="v2: threshold multiplier; budget: target retention in [0, 1]. Repeatable. [default: 1.0]",
        ),
    ] = None,
    thresholds: Annotated[
        str, typer.Option("--thresholds", help="v1 entropy thresholds (bits), one per scale above the finest.")
    ] = "3,2",
    patch_size: Annotated[int, typer.Option("--patch-size", help="Finest patch size in pixels.")] = 14,
    merge_size: Annotated[
        int, typer.Option("--merge-size", help="Qwen2-VL merge size (resize factor = patch * merge).")
    ] = 2,
    temporal_patch_size: Annotated[
        int, typer.Option("--temporal-patch-size", help="Qwen2-VL temporal patch size (recorded).")
    ] = 2,
    num_scales: Annotated[int, typer.Option("--num-scales", help="Number of patch scales (patch * 2**i).")] = 3,
    min_pixels: Annotated[int, typer.Option("--min-pixels", help="smart_resize minimum pixel count.")] = 56 * 56,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="smart_resize maximum pixel count.")] = 28 * 28 * 1280,
    bins: Annotated[int, typer.Option("--bins", help="Histogram bins for the entropy.")] = 512,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="Where to compute entropy and selection.")
    ] = DeviceChoice.auto,
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Scan folders recursively.")] = False,
    workers: Annotated[
        int | None, typer.Option("-j", "--workers", help="Parallel worker processes. [default: CPU cores]", min=1)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo images whose outputs are already complete.")
    ] = False,
    save_maps: Annotated[
        bool, typer.Option("--save-maps", help="Also write maps.npz (entropy maps and masks).")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print stats as JSON on stdout and nothing else there.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print errors only.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging and tracebacks.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    ] = None,
) -> None:
    from rich.console import Console

    from ._log import logger

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = err if json_out else Console(highlight=False)
    level = "DEBUG" if verbose else ("ERROR" if quiet else "WARNING")
    logger.remove()
    logger.add(sys.stderr, level=level, format="{level}: {message}")
    logger.enable("aptviz")

    def usage_error(message: str) -> typer.Exit:
        err.print(f"aptviz: error: {message}", markup=False)
        return typer.Exit(EXIT_USAGE)

    from .errors import ParameterError
    from .params import Params, expand_runs

    try:
        params = Params(
            patch_size=patch_size,
            merge_size=merge_size,
            temporal_patch_size=temporal_patch_size,
            num_scales=num_scales,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            bins=bins,
        ).validate()
        runs = expand_runs(
            [m.value for m in (methods or [MethodChoice.v1])],
            alphas or [1.0],
            _parse_thresholds(thresholds),
            num_scales,
        )
    except (ParameterError, typer.BadParameter) as exc:
        raise usage_error(str(exc)) from None
    chosen = {m.value for m in (methods or [MethodChoice.v1])}
    if alphas and chosen == {"v1"}:
        logger.warning("--alpha is ignored by v1 (fixed thresholds); add -m v2 or -m budget to use it")
    if thresholds != "3,2" and "v1" not in chosen:
        logger.warning("--thresholds is used by v1 only")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise usage_error(f"cannot use {str(output)!r} as the output folder: {exc.strerror or exc}") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise usage_error(f"cannot write to the output folder {str(output)!r}: permission denied")

    from dataclasses import replace

    try:
        # cuda is checked now; auto is resolved by run_batch only if there is work (resuming needs no torch)
        params = replace(params, device=device.value)
        if device == DeviceChoice.cuda:
            from .device import resolve_device

            params = replace(params, device=resolve_device(device.value))
    except ParameterError as exc:
        raise usage_error(str(exc)) from None

    from .batch import discover, run_batch
    from .summary import Summary, aggregate, write_retention_plot

    jobs, failures = discover(inputs, recursive=recursive, exclude=output)
    summary = Summary(output, params.scales, order=[str(j.path) for j in jobs])
    failed: list[tuple[str, str]] = []

    def report_failure(res) -> None:
        failed.append((str(res.path), res.error))
        summary.add(str(res.path), res.name, None, res.error)
        err.print(f"aptviz: error: {res.path}: {res.error}", markup=False)
        if verbose and res.detail:
            err.print(res.detail, markup=False)

    for res in failures:
        report_failure(res)

    summary_error: list[str] = []

    def write_summary(force: bool = False) -> None:
        try:
            summary.write(force=force)
        except OSError as exc:  # reported once; the images themselves go on
            if not summary_error:
                summary_error.append(str(exc))
                err.print(f"aptviz: error: cannot write the summary in {output}: {exc}", markup=False)

    collected: list[dict] = []
    processed = 0  # images computed in this run (not skipped)
    progress = None
    if len(jobs) > 1 and not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
    interrupted = False

    start = time.monotonic()
    try:
        if progress is not None:
            progress.start()
            task = progress.add_task("images", total=len(jobs), rate="")
        for res in run_batch(jobs, output, runs, params, workers, overwrite, save_maps, log_level=level):
            if res.status == "failed":
                report_failure(res)
            else:
                processed += res.status == "done"
                collected.append(res.stats)
                summary.add(str(res.path), res.name, res.stats)
                if not quiet:
                    table = _image_table(res.stats)
                    if res.status == "skipped":
                        table.caption = "already complete with these parameters: skipped (use --overwrite to redo)"
                    out.print(table)
            write_summary()
            if progress is not None:
                done = progress.tasks[0].completed + 1
                rate = done / max(time.monotonic() - start, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.2f} img/s")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
        write_summary(force=True)

    rows = summary.rows
    plot = output / "retention_vs_alpha.png"
    if len(runs) >= 2 and len(jobs) > 1 and not interrupted and (processed or not plot.exists()):
        write_retention_plot(plot, rows)
    if interrupted:
        err.print(
            f"aptviz: interrupted after {len(collected)} image(s); run the same command again to resume.", markup=False
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if json_out:
        payload = collected[0] if len(collected) == 1 and len(jobs) == 1 else collected
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    if not quiet:
        if len(jobs) > 1 or failed:
            groups = aggregate(rows)
            if groups and len(collected) > 1:
                out.print(_aggregate_table(groups))
        if failed:
            err.print(f"{len(failed)} input(s) failed:", markup=False)
            for path, reason in failed:
                err.print(f"  {path}: {reason}", markup=False)
        out.print(f"Outputs in {output}/", markup=False)
    raise typer.Exit(EXIT_FAILED if failed or summary_error else EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="aptviz")


if __name__ == "__main__":  # pragma: no cover
    main()
