"""Option definitions shared by every aptviz command, and the helpers that turn them into library objects.

Each option is an ``Annotated`` type, so a command declares it in one line
and gets the same flags, help and checks as ``aptviz`` itself::

    from aptviz.cli.options import (
        Inputs,
        Methods,
        Alphas,
        Thresholds,
        PatchSize,
        ...,
        request_from,
    )

    @app.command()
    def calibrate(inputs: Inputs, methods: Methods = None, model: ModelOpt = Model.qwen2_vl, ...):
        params, runs = request_from(locals())    # Params + the validated selections

Nothing heavy is imported here: ``--help`` of every command stays instant.
Errors: raise :func:`usage_error` (exit 2, one line ``aptviz: error: ...``).
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from aptviz._version import __version__
from aptviz.compute.params import Aggregate, Device, Method
from aptviz.compute.presets import Model
from aptviz.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE  # noqa: F401 (re-exported)

METHOD_METAVAR = "{" + ",".join(m.value for m in Method) + "}[:ALPHAS]"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"aptviz {__version__}")
        raise typer.Exit(EXIT_OK)


# -- inputs and output ------------------------------------------------------------------------------
Inputs = Annotated[
    list[str], typer.Argument(help="Image files and/or folders.", show_default=False, metavar="IMAGE_OR_FOLDER")
]
Output = Annotated[Path, typer.Option("-o", "--output", metavar="DIR", help="Output folder.")]
Recursive = Annotated[bool, typer.Option("-r", "--recursive", help="Scan folders recursively.")]
Workers = Annotated[
    int | None,
    typer.Option("-j", "--workers", metavar="N", help="Parallel worker processes. [default: CPU cores]", min=1),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo images whose outputs are already complete.")]
SaveMaps = Annotated[bool, typer.Option("--save-maps", help="Also write maps.npz (entropy maps and masks).")]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        metavar="SIZE",
        help="Memory the run may use, e.g. 4G or 512M; options whose estimated peak exceeds it are refused, "
        "and fewer workers are used when the default number does not fit. [default: half the RAM]",
        show_default=False,
    ),
]
ExportTokens = Annotated[
    bool,
    typer.Option(
        "--export-tokens",
        help="Also write tokens.npz: each selection's kept patches as Qwen2-VL vision rows (the fields of "
        "aptviz.qwen2vl), keys suffixed with the selection's label.",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print stats as JSON on stdout and nothing else there.")]

# -- selections -------------------------------------------------------------------------------------
Methods = Annotated[
    list[str] | None,
    typer.Option(
        "-m",
        "--patch-selection-method",
        metavar=METHOD_METAVAR,
        help="Selection method, any case; repeat for several. A method may carry its own alphas: "
        "-m v2:0.8,1,1.2 -m budget:0.3 -m v1. [default: v1]",
        show_default=False,
    ),
]
Alphas = Annotated[
    list[float] | None,
    typer.Option(
        "-a",
        "--alpha",
        metavar="FLOAT",
        help="v2: threshold multiplier; budget: target retention in [0, 1]. Repeatable; applies to the methods "
        "given without their own alphas. [default: 1.0]",
        show_default=False,
    ),
]
Thresholds = Annotated[
    str,
    typer.Option("--thresholds", metavar="T1,T2", help="v1 entropy thresholds (bits), one per scale above the finest."),
]
OptionalThresholds = Annotated[
    str | None,
    typer.Option(
        "--thresholds",
        help="v1 thresholds, one per scale above the finest, in the measure's unit. "
        "[default: 3,2 (bits) for entropy; required by v1 with the other measures]",
        show_default=False,
    ),
]
Importance = Annotated[
    list[str] | None,
    typer.Option(
        "--importance",
        metavar="MEASURE[,MEASURE...]",
        help="What scores a patch: entropy (bits), laplacian (|∇²| of gray/255) or upsample-mse "
        "(error of a bilinear down-up reconstruction at the patch's scale). Several (comma list or repeated): "
        "every selection runs on each, and labels and file names name the measure. [default: entropy]",
        show_default=False,
    ),
]
AggregateOpt = Annotated[
    Aggregate | None,
    typer.Option(
        "--aggregate",
        case_sensitive=False,
        help="Per-patch reduction of laplacian and upsample-mse values (std with n-1). [default: mean]",
        show_default=False,
    ),
]

# -- pipeline parameters (names match aptviz.compute.params.Params fields) -----------------------------------
ModelOpt = Annotated[
    Model,
    typer.Option(
        "--model",
        case_sensitive=False,
        help="Whose image pipeline: sets patch, merge and temporal patch size and the normalization "
        "(qwen2-vl and qwen2.5-vl: 14 px patches, 28 px merge unit; qwen3-vl: 16 px, 32 px). "
        "--patch-size/--merge-size still override.",
    ),
]
PatchSize = Annotated[
    int | None,
    typer.Option(
        "--patch-size",
        metavar="N",
        help="Finest patch size in pixels. [default: the model's, 14 or 16]",
        show_default=False,
    ),
]
MergeSize = Annotated[
    int | None,
    typer.Option(
        "--merge-size",
        metavar="N",
        help="Merge size (resize factor = patch * merge). [default: the model's, 2]",
        show_default=False,
    ),
]
TemporalPatchSize = Annotated[
    int | None,
    typer.Option(
        "--temporal-patch-size",
        metavar="N",
        help="Temporal patch size (recorded; tokens.npz rows). [default: the model's, 2]",
        show_default=False,
    ),
]
NumScales = Annotated[int, typer.Option("--num-scales", metavar="N", help="Number of patch scales (patch * 2**i).")]
MinPixels = Annotated[int, typer.Option("--min-pixels", metavar="N", help="smart_resize minimum pixel count.")]
MaxPixels = Annotated[int, typer.Option("--max-pixels", metavar="N", help="smart_resize maximum pixel count.")]
Bins = Annotated[int, typer.Option("--bins", metavar="N", help="Histogram bins for the entropy.")]
DeviceOpt = Annotated[
    Device,
    typer.Option("--device", case_sensitive=False, help="Where to compute entropy and selection."),
]

# -- pictures ----------------------------------------------------------------------------------------
ColorByScale = Annotated[
    bool, typer.Option("--color-by-scale", help="Overlays: one boundary colour per patch scale, with a legend.")
]
ShowWindows = Annotated[
    bool,
    typer.Option(
        "--show-windows",
        help="Overlays: draw Qwen2.5-VL's attention-window borders (112 px, 4x4 merge units) in red, with a "
        "legend entry (needs --model qwen2.5-vl: the other models attend to the whole image).",
    ),
]
LineWidth = Annotated[int, typer.Option("--line-width", help="Overlays: boundary line width in pixels (1-16).")]
Caption = Annotated[bool, typer.Option("--caption", help="Overlays: a caption with the selection's numbers.")]
FigureFormat = Annotated[
    str,
    typer.Option(
        "--figure-format",
        metavar="{png,pdf,svg}",
        help="compare and the batch figures: PNG, or vector PDF/SVG (needs aptviz[plots]); heatmaps stay PNG.",
    ),
]
OverlayFormat = Annotated[
    str,
    typer.Option(
        "--overlay-format",
        metavar="{jpg,png}",
        help="Overlay files: 4:4:4 JPEG, or PNG (lossless: lines exactly green).",
    ),
]

# -- verbosity ---------------------------------------------------------------------------------------
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print errors only.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging, tracebacks and every table.")]
Version = Annotated[
    bool | None,
    typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
]

DEFAULT_THRESHOLDS_TEXT = "3,2"


def render_from(
    color_by_scale: bool, line_width: int, caption: bool, overlay_format: str, window: int = 0,
    figure_format: str = "png",
):  # fmt: skip
    """:class:`~aptviz.render.extras.RenderOptions` from the picture options (ParameterError when bad).

    A vector ``figure_format`` without matplotlib is a MissingExtraError.
    """
    from aptviz.render.extras import RenderOptions
    from aptviz.render.figures import require_vector

    fmt = str(figure_format).lower().lstrip(".")
    options = RenderOptions(
        line_width, color_by_scale, caption, str(overlay_format).lower().lstrip("."), window, figure_format=fmt
    )
    require_vector(fmt)
    return options


def window_from(show_windows: bool, params) -> int:
    """``--show-windows``: the attention-window side in px to draw (0 when not asked).

    Raises :class:`~aptviz.errors.ParameterError` for a model whose vision
    tower has no windows (Qwen2-VL, Qwen3-VL), rather than drawing borders
    that do not exist.
    """
    from aptviz.errors import ParameterError

    if not show_windows:
        return 0
    window = params.attention_window
    if window is None:
        raise ParameterError(
            f"--show-windows needs --model qwen2.5-vl: {params.model}'s vision tower attends to the whole image "
            "(no attention windows to draw)"
        )
    if window == 0:
        raise ParameterError(
            f"--show-windows: a {params.factor} px merge unit is larger than the {params.preset.window_size} px "
            "attention window"
        )
    return window


def _terminal_sink(stream):
    """A loguru sink writing each message as one line with control characters escaped (names come from files)."""
    from aptviz._text import ERROR_CHARS, terminal_text

    def sink(message) -> None:
        stream.write(terminal_text(str(message).rstrip("\n"), ERROR_CHARS) + "\n")

    return sink


def usage_error(message: str) -> typer.Exit:
    """Print ``aptviz: error: message`` on stderr; return the exit (status 2) to raise."""
    from aptviz._text import ERROR_CHARS, terminal_text

    sys.stderr.write(f"aptviz: error: {terminal_text(message, ERROR_CHARS)}\n")
    return typer.Exit(EXIT_USAGE)


def setup_logging(quiet: bool = False, verbose: bool = False) -> str:
    """Route aptviz's loguru messages to stderr at the level the flags ask for; return the level."""
    from aptviz._log import logger

    level = "DEBUG" if verbose else ("ERROR" if quiet else "WARNING")
    logger.remove()
    logger.add(_terminal_sink(sys.stderr), level=level, format="{level}: {message}")
    logger.enable("aptviz")
    return level


