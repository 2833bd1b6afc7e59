"""Model presets: the Qwen2-VL family's image settings under one name (``--model``, ``model=``).

Qwen2-VL, Qwen2.5-VL and Qwen3-VL share one image processor (transformers'
``Qwen2VLImageProcessor``); only its configuration differs:

========== ===== ===== ======== ===================== ===========
preset     patch merge temporal image_mean / std      APT scales
========== ===== ===== ======== ===================== ===========
qwen2-vl   14    2     2        OpenAI CLIP           14, 28, 56
qwen2.5-vl 14    2     2        OpenAI CLIP           14, 28, 56
qwen3-vl   16    2     2        0.5 / 0.5             16, 32, 64
========== ===== ===== ======== ===================== ===========

The merge unit ``u = patch * merge`` (28 or 32 px) is both the smart_resize
factor and the LLM-token unit. ``min_pixels``/``max_pixels`` are not part of
a preset: aptviz keeps transformers' class defaults (3136 / 1003520) for
every model; :attr:`ModelPreset.checkpoint_pixels` gives the official
checkpoints' own bounds for those who want exactly what a checkpoint sees.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import Enum

from aptviz.errors import ParameterError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_MODEL",
    "PRESETS",
    "Model",
    "ModelPreset",
    "parse_model",
    "preset",
    "models_title",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of Qwen2-VL's and Qwen2.5-VL's image processor (OpenAI CLIP)."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of Qwen2-VL's and Qwen2.5-VL's image processor (OpenAI CLIP)."""


class Model(str, Enum):
    """The model whose image pipeline aptviz reproduces (``--model``)."""

    qwen2_vl = "qwen2-vl"
    qwen2_5_vl = "qwen2.5-vl"
    qwen3_vl = "qwen3-vl"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ModelPreset:
    """One model's image-processor settings.

    Attributes
    ----------
    model : Model
    patch_size, merge_size, temporal_patch_size : int
        The vision tower's patch (``P``), its merger's side and its temporal patch.
    image_mean, image_std : tuple of float
        Per-channel normalization after rescaling to [0, 1].
    checkpoint_pixels : (int, int)
        ``(min_pixels, max_pixels)`` of the official checkpoints'
        ``preprocessor_config.json`` (aptviz's defaults stay 3136 / 1003520).
    window_size : int or None
        Side in px of the vision tower's attention windows (Qwen2.5-VL: 112,
        i.e. 4x4 merge units); None where every layer attends to the whole image.
    checkpoints : tuple of str
        Official checkpoints that use these settings.
    """

    model: Model
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    checkpoint_pixels: tuple[int, int]
    window_size: int | None
    checkpoints: tuple[str, ...]

    @property
    def title(self) -> str:
        """The model's name as written in prose: ``Qwen2-VL``, ``Qwen2.5-VL``, ``Qwen3-VL``."""
        return self.model.value.replace("qwen", "Qwen").replace("-vl", "-VL")

    @property
    def unit(self) -> int:
        """The merge unit ``patch_size * merge_size`` in px (smart_resize factor, one LLM token)."""
        return self.patch_size * self.merge_size

    def scales(self, num_scales: int = 3) -> list[int]:
        """APT's patch sizes, finest first.

        Examples
        --------
        >>> preset("qwen3-vl").scales()
        [16, 32, 64]
        """
        return [self.patch_size * 2**i for i in range(num_scales)]


PRESETS: dict[Model, ModelPreset] = {
    Model.qwen2_vl: ModelPreset(
        Model.qwen2_vl, 14, 2, 2, CLIP_MEAN, CLIP_STD, (3136, 12845056), None,
        ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-72B-Instruct"),
    ),
    Model.qwen2_5_vl: ModelPreset(
        Model.qwen2_5_vl, 14, 2, 2, CLIP_MEAN, CLIP_STD, (3136, 12845056), 112,
        ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct"),
    ),
    Model.qwen3_vl: ModelPreset(
        Model.qwen3_vl, 16, 2, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (65536, 16777216), None,
        ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-30B-A3B-Instruct"),
    ),
}  # fmt: skip
DEFAULT_MODEL = Model.qwen2_vl


def parse_model(text: str | Model | None) -> Model:
    """A :class:`Model` from its name, in any case (``qwen2_5_vl`` and ``Qwen2.5-VL`` work too); None: the default.

    Examples
    --------
    >>> parse_model("Qwen2.5-VL"), parse_model("qwen3_vl"), parse_model(None)
    (<Model.qwen2_5_vl: 'qwen2.5-vl'>, <Model.qwen3_vl: 'qwen3-vl'>, <Model.qwen2_vl: 'qwen2-vl'>)
    >>> parse_model("qwen3vl")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: unknown model 'qwen3vl' (did you mean 'qwen3-vl'?); choose qwen2-vl, qwen2.5-vl or qwen3-vl
    """
    if text is None:
        return DEFAULT_MODEL
    if isinstance(text, Model):
        return text
    name = str(getattr(text, "value", text)).strip().lower()
    spelled = name.replace("_", "-").replace("2-5", "2.5")
    try:
        return Model(spelled)
    except ValueError:
        names = [m.value for m in Model]
        match = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        choices = ", ".join(names[:-1]) + " or " + names[-1]
        raise ParameterError(f"unknown model {str(text)!r}{hint}; choose {choices}") from None


def preset(name: str | Model | None = None) -> ModelPreset:
    """The :class:`ModelPreset` of a model name (default qwen2-vl).

    Examples
    --------
    >>> p = preset("qwen3-vl"); p.title, p.patch_size, p.unit, p.image_mean
    ('Qwen3-VL', 16, 32, (0.5, 0.5, 0.5))
    """
    return PRESETS[parse_model(name)]


def models_title(models) -> str:
    """How figures name the model(s) of some rows: one title, or several joined by `` / `` (default Qwen2-VL).

    Examples
    --------
    >>> models_title(["qwen3-vl", "qwen3-vl"]), models_title([]), models_title(["qwen3-vl", None, "qwen2.5-vl"])
    ('Qwen3-VL', 'Qwen2-VL', 'Qwen2-VL / Qwen2.5-VL / Qwen3-VL')
    """
    seen = set()
    for m in models:
        try:
            seen.add(parse_model(m))  # None (rows from before models were recorded): the default
        except ParameterError:
            continue
    return " / ".join(PRESETS[m].title for m in Model if m in seen) or PRESETS[DEFAULT_MODEL].title
