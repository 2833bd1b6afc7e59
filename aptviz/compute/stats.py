"""Typed results: what one selection, one image and one run produced.

Dataclasses inside the library; dictionaries only at the JSON edge
(``to_dict()`` writes stats.json, ``from_dict()`` reads it back for resuming).
Field order is the key order of stats.json, so adding a number to the output
is one field here (with a default, so older stats.json files still load).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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
]



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
        return _to_dict(self)

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
        for key in ("importance_histogram", "importance_by_measure", "importance_histograms", "render", "files"):
            if getattr(self, key) is None:
                del out[key]
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
        )._with_token_counts()

    def _with_token_counts(self) -> ImageStats:
        """Token counts for selections read from a stats.json written before they existed."""
        for sel in self.selections:
            if sel.vit_tokens is None:
                sel.with_token_counts(self.params.patch_size, self.params.merge_size)
        return self








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
