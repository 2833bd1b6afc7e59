"""The ``aptviz`` command: parses options, calls :func:`aptviz.run`, prints.

``aptviz IMAGE... [options]`` is the main command (:data:`app`). The other
commands live in their own modules and are found through :data:`SUBCOMMANDS`:
``aptviz NAME ...`` imports ``module:attr`` (a Typer app) only when NAME is
the first argument, so a missing or broken subcommand never affects the main
command, and ``aptviz --help`` stays instant.

Adding a subcommand ``aptviz foo``:

1. write ``aptviz/cli/foo.py`` with ``app = typer.Typer(...)`` and one
   ``@app.command()`` whose options reuse :mod:`aptviz.cli.options`
   (``Inputs``, ``Output``, ... and whole groups with ``with_options``:
   selections, pipeline parameters, ``-r/-j``; then ``request_from`` /
   ``usage_error``);
2. add ``"foo": "aptviz.cli.foo:app"`` to :data:`SUBCOMMANDS`;
3. test it through :func:`main` (``main(["foo", ...])``) or its own app.

A file that has a subcommand's name is processed with a path: ``aptviz ./stats``.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

import typer

from aptviz.cli.options import (
    PIPELINE_OPTIONS,
    SCAN_OPTIONS,
    SELECTION_OPTIONS,
    Caption,
    ColorByScale,
    ExportTokens,
    FigureFormat,
    Inputs,
    JsonOut,
    LineWidth,
    MaxMemory,
    Ocr,
    Output,
    OverlayFormat,
    Overwrite,
    SaveMaps,
    Shared,
    ShowWindows,
    memory_from,
    render_from,
    request_from,
    usage_errors,
    window_from,
    with_options,
)
from aptviz.errors import EXIT_USAGE

SUBCOMMANDS: dict[str, str] = {
    "calibrate": "aptviz.cli.calibrate:app",
    "explore": "aptviz.cli.explore:app",
    "stats": "aptviz.cli.stats:app",
    "stats-summary": "aptviz.cli.stats:summary_app",
}

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _epilog() -> str:
    names = [n for n, target in SUBCOMMANDS.items() if find_spec(target.partition(":")[0]) is not None]
    if not names:
        return ""
    return "Other commands: " + ", ".join(f"aptviz {n}" for n in names) + " (see aptviz COMMAND --help)."


@app.command(help="Show where Adaptive Patch Tokenization puts its patches (Qwen2-VL pipeline).", epilog=_epilog())
@with_options(SELECTION_OPTIONS, PIPELINE_OPTIONS, SCAN_OPTIONS, after="output")
def run(
    inputs: Inputs,
    output: Output = Path("visualizations"),
    overwrite: Overwrite = False,
    save_maps: SaveMaps = False,
    color_by_scale: ColorByScale = False,
    show_windows: ShowWindows = False,
    line_width: LineWidth = 2,
    caption: Caption = False,
    overlay_format: OverlayFormat = "jpg",
    figure_format: FigureFormat = "png",
    export_tokens: ExportTokens = False,
    ocr: Ocr = False,
    max_memory: MaxMemory = None,
    json_out: JsonOut = False,
    *,
    opts: Shared,
) -> None:
    """Parse, run the library, render the report, exit with its code."""
    from aptviz.runs.runner import run as run_library

    view = _view(json_out, opts.quiet, opts.verbose)
    with usage_errors(view):
        params, runs = request_from(opts)
        if ocr:
            params = _with_ocr(params)
        memory = memory_from(max_memory)
        render = render_from(
            color_by_scale, line_width, caption, overlay_format, window_from(show_windows, params), figure_format
        )
        report = run_library(
            inputs, output, runs, params, opts.workers, on_progress=view.on_progress,
            recursive=opts.recursive, overwrite=overwrite, save_maps=save_maps, export_tokens=export_tokens,
            log_level=opts.log_level, max_memory=memory, render=render,
        )  # fmt: skip
    view.finish(report)
    raise typer.Exit(report.return_code)


def _with_ocr(params):
    """``params`` with ``ocr`` on; MissingExtraError (one line, exit 2) without Tesseract."""
    from dataclasses import replace

    from aptviz.compute.ocr import check_tesseract

    check_tesseract()
    return replace(params, ocr=True)


def _view(json_out: bool, quiet: bool, verbose: bool):
    from aptviz.cli.visualize import RunView

    return RunView(json_out=json_out, quiet=quiet, verbose=verbose)


def _dispatch(argv: list[str]) -> tuple[typer.Typer, str, list[str]]:
    """Which app handles ``argv``: a registered subcommand or the main command."""
    if argv and argv[0] in SUBCOMMANDS:
        module, _, attr = SUBCOMMANDS[argv[0]].partition(":")
        try:
            sub = getattr(import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            sys.stderr.write(f"aptviz: error: the '{argv[0]}' command is not available: {exc}\n")
            raise SystemExit(EXIT_USAGE) from None
        return sub, f"aptviz {argv[0]}", argv[1:]
    return app, "aptviz", argv


METHOD_FLAGS = ("-m", "--patch-selection-method")


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one inserted, deleted or replaced character.

    Examples
    --------
    >>> _one_edit("stat", "stats"), _one_edit("stas", "stats"), _one_edit("stats", "stats"), _one_edit("st", "stats")
    (True, True, False, False)
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[i + 1 :] == b[i + 1 :] if len(a) == len(b) else a[i + (len(a) > len(b)) :] == b[i + (len(b) > len(a)) :]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def slip_hint(args: list[str]) -> str | None:
    """A hint for a newcomer's slip that would otherwise run and fail on a strange file name.

    * a missing input that parses as a number right after ``-m METHOD``
      (a space instead of ``:``);
    * a missing first input one edit away from a subcommand (a typo).

    Examples
    --------
    >>> slip_hint(["no-such.jpg", "-m", "budget", "0.3"])
    '0.3: no such file; did you mean -m budget:0.3?'
    >>> slip_hint(["stat", "folder/"])
    'stat: no such file or folder; did you mean `aptviz stats`?'
    >>> slip_hint(["photo.jpg", "-m", "budget:0.3"]) is None
    True
    """
    for i, token in enumerate(args[:-2]):
        value = args[i + 2]
        if token in METHOD_FLAGS and _is_number(value) and not Path(value).exists():
            return f"{value}: no such file; did you mean {token} {args[i + 1]}:{value}?"
    if args and not args[0].startswith("-") and not Path(args[0]).exists():
        close = [name for name in SUBCOMMANDS if _one_edit(args[0], name)]
        if close:
            return f"{args[0]}: no such file or folder; did you mean `aptviz {close[0]}`?"
    return None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``aptviz [COMMAND] ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        hint = slip_hint(args)
        if hint:
            sys.stderr.write(f"aptviz: error: {hint}\n")
            raise SystemExit(EXIT_USAGE)
    target, prog, args = _dispatch(args)
    target(args=args, prog_name=prog)


if __name__ == "__main__":  # pragma: no cover
    main()
