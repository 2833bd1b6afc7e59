"""Parameters and selections: the one place where they are named and validated.

* :class:`Method` and :class:`Device` are the choices (the command line uses
  them as its option types too);
* :class:`Params` (pipeline parameters) and :class:`RunSpec` (one selection)
  validate themselves when built, so every entry point -- the command line,
  :func:`aptviz.analyze`, :func:`aptviz.select_patches`, :func:`aptviz.run` --
  gives the same error for the same bad value;
* :func:`parse_method_spec` / :func:`build_runs` turn ``-m v2:0.8,1 -m v1``
  style text into RunSpecs.

Adding a selection method: a member of :class:`Method`, its alpha rule in
:meth:`RunSpec.__post_init__`, and its algorithm in ``selection.py``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

from aptviz.compute.presets import Model, ModelPreset, parse_model, preset
from aptviz.compute.resize import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from aptviz.errors import ParameterError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Aggregate",
    "Device",
    "Engine",
    "Measure",
    "Method",
    "Model",
    "Params",
    "RunSpec",
    "Statistic",
    "VIDEO_FIELDS",
    "build_runs",
    "check_aggregate",
    "default_thresholds",
    "expand_runs",
    "format_alpha",
    "parse_aggregate",
    "parse_floats",
    "parse_measure",
    "params_and_measures",
    "parse_measures",
    "split_measures",
    "parse_method",
    "parse_method_spec",
]

DEFAULT_THRESHOLDS = (3.0, 2.0)
MAX_BINS = 4096  # histograms take cells x bins integers: keep them within memory
MAX_COARSEST = 1024  # largest patch side in pixels


class Choice(str, Enum):
    """A choice among named values (an option's type on the command line); ``str()`` is the name."""

    def __str__(self) -> str:
        return self.value


class Method(Choice):
    """Patch selection methods (docs/pipeline.md §1.4)."""

    v1 = "v1"
    v2 = "v2"
    budget = "budget"

    @property
    def takes_alpha(self) -> bool:
        """Whether the method uses ``alpha`` (v1 uses fixed thresholds instead)."""
        return self is not Method.v1


class Device(Choice):
    """Where entropy and selection run; ``auto`` picks CUDA when present."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(Choice):
    """Where ``aptviz stats`` runs the per-image work: the local worker pool, or Ray Data."""

    local, ray = "local", "ray"


class Statistic(Choice):
    """How calibration summarises the per-image retentions (``aptviz calibrate --statistic``)."""

    mean, median = "mean", "median"


class Measure(Choice):
    """What a cell's importance measures (``--importance``; see :mod:`aptviz.compute.importance`)."""

    entropy = "entropy"
    laplacian = "laplacian"
    upsample_mse = "upsample-mse"

    @property
    def takes_aggregate(self) -> bool:
        """Whether per-pixel values are aggregated per cell (entropy is a statistic of the whole cell)."""
        return self is not Measure.entropy


class Aggregate(Choice):
    """How a measure's per-pixel values become one value per cell (``--aggregate``)."""

    mean = "mean"
    max = "max"
    std = "std"


def _closest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def parse_method(text: str | Method) -> Method:
    """A :class:`Method` from its name, in any case.

    Examples
    --------
    >>> parse_method("Budget")
    <Method.budget: 'budget'>
    >>> parse_method("budgte")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: unknown method 'budgte' (did you mean 'budget'?); choose v1, v2 or budget
    """
    return _parse_choice(Method, text, "method")


def _choices(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]


def _parse_choice(kind: type[Enum], text, what: str, dashes: bool = False):
    """The member of ``kind`` named ``text`` in any case (``_`` read as ``-`` when ``dashes``); else one line."""
    if isinstance(text, kind):
        return text
    name = str(getattr(text, "value", text)).strip().lower()
    name = name.replace("_", "-") if dashes else name
    names = [m.value for m in kind]
    try:
        return kind(name)
    except ValueError:
        raise ParameterError(f"unknown {what} {str(text)!r}{_closest(name, names)}; choose {_choices(names)}") from None


def parse_measure(text: str | Measure) -> Measure:
    """A :class:`Measure` from its name, in any case (``upsample_mse`` also works).

    Examples
    --------
    >>> parse_measure("Laplacian"), parse_measure("upsample_mse")
    (<Measure.laplacian: 'laplacian'>, <Measure.upsample_mse: 'upsample-mse'>)
    >>> parse_measure("sobel")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: unknown importance measure 'sobel'; choose entropy, laplacian or upsample-mse
    """
    return _parse_choice(Measure, text, "importance measure", dashes=True)


def parse_measures(value) -> list[Measure]:
    """Several measures: ``"entropy,upsample-mse"``, a list of names (each may hold commas), or one Measure.

    Order kept, duplicates dropped.

    Examples
    --------
    >>> [m.value for m in parse_measures(["entropy,upsample_mse", "laplacian", "entropy"])]
    ['entropy', 'upsample-mse', 'laplacian']
    >>> parse_measures(" , ")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: --importance: give at least one measure (entropy, laplacian or upsample-mse)
    """
    items = [value] if isinstance(value, (str, Measure)) or value is None else list(value)
    names = [n for item in items for n in str(getattr(item, "value", item) or "").split(",") if n.strip()]
    out: list[Measure] = []
    for name in names:
        m = parse_measure(name)
        if m not in out:
            out.append(m)
    if not out:
        raise ParameterError(f"--importance: give at least one measure ({_choices([m.value for m in Measure])})")
    return out


def split_measures(importance, aggregate=None) -> tuple[str, str | None, list[str]]:
    """``(Params.importance, Params.aggregate, measures)`` for one or several measures.

    One measure: as :class:`Params` takes it (``--aggregate`` is checked
    against it). Several: ``Params`` records the first, the selections carry
    each their own (:class:`RunSpec` ``importance`` and ``aggregate``), and
    ``--aggregate`` applies to the measures that take one (entropy ignores it).

    Examples
    --------
    >>> split_measures("entropy")
    ('entropy', None, ['entropy'])
    >>> split_measures(["entropy", "laplacian"], "max")
    ('entropy', None, ['entropy', 'laplacian'])
    """
    measures = parse_measures(importance)
    first = measures[0]
    if len(measures) > 1 and aggregate is not None:
        parse_aggregate(aggregate)  # a bad name is still an error
        aggregate = aggregate if first.takes_aggregate else None
    return first.value, None if aggregate is None else str(getattr(aggregate, "value", aggregate)), [
        m.value for m in measures
    ]


def parse_aggregate(text: str | Aggregate) -> Aggregate:
    """An :class:`Aggregate` from its name, in any case.

    Examples
    --------
    >>> parse_aggregate("STD")
    <Aggregate.std: 'std'>
    """
    return _parse_choice(Aggregate, text, "aggregate")


def check_aggregate(measure: Measure, aggregate: str | Aggregate | None) -> Aggregate | None:
    """The aggregate a measure uses: ``mean`` by default, None for entropy (which takes none).

    Examples
    --------
    >>> check_aggregate(Measure.laplacian, None), check_aggregate(Measure.entropy, None)
    (<Aggregate.mean: 'mean'>, None)
    >>> check_aggregate(Measure.entropy, "max")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: --aggregate max applies to laplacian and upsample-mse, not to entropy
    """
    if not measure.takes_aggregate:
        if aggregate is not None and parse_aggregate(aggregate) is not Aggregate.mean:
            raise ParameterError(
                f"--aggregate {parse_aggregate(aggregate).value} applies to laplacian and upsample-mse, not to entropy"
            )
        return None
    return Aggregate.mean if aggregate is None else parse_aggregate(aggregate)


def default_thresholds(
    method: str | Method,
    thresholds: Sequence[float] | None,
    measure: str | Measure = Measure.entropy,
    num_scales: int = 3,
) -> tuple[float, ...] | None:
    """v1's thresholds: as given, else the default for entropy; the other measures have none.

    The entropy default is ``3, 2`` bits for three scales; with ``num_scales``
    scales, fewer scales take the first ones, more scales repeat the last
    (2 bits) for every further scale.

    Examples
    --------
    >>> default_thresholds("v1", None), default_thresholds("v1", [1, 0.5], "laplacian")
    ((3.0, 2.0), (1.0, 0.5))
    >>> default_thresholds("v1", None, num_scales=1), default_thresholds("v1", None, num_scales=5)
    ((), (3.0, 2.0, 2.0, 2.0))
    >>> default_thresholds("budget", None, "upsample-mse") is None
    True
    """
    if thresholds is not None:
        return tuple(float(t) for t in thresholds)
    if parse_method(method) is not Method.v1:
        return None
    measure = parse_measure(measure)
    if measure is not Measure.entropy:
        raise ParameterError(f"v1 has no default thresholds for {measure.value}: give --thresholds")
    last = DEFAULT_THRESHOLDS[-1]
    return tuple(DEFAULT_THRESHOLDS[i] if i < len(DEFAULT_THRESHOLDS) else last for i in range(max(0, num_scales - 1)))


def parse_device(text: str | Device) -> str:
    """Normalize a device name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (any case).

    Examples
    --------
    >>> parse_device("CUDA:1"), parse_device(Device.auto)
    ('cuda:1', 'auto')
    """
    name = getattr(text, "value", text)
    name = str(name or "auto").strip().lower()
    if name in {d.value for d in Device}:
        return name
    if name.startswith("cuda:") and name[5:].isdigit():
        return name
    raise ParameterError(
        f"unknown device {str(text)!r}{_closest(name, [d.value for d in Device])}; choose auto, cpu or cuda"
    )


def parse_floats(text: str, what: str = "values") -> tuple[float, ...]:
    """Comma- (or space-) separated numbers.

    Examples
    --------
    >>> parse_floats("3,2"), parse_floats("0.8, 1,1.2")
    ((3.0, 2.0), (0.8, 1.0, 1.2))
    """
    parts = [p for p in str(text).replace(" ", ",").split(",") if p]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ParameterError(f"{what}: expected comma-separated numbers such as 3,2, got {text!r}") from None


def format_alpha(alpha: float | None) -> str:
    """An alpha as given (shortest exact form), ``-`` for none.

    Examples
    --------
    >>> format_alpha(1.0), format_alpha(1.0000001), format_alpha(None)
    ('1.0', '1.0000001', '-')
    """
    return "-" if alpha is None else repr(float(alpha))


@dataclass(frozen=True)
class Params:
    """Image-pipeline parameters, recorded in stats.json ``params``.

    Validated when built: an out-of-range value raises :class:`ParameterError`.
    ``device`` may be ``"auto"``; :meth:`resolved` turns it into ``cpu`` or
    ``cuda`` (the pipeline does so itself before computing).

    Examples
    --------
    >>> Params().factor, Params().scales
    (28, [14, 28, 56])
    >>> Params(bins=0)
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: bins must be an integer >= 1, got 0

    ``importance`` is the measure (``entropy``, ``laplacian``,
    ``upsample-mse``); ``aggregate`` its per-cell reduction, ``mean`` unless
    given, and None for entropy, which takes none:

    >>> Params(importance="laplacian").aggregate, Params().aggregate
    ('mean', None)

    ``model`` (``qwen2-vl``, ``qwen2.5-vl`` or ``qwen3-vl``; see
    :mod:`aptviz.compute.presets`) sets ``patch_size``, ``merge_size`` and
    ``temporal_patch_size`` where they are not given (None), and the
    normalization of exported tokens; a value given explicitly wins. The
    fields always hold the effective values once built (stats.json records
    them), so ``dataclasses.replace(p, model=...)`` keeps ``p``'s sizes: build
    a new ``Params`` to switch models.

    >>> q = Params(model="qwen3-vl"); q.scales, q.factor, q.to_dict()["model"]
    ([16, 32, 64], 32, 'qwen3-vl')
    >>> Params(model="qwen3-vl", patch_size=14).scales
    [14, 28, 56]
    """

    patch_size: int | None = None
    merge_size: int | None = None
    temporal_patch_size: int | None = None
    num_scales: int = 3
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    bins: int = 512
    device: str = "cpu"
    importance: str = "entropy"
    aggregate: str | None = None
    model: str = "qwen2-vl"
    ocr: bool = False  # --ocr: Tesseract's character accuracy on every view (recorded only when on)
    # videos only (docs/video.md): sampling, per-frame pixel bounds (None: u-based defaults), static tokens.
    # stats.json records them only when they differ from these defaults, so image outputs do not change.
    fps: float = 2.0
    nframes: int | None = None
    video_min_pixels: int | None = None
    video_max_pixels: int | None = None
    video_total_pixels: int | None = None
    static_threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ocr, bool):
            raise ParameterError(f"ocr must be true or false, got {self.ocr!r}")
        model = parse_model(self.model)
        object.__setattr__(self, "model", model.value)
        defaults = preset(model)
        for name in ("patch_size", "merge_size", "temporal_patch_size"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        for name in ("patch_size", "merge_size", "temporal_patch_size", "num_scales", "min_pixels", "max_pixels"):
            _check_int(name, getattr(self, name))
        _check_int("bins", self.bins)
        if self.bins > MAX_BINS:
            raise ParameterError(f"bins must be <= {MAX_BINS}, got {self.bins}")
        coarsest = self.patch_size * 2 ** (self.num_scales - 1) if self.num_scales <= 16 else None
        if coarsest is None or coarsest > MAX_COARSEST:
            raise ParameterError(
                f"the coarsest patch (patch-size * 2**(num-scales - 1)) must be <= {MAX_COARSEST} px, "
                f"got patch-size {self.patch_size} with {self.num_scales} scales"
            )
        if self.min_pixels > self.max_pixels:
            raise ParameterError(f"min-pixels ({self.min_pixels}) must not exceed max-pixels ({self.max_pixels})")
        _check_factor_fits(self.patch_size, self.merge_size, self.max_pixels)
        object.__setattr__(self, "device", parse_device(self.device))
        measure = parse_measure(self.importance)
        aggregate = check_aggregate(measure, self.aggregate)
        object.__setattr__(self, "importance", measure.value)
        object.__setattr__(self, "aggregate", None if aggregate is None else aggregate.value)
        self._check_video()

    def _check_video(self) -> None:
        """Validate the video fields (sampling rate, frame count, pixel bounds, static threshold)."""
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps < math.inf:
            raise ParameterError(f"fps must be a number > 0, got {self.fps!r}")
        object.__setattr__(self, "fps", float(self.fps))
        if self.nframes is not None:
            _check_int("nframes", self.nframes, 2)
            if self.fps != Params.__dataclass_fields__["fps"].default:  # qwen-vl-utils takes one or the other
                raise ParameterError("give --fps or --nframes, not both")
        for name in ("video_min_pixels", "video_max_pixels", "video_total_pixels"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name))
        t = self.static_threshold
        if t is not None:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf:
                raise ParameterError(f"static-threshold must be a gray level >= 0, got {t!r}")
            object.__setattr__(self, "static_threshold", float(t))

    @property
    def preset(self) -> ModelPreset:
        """The :class:`~aptviz.compute.presets.ModelPreset` of ``model`` (its mean/std, window size...)."""
        return preset(self.model)

    @property
    def attention_window(self) -> int | None:
        """Side in px of the vision tower's attention windows, or None where it attends to the whole image.

        Qwen2.5-VL attends within 112 px windows: ``112 // (patch * merge)``
        merge units a side, as its vision tower computes them (4 x 28 px).

        Examples
        --------
        >>> Params(model="qwen2.5-vl").attention_window, Params(model="qwen3-vl").attention_window
        (112, None)
        """
        window = self.preset.window_size
        return None if window is None else window // self.factor * self.factor

    @property
    def measure(self) -> Measure:
        """The importance measure as a :class:`Measure`."""
        return Measure(self.importance)

    @property
    def factor(self) -> int:
        """``patch_size * merge_size``: both resized sides are multiples of it."""
        return self.patch_size * self.merge_size

    @property
    def scales(self) -> list[int]:
        """Patch size of every scale, finest first."""
        return [self.patch_size * 2**i for i in range(self.num_scales)]

    def resolved(self) -> Params:
        """The same parameters with ``auto`` turned into ``cpu`` or ``cuda``.

        Raises :class:`ParameterError` for ``cuda`` without a GPU, and
        :class:`aptviz.errors.MissingExtraError` for ``cuda`` without torch.

        Examples
        --------
        >>> Params(device="cpu").resolved().device
        'cpu'
        """
        from aptviz.compute.device import resolve_device

        device = resolve_device(self.device)
        return self if device == self.device else replace(self, device=device)

    def to_dict(self) -> dict:
        """The ``params`` object of stats.json: ``model`` first, then the effective values.

        Examples
        --------
        >>> list(Params().to_dict())[:3]
        ['model', 'patch_size', 'merge_size']
        """
        out = asdict(self)
        if not out["ocr"]:  # recorded only when on: the params of other runs stay as they were
            del out["ocr"]
        for name in VIDEO_FIELDS:  # recorded only when set: image outputs stay as they were
            if out[name] == _VIDEO_DEFAULTS[name]:
                del out[name]
        return {"model": out.pop("model"), **out}


