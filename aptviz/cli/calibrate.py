"""``aptviz calibrate``: the alpha (v2) or threshold factor (v1) that gives a target retention.

    aptviz calibrate photos/ -m v2 --target 0.3 [--statistic mean|median] [-o DIR]

Maps are computed once per image; the retention statistic is a step function
of alpha, evaluated exactly at its steps (:mod:`aptviz.compute.calibration`). Prints the
result and writes ``OUTPUT/calibration.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aptviz.cli.options import (
    DEFAULT_THRESHOLDS_TEXT,
    EXIT_FAILED,
    EXIT_OK,
    PIPELINE_OPTIONS,
    SCAN_OPTIONS,
    Inputs,
    Output,
    Shared,
    Thresholds,
    params_and_measures_from,
    usage_error,
    with_options,
)
from aptviz.compute.params import Statistic

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


CalMethod = Annotated[
    str,
    typer.Option("-m", "--patch-selection-method", metavar="{v2,v1}", help="v2: find alpha; v1: find a factor on --thresholds."),
]
Target = Annotated[float, typer.Option("--target", help="Target retention (tokens / N) in (0, 1].")]
StatisticOpt = Annotated[Statistic, typer.Option("--statistic", help="Statistic of the per-image retentions.")]


@app.command(help="Find the v2 alpha (or v1 threshold factor) whose retention over the images is closest to a target "
             "from below.")
@with_options(PIPELINE_OPTIONS, SCAN_OPTIONS, after="output")
def calibrate(
    inputs: Inputs,
    method: CalMethod = "v2",
    target: Target = 0.3,
    statistic: StatisticOpt = Statistic.mean,
    thresholds: Thresholds = DEFAULT_THRESHOLDS_TEXT,
    output: Output = Path("visualizations"),
    *,
    opts: Shared,
) -> None:
    """Parse, calibrate, print, write calibration.json."""
    from aptviz.compute.params import RunSpec, parse_floats, parse_method
    from aptviz.errors import ParameterError
    from aptviz.runs.batch import discover
    from aptviz.runs.calibrate import NoImagesError, calibrate_paths
    from aptviz.runs.pool import default_workers

    missing: list = []
    try:
        params, measures = params_and_measures_from(opts.pipeline())
        params = params.resolved()
        chosen = parse_method(method).value
        base = parse_floats(thresholds, "--thresholds")
        if chosen == "v1":
            RunSpec(chosen, None, tuple(base)).check_scales(params.num_scales)
        jobs, missing = discover(inputs, opts.recursive)
        paths = [str(j.path) for j in jobs]
        if not paths:
            raise ParameterError("no images found in the inputs")
        n_workers = 1 if params.device != "cpu" else (opts.workers or default_workers())
        results, failed = [], []  # one calibration per measure, on that measure's maps
        for p in _measure_params(params, measures, getattr(opts.aggregate, "value", opts.aggregate)):
            cal, failed = calibrate_paths(paths, chosen, target, statistic.value, base, p, n_workers)
            results.append((p, cal))
    except NoImagesError as exc:
        raise _all_failed(missing, exc) from None
    except ParameterError as exc:
        _reasons(missing, [])
        raise usage_error(str(exc)) from None
    _reasons(missing, failed)
    written = _write(_calibration_json(results), Path(output) / "calibration.json")
    if not opts.quiet:
        for p, cal in results:
            _print(cal, written, p.importance if len(results) > 1 else None)
    raise typer.Exit(EXIT_FAILED if (failed or missing) else EXIT_OK)


def _write(data: dict, path: Path) -> Path:
    """Write calibration.json; a failure is one line and exit status 1."""
    from aptviz._text import terminal_text
    from aptviz.output.atomic import write_json_atomic

    try:
        return write_json_atomic(path, data)
    except OSError as exc:
        sys.stderr.write(f"aptviz: error: cannot write {terminal_text(path)}: {terminal_text(exc)}\n")
        raise typer.Exit(EXIT_FAILED) from None


def _all_failed(missing, exc) -> typer.Exit:
    """Every input failed: each reason, then the verdict; return the exit (status 1) to raise."""
    _reasons(missing, exc.failed)
    sys.stderr.write(f"aptviz: error: {exc}\n")
    return typer.Exit(EXIT_FAILED)


def _reasons(missing, failed) -> None:
    """One line per input that gave no image: missing paths, then files that failed."""
    from aptviz._text import ERROR_CHARS, terminal_text

    for item in missing:
        sys.stderr.write(f"aptviz: {terminal_text(f'{item.path}: {item.error}', ERROR_CHARS)}\n")
    for path, error in failed:
        sys.stderr.write(f"aptviz: {terminal_text(f'{path}: {error}', ERROR_CHARS)}\n")


def _calibration_json(results: list) -> dict:
    """calibration.json: the model, the measure(s) and the pipeline params the answer was found with.

    One measure: ``model``, ``importance``, ``aggregate``, the calibration's
    keys, then ``params`` (the stats.json ``params`` less ``device``, which does
    not change the answer). Several: ``model``, ``importance`` (the list),
    ``params`` (less the measure) and ``{"measures": [each calibration with its
    measure]}``.
    """
    first = results[0][0]
    params = {k: v for k, v in first.to_dict().items() if k != "device"}
    if len(results) == 1:
        return {"model": first.model, "importance": first.importance, "aggregate": first.aggregate,
                **results[0][1].to_dict(), "params": params}  # fmt: skip
    shared = {k: v for k, v in params.items() if k not in ("importance", "aggregate")}
    return {
        "model": first.model,
        "importance": [p.importance for p, _ in results],
        "params": shared,
        "measures": [{"importance": p.importance, "aggregate": p.aggregate, **c.to_dict()} for p, c in results],
    }


def _measure_params(params, measures: list[str], aggregate: str | None) -> list:
    """The Params of each measure (its own aggregate: --aggregate, or mean, none for entropy)."""
    from dataclasses import replace

    from aptviz.compute.params import parse_measure

    if len(measures) == 1:
        return [params]
    return [
        replace(params, importance=m, aggregate=aggregate if parse_measure(m).takes_aggregate else None)
        for m in measures
    ]


def _print(cal, written: Path, measure: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from aptviz._text import terminal_text

    name = "alpha" if cal.method == "v2" else "factor"
    console = Console()
    on = f" on {measure}" if measure else ""
    table = Table(title=f"{cal.method} calibration{on} over {len(cal.retentions)} image(s)", title_justify="left")
    table.add_column("image")
    table.add_column("retention", justify="right")
    for path, ret in zip(cal.paths, cal.retentions):
        table.add_row(Text(terminal_text(path)), f"{ret:.4f}")
    if len(cal.retentions) <= 40:
        console.print(table)
    extra = f" (thresholds {', '.join(f'{t:g}' for t in cal.thresholds)})" if cal.thresholds else ""
    where = "from below" if cal.below_target else "NOT reachable from below: smallest retention possible"
    console.print(
        f"{measure + ': ' if measure else ''}{name} = {cal.value:g}{extra}: "
        f"{cal.statistic} retention {cal.achieved:.4f} "
        f"(target {cal.target:g}, {where})"
    )
    console.print(f"wrote {terminal_text(written)}", markup=False)
