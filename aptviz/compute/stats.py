"""Typed results: what one selection, one image and one run produced.

Dataclasses inside the library; dictionaries only at the JSON edge
(``to_dict()`` writes stats.json, ``from_dict()`` reads it back for resuming).
Field order is the key order of stats.json, so adding a number to the output
is one field here (with a default, so older stats.json files still load).
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum

from aptviz.compute.params import Params, RunSpec
from aptviz.compute.tokens import token_counts

__all__ = [
    "BudgetInfo",
    "ImportanceSummary",
    "ImageInfo",
    "ImageResult",
    "ImageStats",
    "SelectionStats",
    "TimeAxis",
]



OCR_FIELDS = ("ocr_apt", "ocr_uniform", "ocr_uniform_llm")  # SelectionStats' --ocr numbers
VIDEO_SELECTION_FIELDS = (
    "static_vit_tokens", "static_llm_tokens", "tubelet_vit_tokens", "tubelet_llm_tokens",
    "tubelet_static_vit_tokens", "tubelet_static_llm_tokens", "tubelet_uniform_llm_tokens",
)  # fmt: skip


def _json(value):
    """A value as JSON data: dataclasses via ``to_dict``, int keys as strings, tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def _to_dict(obj) -> dict:
    return {f.name: _json(getattr(obj, f.name)) for f in fields(obj)}


def _known(cls, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}




@dataclass(frozen=True)
class BudgetInfo:
    """How the budget method met its token budget (docs/pipeline.md §1.4).

    Also readable as a mapping (``info["k"]``), as in the first milestone.

    Examples
    --------
    >>> info = BudgetInfo(0.5, 64, 4, 32, 9, 31)
    >>> info.k, info["tokens"], info.to_dict()["budget"]
    (9, 31, 32)
    """

    alpha: float
    base_small_tokens: int
    base_tokens: int
    budget: int
    k: int
    tokens: int

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> BudgetInfo | None:
        return None if data is None else cls(**_known(cls, data))


