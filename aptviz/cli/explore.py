"""``aptviz explore``: a standalone page with an explorer per image (docs/explorer.md).

    aptviz explore IMAGE_OR_FOLDER... [-o explore.html] [-m v2|budget|v1] [-a ALPHA] [pipeline options]

The page needs no server and no network: pick a method, move alpha or the v1
thresholds, and the overlay, the model view, the numbers and the histogram
follow, computed in the page exactly as :func:`aptviz.select_patches`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aptviz._text import ERROR_CHARS, terminal_text
from aptviz.cli.options import (
    PIPELINE_OPTIONS,
    Inputs,
    OptionalThresholds,
    Recursive,
    Shared,
    params_and_measures_from,
    usage_error,
    with_options,
)
from aptviz.errors import EXIT_FAILED, EXIT_OK

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})

PageOut = Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="The page to write.")]
StartMethod = Annotated[
    str, typer.Option("-m", "--patch-selection-method", metavar="{v2,budget,v1}", help="The method the page starts with.")
]
StartAlpha = Annotated[
    float | None, typer.Option("-a", "--alpha", help="The alpha the page starts with (v2: 1, budget: 0.5 by default).")
]


@app.command(help="Write a standalone page to choose alpha by looking: live selection, tokens and PSNR per image.")
@with_options(PIPELINE_OPTIONS, after="thresholds")
def explore(
    inputs: Inputs,
    output: PageOut = Path("explore.html"),
    method: StartMethod = "v2",
    alpha: StartAlpha = None,
    thresholds: OptionalThresholds = None,
    recursive: Recursive = False,
    *,
    opts: Shared,
) -> None:
    """Parse, compute each image's explorer data, write the page."""
    from aptviz.errors import ParameterError
    from aptviz.output.lock import check_output_file, lock_folder_of
    from aptviz.runs.batch import discover

    try:
        params, start, thr = _request({**opts.pipeline(), "method": method, "alpha": alpha, "thresholds": thresholds})
        jobs, missing = discover(inputs, recursive)
        if not jobs and not missing:
            raise ParameterError("no images found in the inputs")
        check_output_file(output, [*inputs, *(job.path for job in jobs)])
        lock = lock_folder_of(output)  # a run's output folder: not while that run writes its report.html
    except ParameterError as exc:
        raise usage_error(str(exc)) from None
    try:
        _write_page(output, jobs, missing, params, (start, alpha, thr), opts.quiet)
    finally:
        if lock is not None:
            lock.release()


def _write_page(output: Path, jobs, missing, params, controls: tuple, quiet: bool) -> None:
    """Compute each image's explorer data and write the page; exits with the command's status.

    ``controls`` is ``(method, alpha, v1 thresholds)`` the page starts with.
    """
    from aptviz.output.atomic import write_bytes_atomic
    from aptviz.render.explorer import explorer_page

    payloads, failed = _payloads(jobs, params)
    failed = [f"{item.path}: {item.error}" for item in missing] + failed
    for line in failed:
        sys.stderr.write(f"aptviz: error: {terminal_text(line, ERROR_CHARS)}\n")
    if not payloads:
        raise typer.Exit(EXIT_FAILED)
    start, alpha, thr = controls
    page = explorer_page(payloads, "aptviz explorer", method=start, alpha=alpha, thresholds=thr)
    try:
        written = write_bytes_atomic(output, page.encode("utf-8"))
    except OSError as exc:
        sys.stderr.write(f"aptviz: error: {terminal_text(f'cannot write {output}: {exc}', ERROR_CHARS)}\n")
        raise typer.Exit(EXIT_FAILED) from None
    if not quiet:
        sys.stdout.write(f"wrote {written} ({len(payloads)} image(s))\n")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _request(values: dict):
    """``(Params, start method, v1 thresholds or None)`` from the options; ParameterError when bad."""
    from aptviz.compute.params import RunSpec, parse_floats, parse_method
    from aptviz.errors import ParameterError

    params, measures = params_and_measures_from(values)
    if len(measures) > 1:
        raise ParameterError("aptviz explore shows one measure at a time: give one --importance")
    start = parse_method(values["method"]).value
    thr = None if values["thresholds"] is None else parse_floats(values["thresholds"], "--thresholds")
    if thr is not None:
        RunSpec("v1", None, thr).check_scales(params.num_scales)
    if values["alpha"] is not None and start != "v1":
        RunSpec(start, values["alpha"], None)
    return params.resolved(), start, thr


def _payloads(jobs, params) -> tuple[list[dict], list[str]]:
    """Each image's explorer data; a file that fails is one line, and the others go on."""
    from aptviz.compute.loading import decode_limit, open_image
    from aptviz.errors import AptvizError
    from aptviz.runs.explore import explorer_payload

    payloads, failed = [], []
    for job in jobs:
        try:
            loaded = open_image(job.path, decode_limit(params.max_pixels))
            payloads.append(explorer_payload(loaded, job.name, params, job.path))
        except (AptvizError, OSError, ValueError) as exc:
            failed.append(f"{job.path}: {exc}")
    return payloads, failed