def params_from(values: dict):
    """:class:`~aptviz.compute.params.Params` from a command's option values (e.g. ``locals()``).

    Only keys that are Params fields are used; a bad value raises
    :class:`~aptviz.errors.ParameterError`.
    """
    return params_and_measures_from(values)[0]


def params_and_measures_from(values: dict):
    """``(Params, measures)`` from a command's option values: ``--importance`` may name several measures."""
    from aptviz.compute.params import Params, params_and_measures

    names = {f.name for f in fields(Params)}
    return params_and_measures(**{k: getattr(v, "value", v) for k, v in values.items() if k in names})


def runs_from(
    methods: list[str] | None,
    alphas: list[float] | None,
    thresholds: str | None,
    num_scales: int,
    measure="entropy",
    aggregate: str | None = None,
):
    """The selections asked for (``-m``/``-a``/``--thresholds``), validated.

    ``thresholds`` None means not given: v1 then uses the measure's default
    (entropy only; see :func:`aptviz.compute.params.default_thresholds`).
    """
    from aptviz.compute.params import build_runs, parse_floats

    thr = None if thresholds is None else parse_floats(thresholds, "--thresholds")
    return build_runs(methods or [], alphas or [], thr, num_scales, measure, aggregate)


def request_from(values: dict):
    """``(Params, runs)`` from a command's option values (its ``locals()``).

    Combines :func:`params_from`, :func:`runs_from` (with the params' scale
    count and measure) and :func:`warn_unused`; a bad value raises
    :class:`~aptviz.errors.ParameterError`.
    """
    params, measures = params_and_measures_from(values)
    methods, alphas, thresholds = values.get("methods"), values.get("alphas"), values.get("thresholds")
    aggregate = getattr(values.get("aggregate"), "value", values.get("aggregate"))
    runs = runs_from(methods, alphas, thresholds, params.num_scales, measures, aggregate)
    warn_unused(methods, alphas, thresholds)
    return params, runs


def memory_from(text: str | None) -> int | None:
    """``--max-memory`` in bytes, or None when not given (the library's default then applies)."""
    from aptviz.runs.memory import parse_size

    return None if text is None else parse_size(text)


def warn_unused(methods: list[str] | None, alphas: list[float] | None, thresholds: str | None) -> None:
    """Warn when ``--alpha`` or ``--thresholds`` cannot apply to the methods chosen."""
    from aptviz._log import logger
    from aptviz.compute.params import parse_method_spec

    chosen = [parse_method_spec(m) for m in (methods or ["v1"])]
    if alphas and all(own is not None or not m.takes_alpha for m, own in chosen):
        if all(m is Method.v1 for m, _ in chosen):
            logger.warning("--alpha is ignored by v1 (fixed thresholds); add -m v2 or -m budget to use it")
        else:
            logger.warning("--alpha is ignored: every method given has its own alphas")
    if thresholds not in (None, DEFAULT_THRESHOLDS_TEXT) and all(m is not Method.v1 for m, _ in chosen):
        logger.warning("--thresholds is used by v1 only")