@dataclass
class SelectionStats:
    """The numbers of one selection on one image (an element of stats.json ``selections``)."""

    method: str
    alpha: float | None
    thresholds: list[float | None] | None
    tokens_by_scale: dict[int, int]
    tokens: int
    base_small_tokens: int
    retention: float
    target_retention: float | None
    # the measure the selection ran on, and its aggregate (None for entropy): Params' unless several were run
    importance: str | None = None
    aggregate: str | None = None
    # Qwen2-VL's two ends (docs/qwen2vl.md): ViT tokens = tokens; LLM tokens after the 2x2 merger
    vit_tokens: int | None = None
    llm_tokens: int | None = None
    llm_tokens_uniform: int | None = None
    llm_retention: float | None = None
    budget_info: BudgetInfo | None = None
    # the model's view (SPEC §8): PSNR in dB against the resized image, None when identical
    psnr_apt: float | None = None
    uniform_vit_tokens: int | None = None
    uniform_size: list[int] | None = None  # [W, H] plain Qwen2-VL resizes to at max_pixels = tokens * P * P
    psnr_uniform: float | None = None
    # SSIM (scikit-image's definition, docs/pipeline.md) of the same two views against the resized image
    ssim_apt: float | None = None
    ssim_uniform: float | None = None
    # --ocr (SPEC 17): Tesseract's character accuracy (1 - CER) on the views against the resized image;
    # None without text; in stats.json only when the run asked for it (ImageStats.to_dict)
    ocr_apt: float | None = None
    ocr_uniform: float | None = None
    ocr_uniform_llm: float | None = None
    # videos only (docs/video.md), absent for images: totals with the static rule, and one entry per tubelet
    static_vit_tokens: int | None = None
    static_llm_tokens: int | None = None
    tubelet_vit_tokens: list[int] | None = None
    tubelet_llm_tokens: list[int] | None = None
    tubelet_static_vit_tokens: list[int] | None = None
    tubelet_static_llm_tokens: list[int] | None = None
    tubelet_uniform_llm_tokens: list[int] | None = None
    # the baseline at equal LLM tokens (SPEC §17): max_pixels = llm_tokens * (P*m)**2, same resize and display
    llm_uniform_tokens: int | None = None  # its LLM tokens (<= llm_tokens)
    llm_uniform_size: list[int] | None = None  # [W, H]
    psnr_uniform_llm: float | None = None
    ssim_uniform_llm: float | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def spec_key(self) -> dict:
        """The selection's identity, comparable with :meth:`RunSpec.key`."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "thresholds": self.thresholds if self.method == "v1" else None,
        }

    def matches(self, spec: RunSpec, params: Params | None = None) -> bool:
        """Whether this is the result of ``spec`` (run with ``params``' measure unless the spec has its own)."""
        key = spec.key()
        if spec.importance is not None:
            return {**self.spec_key, "importance": self.importance, "aggregate": self.aggregate} == key
        if params is not None and self.importance is not None and self.importance != params.importance:
            return False
        return self.spec_key == key

    def to_dict(self) -> dict:
        out = _to_dict(self)
        for name in VIDEO_SELECTION_FIELDS:
            if out[name] is None:
                del out[name]
        return out

    def with_token_counts(self, patch_size: int, merge_size: int) -> SelectionStats:
        """Fill ``vit_tokens`` and the LLM numbers from ``tokens_by_scale`` (in place; returns self)."""
        counts = token_counts(self.tokens_by_scale, self.base_small_tokens, patch_size, merge_size)
        self.vit_tokens = counts.vit_tokens
        self.llm_tokens = counts.llm_tokens
        self.llm_tokens_uniform = counts.llm_tokens_uniform
        self.llm_retention = counts.llm_retention
        return self

    @classmethod
    def from_dict(cls, data: dict) -> SelectionStats:
        values = _known(cls, data)
        values["tokens_by_scale"] = {int(k): v for k, v in data["tokens_by_scale"].items()}
        values["budget_info"] = BudgetInfo.from_dict(data.get("budget_info"))
        return cls(**values)


@dataclass(frozen=True)
class ImageInfo:
    """The input image: where it came from and its sizes ``[width, height]``."""

    path: str
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    frames: int = 1
    first_frame_only: bool = False
    source_mode: str | None = None
    # the input file's identity (docs/pipeline.md, trust): resume trusts a folder only for the same file
    resolved_path: str | None = None
    size_bytes: int | None = None
    mtime_ns: int | None = None

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ImageInfo:
        values = _known(cls, data)
        values["original_size"] = tuple(data["original_size"])
        values["resized_size"] = tuple(data["resized_size"])
        return cls(**values)


@dataclass(frozen=True)
class TimeAxis:
    """The time axis of an analysis: 1 frame for an image; a video's sampled frames and tubelets.

    Only ``frames`` and ``tubelets`` are set for an image; stats.json leaves
    the video fields out when None.
    """

    frames: int = 1
    tubelets: int = 1
    fps: float | None = None  # frames sampled per second of video
    video_fps: float | None = None  # the file's frame rate
    total_frames: int | None = None  # frames in the file (decoded)
    frame_indices: list[int] | None = None
    tubelet_seconds: list[float] | None = None  # start time of every tubelet
    static_threshold: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in _to_dict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict | None) -> TimeAxis | None:
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"stats.json: time must be an object, got {type(data).__name__}")
        return None if data is None else cls(**_known(cls, data))


@dataclass(frozen=True)
class ImportanceSummary:
    """Range and mean of one importance map over its non-PAD cells (None when it has none)."""

    min: float | None
    mean: float | None
    max: float | None
    pad_cells: int

    def to_dict(self) -> dict:
        return _to_dict(self)


