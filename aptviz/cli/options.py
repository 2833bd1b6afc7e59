"""Option definitions shared by every aptviz command, and the helpers that turn them into library objects.

Each option is an ``Annotated`` type, so a command declares it in one line
and gets the same flags, help and checks as ``aptviz`` itself. Options that
several commands share come in groups -- the selections (``-m/-a/--thresholds``),
the pipeline parameters (``--model``, ``--patch-size`` ... ``--device``: the fields of
:class:`~aptviz.compute.params.Params`, with their defaults read from
``Params``), ``-r/-j`` and ``-q/-v/--version`` -- and a command takes whole
groups with :func:`with_options`, declaring only its own options::

    from aptviz.cli.options import PIPELINE_OPTIONS, SELECTION_OPTIONS, Inputs, Shared, request_from, with_options

    @app.command()
    @with_options(SELECTION_OPTIONS, PIPELINE_OPTIONS, after="inputs")
    def foo(inputs: Inputs, *, opts: Shared):
        params, runs = request_from(opts)    # Params + the validated selections

Adding a pipeline parameter: a field of ``Params``, and its line in
:data:`PIPELINE_OPTIONS`; every command that computes then has it. Nothing heavy is
imported here: ``--help`` of every command stays instant. Errors: raise
:func:`usage_error` (exit 2, one line ``aptviz: error: ...``).
"""

from __future__ import annotations

import functools
import inspect
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from aptviz._version import __version__
from aptviz.compute.params import DEFAULT_THRESHOLDS, Aggregate, Device, Method, Params
from aptviz.compute.presets import Model
from aptviz.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE  # noqa: F401 (re-exported)
from aptviz.errors import MissingExtraError, ParameterError

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
    typer.Option("--export-tokens", help="Also write tokens.npz: each selection's kept patches as Qwen2-VL vision "
                 "rows (the fields of aptviz.qwen2vl), keys suffixed with the selection's label."),
]  # fmt: skip
Ocr = Annotated[
    bool,
    typer.Option("--ocr", help="Text fidelity: Tesseract's character accuracy (1 - CER, 0-1) on each model view and "
                 "both uniform views against its text on the resized image (ocr_apt, ocr_uniform, ocr_uniform_llm; "
                 "empty without text). Needs the tesseract program (system package tesseract-ocr)."),
]  # fmt: skip
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
    typer.Option("-a", "--alpha", metavar="FLOAT", show_default=False, help="v2: threshold multiplier; budget: "
                 "target retention in [0, 1]. Repeatable; applies to the methods given without their own alphas. "
                 "[default: 1.0]"),
]  # fmt: skip
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


def _model_size(flag: str, text: str, default: str):
    """An integer option whose default is the ``--model``'s (None here; ``Params`` fills it in)."""
    help_text = f"{text} [default: the model's, {default}]"
    return Annotated[int | None, typer.Option(flag, metavar="N", help=help_text, show_default=False)]


PatchSize = _model_size("--patch-size", "Finest patch size in pixels.", "14 or 16")
MergeSize = _model_size("--merge-size", "Merge size (resize factor = patch * merge).", "2")
TemporalPatchSize = _model_size("--temporal-patch-size", "Temporal patch size (recorded; tokens.npz rows).", "2")
NumScales = Annotated[int, typer.Option("--num-scales", metavar="N", help="Number of patch scales (patch * 2**i).")]
MinPixels = Annotated[int, typer.Option("--min-pixels", metavar="N", help="smart_resize minimum pixel count.")]
MaxPixels = Annotated[int, typer.Option("--max-pixels", metavar="N", help="smart_resize maximum pixel count.")]
Bins = Annotated[int, typer.Option("--bins", metavar="N", help="Histogram bins for the entropy.")]
# videos (docs/video.md): sampling and per-frame size as qwen-vl-utils, and the static-token rule
Fps = Annotated[float, typer.Option("--fps", metavar="F", help="Videos: frames sampled per second (min 4, max 768 "
                                    "frames, an even count).")]
Nframes = Annotated[int | None, typer.Option("--nframes", metavar="N", help="Videos: sample N frames (rounded to "
                                             "an even count) instead of --fps.", show_default=False)]
VideoMinPixels = Annotated[int | None, typer.Option("--video-min-pixels", metavar="N", show_default=False,
                                                    help="Videos: per-frame minimum pixels. [default: 128 u^2]")]
VideoMaxPixels = Annotated[int | None, typer.Option("--video-max-pixels", metavar="N", show_default=False,
                                                    help="Videos: per-frame maximum pixels. [default: 768 u^2]")]
VideoTotalPixels = Annotated[int | None, typer.Option("--video-total-pixels", metavar="N", show_default=False,
                                                      help="Videos: pixels of all frames together, which caps the "
                                                      "per-frame size. [default: 115200 u^2]")]
StaticThreshold = Annotated[float | None, typer.Option(
    "--static-threshold", metavar="T", show_default=False,
    help="Videos: drop APT tokens lying wholly in merge units whose mean absolute gray difference against the "
    "previous tubelet is <= T (gray levels 0-255). [default: off]")]
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
    typer.Option("--show-windows", help="Overlays and compare.png: draw Qwen2.5-VL's attention-window borders (112 "
                 "px, 4x4 merge units) in red (needs --model qwen2.5-vl: the other models attend to the whole "
                 "image)."),
]  # fmt: skip
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