VIDEO_FIELDS = ("fps", "nframes", "video_min_pixels", "video_max_pixels", "video_total_pixels", "static_threshold")
"""The :class:`Params` fields that only videos use."""

_VIDEO_DEFAULTS = {name: Params.__dataclass_fields__[name].default for name in VIDEO_FIELDS}


def params_and_measures(**params) -> tuple[Params, list[str]]:
    """:class:`Params` from keyword values whose ``importance`` may name several measures (a list, or
    ``"entropy,laplacian"``), and the measures: Params records the first (see
    :func:`aptviz.compute.params.split_measures`).

    Examples
    --------
    >>> p, measures = params_and_measures(importance=["laplacian", "entropy"], aggregate="max")
    >>> p.importance, p.aggregate, measures
    ('laplacian', 'max', ['laplacian', 'entropy'])
    """
    importance, aggregate, measures = split_measures(params.get("importance") or "entropy", params.get("aggregate"))
    return Params(**{**params, "importance": importance, "aggregate": aggregate}), measures


def _check_factor_fits(patch_size: int, merge_size: int, max_pixels: int) -> None:
    """ParameterError when one resize unit (``patch_size * merge_size`` px square) is more than ``max_pixels``.

    smart_resize makes both sides multiples of that unit, at least one unit
    each: with ``--merge-size 1000`` every image became 14000 x 14000 pixels
    (196 million, 7 GB), whatever ``--max-pixels`` said.

    Examples
    --------
    >>> _check_factor_fits(14, 1000, 1003520)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: patch-size x merge-size is 14 x 1000 = 14000 px: one 14000x14000 unit is ...
    """
    factor = patch_size * merge_size
    if factor * factor > max_pixels:
        raise ParameterError(
            f"patch-size x merge-size is {patch_size} x {merge_size} = {factor} px: one {factor}x{factor} unit "
            f"is {factor * factor} pixels, more than max-pixels ({max_pixels})"
        )