@dataclass
class ImageStats:
    """Everything stats.json holds for one image.

    ``entropy`` holds the per-scale summaries of the importance maps, whatever
    the measure (``params.importance``); :attr:`importance` is the same. In
    stats.json they are the ``"importance"`` block, with the ``"entropy"``
    alias beside it while the measure is entropy.
    """

    aptviz_version: str
    image: ImageInfo
    params: Params
    grid: dict[int, tuple[int, int]]
    entropy: dict[int, ImportanceSummary]
    selections: list[SelectionStats]
    importance_histogram: dict | None = None  # per scale: counts over equal bins (batch percentiles)
    # runs of several measures only: the per-scale summaries and histograms of every measure, by name
    importance_by_measure: dict[str, dict[int, ImportanceSummary]] | None = None
    importance_histograms: dict[str, dict] | None = None
    render: dict | None = None  # how the pictures were drawn (RenderOptions), None before written
    files: dict | None = None  # None until the files are written
    time: TimeAxis | None = None  # frames and tubelets (t = 1 for an image); None in stats written before it
    # the uniform baseline at a sweep of sizes: [{"size", "vit_tokens", "llm_tokens", "retention", "psnr", "ssim"}, ...]
    uniform_sweep: list[dict[str, int | float | list[int] | None]] | None = None

    @property
    def scales(self) -> list[int]:
        return list(self.grid)

    @property
    def measures(self) -> list[str]:
        """The measures the selections ran on, in order (one unless several were run)."""
        return list(self.importance_by_measure or [self.params.importance])

    @property
    def importance(self) -> dict[int, ImportanceSummary]:
        """Per-scale summaries of the importance maps (an alias of ``entropy``)."""
        return self.entropy

    def to_dict(self) -> dict:
        """The stats.json content (``files`` left out until written)."""
        out = {}
        for key, value in _to_dict(self).items():
            if key == "entropy":
                if self.params.importance == "entropy":
                    out["entropy"] = value
                out["importance"] = value
            else:
                out[key] = value
        for key in ("importance_histogram", "importance_by_measure", "importance_histograms", "render", "files",
                    "time", "uniform_sweep"):
            if getattr(self, key) is None:
                del out[key]
        if not self.params.ocr:
            for sel in out["selections"]:
                for key in OCR_FIELDS:
                    del sel[key]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ImageStats:
        """Read stats.json content back; raises KeyError/TypeError/ValueError when it is malformed."""
        return cls(
            aptviz_version=data["aptviz_version"],
            image=ImageInfo.from_dict(data["image"]),
            params=Params(**_known(Params, data["params"])),
            grid={int(k): tuple(v) for k, v in data["grid"].items()},
            entropy={
                int(k): ImportanceSummary(**_known(ImportanceSummary, v))
                for k, v in (data["importance"] if "importance" in data else data["entropy"]).items()
            },
            selections=[SelectionStats.from_dict(s) for s in data["selections"]],
            importance_histogram=data.get("importance_histogram"),
            importance_by_measure={
                m: {int(k): ImportanceSummary(**_known(ImportanceSummary, v)) for k, v in per.items()}
                for m, per in data["importance_by_measure"].items()
            } if data.get("importance_by_measure") else None,
            importance_histograms=data.get("importance_histograms"),
            render=data.get("render"),
            files=data.get("files"),
            time=TimeAxis.from_dict(data.get("time")),
            uniform_sweep=data.get("uniform_sweep"),
        )._checked()._with_token_counts()

    def _with_token_counts(self) -> ImageStats:
        """Token counts for selections read from a stats.json written before they existed."""
        for sel in self.selections:
            if sel.vit_tokens is None:
                sel.with_token_counts(self.params.patch_size, self.params.merge_size)
        return self

    def _checked(self) -> ImageStats:
        """Self, or TypeError when a value read from stats.json has the wrong type (``"frames": "2"``).

        A stats.json edited by hand, or by another program, must not reach the
        summary, the figures or the report: resume redoes such an image and the
        summary leaves its folder out (docs/pipeline.md, trust).
        """
        from aptviz.compute.histogram import is_histogram

        bad = _wrong_field(self.image) or _wrong_field(self.params)
        bad = bad or next((f"selection {s.method!r}: {b}" for s in self.selections if (b := _wrong_field(s))), None)
        bad = bad or (f"time: {b}" if self.time is not None and (b := _wrong_field(self.time)) else None)
        if bad is None and not (isinstance(self.aptviz_version, str) and _conforms(self.grid, _GRID)):
            bad = "grid"
        for name in ("entropy", "importance_by_measure", "render", "uniform_sweep"):
            hint = _hints(ImageStats)[name]
            if bad is None and not _conforms(getattr(self, name), hint):
                bad = name
        several = self.importance_histograms
        if bad is None and not (self.importance_histogram is None or is_histogram(self.importance_histogram)):
            bad = "importance_histogram"
        if bad is None and several is not None and not (
            isinstance(several, dict) and all(isinstance(m, str) and is_histogram(h) for m, h in several.items())
        ):
            bad = "importance_histograms"
        if bad is None and self.files is not None and not _text_tree(self.files):
            bad = "files"
        bad = bad or self._out_of_range()
        if bad is not None:
            raise TypeError(f"stats.json: wrong type or value of {bad}")
        return self

    def _out_of_range(self) -> str | None:
        """The first count or size that cannot be (a size or frame count below 1, a negative token count,
        no finest cell: the summary divides by it), or None. Called once the types are right."""
        img = self.image
        if min(*img.original_size, *img.resized_size, img.frames) < 1:
            return "image sizes"
        for sel in self.selections:
            counts = [sel.tokens, *sel.tokens_by_scale.values(), sel.vit_tokens, sel.llm_tokens]
            counts += [sel.llm_tokens_uniform, sel.uniform_vit_tokens]
            if sel.base_small_tokens < 1 or min(c for c in counts if c is not None) < 0:
                return f"selection {sel.method!r}: token counts"
        return None