DEFAULT_THRESHOLDS_TEXT = ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS)  # "3,2"

_DEFAULT = {f.name: f.default for f in fields(Params)}  # as declared: None sizes mean "the model's"

#: Option groups: (name, option type, default). A command takes whole groups with :func:`with_options`.
SELECTION_OPTIONS = (("methods", Methods, None), ("alphas", Alphas, None), ("thresholds", OptionalThresholds, None))
#: The pipeline parameters, with ``Params``'s defaults, except ``--device``: the command line picks the
#: GPU when there is one (``auto``); the library stays on the CPU unless asked.
PIPELINE_OPTIONS = (
    ("model", ModelOpt, Model(_DEFAULT["model"])),
    *((name, kind, _DEFAULT[name]) for name, kind in (
        ("patch_size", PatchSize), ("merge_size", MergeSize), ("temporal_patch_size", TemporalPatchSize),
        ("num_scales", NumScales), ("min_pixels", MinPixels), ("max_pixels", MaxPixels), ("bins", Bins),
    )),
    ("importance", Importance, None),  # a list of measures; none given: Params' (entropy)
    ("aggregate", AggregateOpt, _DEFAULT["aggregate"]),
    ("device", DeviceOpt, Device.auto),
    *((name, kind, _DEFAULT[name]) for name, kind in (
        ("fps", Fps), ("nframes", Nframes), ("video_min_pixels", VideoMinPixels),
        ("video_max_pixels", VideoMaxPixels), ("video_total_pixels", VideoTotalPixels),
        ("static_threshold", StaticThreshold),
    )),
)  # fmt: skip
SCAN_OPTIONS = (("recursive", Recursive, False), ("workers", Workers, None))
VERBOSITY_OPTIONS = (("quiet", Quiet, False), ("verbose", Verbose, False), ("version", Version, None))


class Shared:
    """The values of a command's shared option groups, as attributes (``opts.quiet``, ``opts.patch_size``)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def pipeline(self) -> dict:
        """The pipeline parameters given (``Params`` field names), for :func:`params_from`."""
        return {name: self.__dict__[name] for name, _, _ in PIPELINE_OPTIONS if name in self.__dict__}


def with_options(*groups, after: str | None = None):
    """Give a Typer command the option groups (and :data:`VERBOSITY_OPTIONS`, always, last).

    The groups' options come right after the command's own parameter ``after``
    (first when None), so ``--help`` lists them in one order everywhere. The
    command declares a keyword-only parameter ``opts`` and receives their
    values in it as a :class:`Shared`; logging is already set up as ``-q``/``-v``
    ask (:func:`setup_logging`; its level in ``opts.log_level``).

    Examples
    --------
    >>> @with_options(SCAN_OPTIONS, after="name")
    ... def cmd(name: str, force: bool = False, *, opts: Shared):
    ...     return name, opts.recursive, opts.quiet
    >>> list(inspect.signature(cmd).parameters)
    ['name', 'recursive', 'workers', 'force', 'quiet', 'verbose', 'version']
    """
    shared = [opt for group in groups for opt in group]

    def wrap(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "opts"]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        at = next((i + 1 for i, p in enumerate(own) if p.name == after), 0)
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
            for name, kind, default in (*shared, *VERBOSITY_OPTIONS)
        ]
        names = {p.name for p in added}

        @functools.wraps(command)
        def with_shared(**values):
            opts = Shared({name: values.pop(name) for name in list(values) if name in names})
            opts.log_level = setup_logging(opts.quiet, opts.verbose)
            return command(**values, opts=opts)

        params = own[:at] + added[: len(shared)] + own[at:] + added[len(shared) :]
        with_shared.__signature__ = inspect.Signature(params)
        with_shared.__annotations__ = {p.name: p.annotation for p in params}
        return with_shared

    return wrap


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


def start_progress(console, total: int | None, label: str = "images", elapsed: bool = False):
    """A live progress bar of images on ``console`` (transient): ``(progress, task)``.

    Columns: ``label``, the bar, done/total, the rate (task field ``rate``),
    and the time elapsed (``elapsed``) or remaining.
    """
    from rich import progress as rp

    clock = rp.TimeElapsedColumn() if elapsed else rp.TimeRemainingColumn()
    columns = (rp.TextColumn(label), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[rate]}"), clock)
    progress = rp.Progress(*columns, console=console, transient=True)
    progress.start()
    return progress, progress.add_task("images", total=total, rate="")


@contextmanager
def usage_errors(view=None):
    """Inside, a :class:`ParameterError` or :class:`MissingExtraError` becomes one line and exit 2; ``view`` stops.

    Examples
    --------
    >>> with usage_errors():
    ...     raise ParameterError("bins must be an integer >= 1, got 0")
    Traceback (most recent call last):
    ...
    typer.exceptions.Exit: 2
    """
    try:
        yield
    except (ParameterError, MissingExtraError) as exc:
        raise usage_error(str(exc)) from None
    finally:
        if view is not None:
            view.stop()


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


def request_from(values):
    """``(Params, runs)`` from a command's option values (a :class:`Shared`, or a dict such as ``locals()``).

    Combines :func:`params_from`, :func:`runs_from` (with the params' scale
    count and measure) and :func:`warn_unused`; a bad value raises
    :class:`~aptviz.errors.ParameterError`.
    """
    values = vars(values) if isinstance(values, Shared) else values
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