def _check_int(name: str, value, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ParameterError(f"{name.replace('_', '-')} must be an integer >= {lo}, got {value!r}")


@dataclass(frozen=True)
class RunSpec:
    """One selection to run on every image: a method and its alpha or thresholds.

    Validated when built (``method`` may be given as text in any case). v1
    takes thresholds and no alpha; v2 and budget take an alpha and no
    thresholds. ``importance`` (and its ``aggregate``) is set only in runs of
    several measures: the selection then runs on that measure's maps and its
    label names the measure; otherwise it runs on the measure of
    :class:`Params`.

    Examples
    --------
    >>> RunSpec("Budget", 0.3)
    RunSpec(method=<Method.budget: 'budget'>, alpha=0.3, thresholds=None)
    >>> RunSpec("v1").thresholds
    (3.0, 2.0)
    >>> RunSpec("budget", 1.0000001)
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: budget alpha must be in [0, 1], got 1.0000001
    """

    method: Method
    alpha: float | None = None
    thresholds: tuple[float, ...] | None = None
    importance: str | None = field(default=None, repr=False)
    aggregate: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        method = parse_method(self.method)
        object.__setattr__(self, "method", method)
        if self.importance is not None:
            measure = parse_measure(self.importance)
            agg = check_aggregate(measure, self.aggregate if measure.takes_aggregate else None)
            object.__setattr__(self, "importance", measure.value)
            object.__setattr__(self, "aggregate", None if agg is None else agg.value)
        elif self.aggregate is not None:
            raise ParameterError("a selection's aggregate goes with its importance measure")
        if method is Method.v1:
            thr = DEFAULT_THRESHOLDS if self.thresholds is None else tuple(float(t) for t in self.thresholds)
            if any(math.isnan(t) for t in thr):
                raise ParameterError("thresholds must be numbers")
            if not all(math.isfinite(t) for t in thr):
                raise ParameterError(f"thresholds must be finite numbers, got {','.join(repr(t) for t in thr)}")
            object.__setattr__(self, "alpha", None)
            object.__setattr__(self, "thresholds", thr)
            return
        alpha = 1.0 if self.alpha is None else _as_float(self.alpha)
        if math.isnan(alpha) or math.isinf(alpha):
            raise ParameterError(f"alpha must be a finite number, got {format_alpha(alpha)}")
        if method is Method.budget and not 0.0 <= alpha <= 1.0:
            raise ParameterError(f"budget alpha must be in [0, 1], got {format_alpha(alpha)}")
        if method is Method.v2 and alpha < 0:
            raise ParameterError(f"v2 alpha must be >= 0, got {format_alpha(alpha)}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "thresholds", None)

    def check_scales(self, num_scales: int) -> RunSpec:
        """Raise :class:`ParameterError` unless v1 has one threshold per scale above the finest."""
        if self.thresholds is not None and len(self.thresholds) != num_scales - 1:
            raise ParameterError(
                f"--thresholds needs {num_scales - 1} value(s) for {num_scales} scales, got {len(self.thresholds)}"
            )
        return self

    @property
    def label(self) -> str:
        """File-name friendly id: ``v1``, ``v2_alpha1``, ``budget_alpha0.3``.

        The alpha is written in full (shortest exact form), so two different
        alphas never share a file name.

        Examples
        --------
        >>> RunSpec("budget", 0.1234567).label, RunSpec("v2", 1.0).label
        ('budget_alpha0.1234567', 'v2_alpha1')
        >>> RunSpec("budget", 0.3, importance="upsample-mse").label  # in a run of several measures
        'upsample-mse_budget_alpha0.3'
        """
        prefix = "" if self.importance is None else f"{self.importance}_"
        if self.alpha is None:
            return prefix + self.method.value
        text = repr(float(self.alpha))
        return f"{prefix}{self.method.value}_alpha{text[:-2] if text.endswith('.0') else text}"

    def key(self) -> dict:
        """What identifies this selection in stats.json (for resuming).

        Examples
        --------
        >>> RunSpec("v1").key()
        {'method': 'v1', 'alpha': None, 'thresholds': [3.0, 2.0]}
        """
        key = {
            "method": self.method.value,
            "alpha": self.alpha,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
        }
        if self.importance is not None:  # several measures; single-measure keys stay as they were
            key.update(importance=self.importance, aggregate=self.aggregate)
        return key


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"alpha must be a number, got {value!r}") from None


def parse_method_spec(text: str | Method) -> tuple[Method, tuple[float, ...] | None]:
    """``"v2:0.8,1"`` -> ``(Method.v2, (0.8, 1.0))``; a bare name has no alphas of its own.

    Examples
    --------
    >>> parse_method_spec("V2:0.8,1")
    (<Method.v2: 'v2'>, (0.8, 1.0))
    >>> parse_method_spec("budget")
    (<Method.budget: 'budget'>, None)
    """
    if isinstance(text, Method):
        return text, None
    name, sep, rest = str(text).partition(":")
    method = parse_method(name)
    if not sep:
        return method, None
    alphas = parse_floats(rest, f"alphas of {method.value}")
    if not alphas:
        raise ParameterError(f"{text!r}: give at least one alpha after the colon, e.g. {method.value}:0.3")
    if not method.takes_alpha:
        raise ParameterError(f"{method.value} takes no alpha (it uses --thresholds), got {text!r}")
    return method, alphas


def build_runs(
    methods: Sequence[str | Method] = (),
    alphas: Sequence[float | str] = (),
    thresholds: Sequence[float] | None = DEFAULT_THRESHOLDS,
    num_scales: int = 3,
    measure: str | Measure | Sequence[str | Measure] = Measure.entropy,
    aggregate: str | None = None,
) -> list[RunSpec]:
    """Every selection asked for, validated, in the order given, without duplicates.

    Parameters
    ----------
    methods : sequence of str or Method
        ``"v1"``, ``"v2"``, ``"budget"`` (any case), optionally with their own
        alphas: ``"v2:0.8,1,1.2"``. Empty: v1.
    alphas : sequence of float
        Alphas of the methods given without their own list (default 1.0).
    thresholds : sequence of float or None
        v1 thresholds, one per scale above the finest. None: the default of
        the measure for ``num_scales`` (entropy only, see
        :func:`default_thresholds`; v1 on another measure then raises
        :class:`ParameterError`).
    num_scales : int
        Number of scales (to check the threshold count).
    measure : str or Measure or sequence of them
        The importance measure the selections will run on. Several (a list,
        or ``"entropy,laplacian"``): every selection is run on each measure,
        measure by measure, and carries it (``RunSpec.importance``).
    aggregate : str, optional
        With several measures: the aggregate of those that take one (default mean).

    Returns
    -------
    list of RunSpec

    Examples
    --------
    >>> [r.label for r in build_runs(["v2:0.8,1.2", "budget", "v1"], [0.3])]
    ['v2_alpha0.8', 'v2_alpha1.2', 'budget_alpha0.3', 'v1']
    >>> [r.label for r in build_runs(["budget:0.3", "v2"], measure="entropy,upsample-mse")]
    ['entropy_budget_alpha0.3', 'entropy_v2_alpha1', 'upsample-mse_budget_alpha0.3', 'upsample-mse_v2_alpha1']
    """
    measures = parse_measures(measure)
    if len(measures) > 1:
        return [
            replace(spec, importance=m.value, aggregate=aggregate if m.takes_aggregate else None)
            for m in measures
            for spec in build_runs(methods, alphas, thresholds, num_scales, m)
        ]
    measure = measures[0]
    default_alphas = [_as_float(a) for a in alphas] or [1.0]
    runs: list[RunSpec] = []
    for text in list(methods) or [Method.v1]:
        method, own = parse_method_spec(text)
        if not method.takes_alpha:
            thr = default_thresholds(method, thresholds, measure, num_scales)
            specs = [RunSpec(method, None, thr).check_scales(num_scales)]
        else:
            specs = [RunSpec(method, a) for a in (own or default_alphas)]
        for spec in specs:
            if spec not in runs:
                runs.append(spec)
    return runs


def expand_runs(
    methods: Sequence[str | Method] = ("v1",),
    alphas: Sequence[float] = (1.0,),
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    num_scales: int = 3,
) -> list[RunSpec]:
    """Every (method, alpha) combination, validated; v1 takes no alpha.

    The first milestone's name for :func:`build_runs` (which also accepts
    ``"v2:0.8,1"`` style methods).

    Examples
    --------
    >>> [r.label for r in expand_runs(["v1", "budget"], [0.2, 0.4])]
    ['v1', 'budget_alpha0.2', 'budget_alpha0.4']
    """
    return build_runs(methods, alphas, thresholds, num_scales)