_GRID = dict[int, tuple[int, int]]
"""The type of ImageStats.grid: finest-first scales to ``(rows, columns)``."""


def _conforms(value, hint) -> bool:
    """Whether a value read from JSON has the type ``hint`` (a field annotation).

    ``float`` takes finite floats and ints, ``int`` no bool, both within 64
    bits; dataclasses are checked field by field.

    Examples
    --------
    >>> _conforms([1, 2.5, None], list[float | None]), _conforms("2", int), _conforms(float("nan"), float)
    (True, False, False)
    """
    if hint is int:  # 64 bits, as Parquet and NumPy hold them (a 400-digit int would overflow a float mean)
        return type(value) is int and -(2**63) <= value < 2**63
    if hint is float:
        return (type(value) is float and math.isfinite(value)) or (type(value) is int and -(2**63) <= value < 2**63)
    if hint is str or hint is bool:
        return type(value) is hint
    origin, args = _shape(hint)
    if origin in (typing.Union, types.UnionType):
        return (value is None and type(None) in args) or any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_conforms, value, args))
    if origin is dict:
        key, item = args
        return isinstance(value, dict) and all(_conforms(k, key) and _conforms(v, item) for k, v in value.items())
    if is_dataclass(hint):
        return isinstance(value, hint) and _wrong_field(value) is None
    return isinstance(value, origin or hint)


def _wrong_field(obj) -> str | None:
    """The name of the first field of dataclass ``obj`` whose value does not have its annotated type, or None."""
    return next((name for name, hint in _hints(type(obj)).items() if not _conforms(getattr(obj, name), hint)), None)


@functools.cache
def _shape(hint) -> tuple:
    """``(typing.get_origin(hint), typing.get_args(hint))``, once per annotation."""
    return typing.get_origin(hint), typing.get_args(hint)


@functools.cache
def _hints(cls) -> dict:
    """The resolved annotations of a dataclass's fields (``typing.get_type_hints``, once per class)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _text_tree(value) -> bool:
    """Whether ``value`` is text, or a dict of such (stats.json ``files``)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _text_tree(v) for k, v in value.items())
    return isinstance(value, str)


class ImageResult(dict):
    """What :func:`aptviz.analyze` returns: the typed :class:`ImageStats`, readable as the stats.json dict too.

    ``result.stats`` (and any of its fields as an attribute: ``result.selections``,
    ``result.image``) are typed; ``result["selections"]`` and ``result.to_dict()``
    are the stats.json content (``files`` aside), as ``analyze`` returned before.

    Examples
    --------
    >>> s = ImageStats("0", ImageInfo("a.png", (28, 28), (28, 28)), Params(), {}, {}, [])
    >>> r = ImageResult(s)
    >>> r.image.path, r["image"]["path"], r.to_dict() == r, type(r.to_dict()).__name__
    ('a.png', 'a.png', True, 'dict')
    """

    def __init__(self, stats: ImageStats) -> None:
        super().__init__(stats.to_dict())
        self.stats = stats

    def __getattr__(self, name: str):
        if name == "stats":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.stats, name)

    def __reduce__(self):
        return ImageResult, (self.stats,)

    def to_dict(self) -> dict:
        """The stats.json content as a plain dict (``files`` aside)."""
        return dict(self)
