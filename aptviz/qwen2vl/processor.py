"""Qwen2-VL's image processor with Adaptive Patch Tokenization (extra ``aptviz[qwen]``).

:class:`APTQwen2VLImageProcessor` is transformers' Pillow-backend Qwen2-VL
image processor (``Qwen2VLImageProcessorPil``) that also runs APT's patch
selection on the very pixels it resizes. It takes ``patch_selection_method``,
``alpha`` and ``thresholds`` in its constructor, as attributes and at call
time, and returns

* ``pixel_values`` and ``image_grid_thw`` exactly as transformers does (an
  unmodified Qwen2-VL uses only these), and
* the APT fields ``apt_pixel_values``, ``apt_patch_sizes``,
  ``apt_patch_coords``, ``apt_vit_token_counts`` and ``apt_llm_token_counts``
  (see :func:`aptviz.compute.packing.pack_selection` for their layout).

:class:`APTQwen2VLProcessor` is Qwen2-VL's processor (image processor +
tokenizer) that routes ``images_kwargs={"patch_selection_method", "alpha",
"thresholds"}`` to it; it needs no video processor (nor torchvision).

The whole Qwen2-VL family shares this processor, with its own settings:
``APTQwen2VLImageProcessor.from_pretrained(folder)`` reads a Qwen2-VL,
Qwen2.5-VL or Qwen3-VL checkpoint's ``preprocessor_config.json`` (patch
size, mean/std, ``size`` or ``min_pixels``/``max_pixels``), and
``APTQwen2VLImageProcessor.from_preset("qwen3-vl")`` builds one from
aptviz's presets. APT then works on ``P = patch_size`` (16/32/64 px for
Qwen3-VL) and counts LLM tokens in the configured merge unit.

Everything works offline: nothing is downloaded to build either class.

Examples
--------
>>> import numpy as np
>>> ip = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3)
>>> out = ip(np.zeros((56, 84, 3), np.uint8))
>>> out["pixel_values"].shape, out["apt_vit_token_counts"].tolist(), out["apt_llm_token_counts"].tolist()
((24, 1176), [6], [6])
>>> ip.last_budget_info[0]["budget"]
7
"""

from __future__ import annotations

import threading

import numpy as np
from transformers.image_processing_utils import BatchFeature
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorKwargs,
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import Unpack

from aptviz._log import logger
from aptviz.compute.entropy import compute_maps
from aptviz.compute.packing import PackedPatches, pack_selection
from aptviz.compute.params import DEFAULT_THRESHOLDS, RunSpec
from aptviz.compute.presets import preset
from aptviz.compute.selection import Selection, select

__all__ = ["APTQwen2VLImageProcessor", "APTQwen2VLImageProcessorKwargs", "APTQwen2VLProcessor", "apt_selection"]

APT_FIELDS = (
    "apt_pixel_values",
    "apt_patch_sizes",
    "apt_patch_coords",
    "apt_vit_token_counts",
    "apt_llm_token_counts",
)


class APTQwen2VLImageProcessorKwargs(Qwen2VLImageProcessorKwargs, total=False):
    r"""
    patch_selection_method (`str`, *optional*, defaults to `"v1"`):
        APT's patch selection: `"v1"` (fixed entropy thresholds), `"v2"` (thresholds `alpha` times each scale's
        mean entropy) or `"budget"` (an exact token budget of `round(alpha * N)`).
    alpha (`float`, *optional*, defaults to 1.0):
        v2: threshold multiplier (>= 0; higher keeps more large patches, fewer tokens); budget: target retention
        in [0, 1]. Ignored by v1.
    thresholds (`list[float]`, *optional*, defaults to `(3.0, 2.0)`):
        v1 only: entropy thresholds in bits, one per scale above the finest (28 and 56 px at patch size 14).
    apt_tokens (`bool`, *optional*):
        Read by `APTQwen2VLProcessor`: `True` puts `apt_llm_token_counts[i]` image pads in the text for image i
        (for a model made APT-aware with `aptviz.qwen2vl.enable_apt`); unset, the processor's own `apt_tokens`
        decides (default `False`: the stock count). The image processor's outputs are the same either way.
    """

    patch_selection_method: str
    alpha: float | int
    thresholds: list[float | int] | tuple[float | int, ...]
    apt_tokens: bool


def apt_selection(method, alpha, thresholds, num_scales: int = 3) -> RunSpec:
    """The selection to run, validated with the command line's rules and wording.

    Parameters
    ----------
    method : {"v1", "v2", "budget"}
    alpha : float
        v2: threshold multiplier (>= 0); budget: target retention in [0, 1]. Ignored by v1.
    thresholds : sequence of float
        v1 thresholds, one per scale above the finest.
    num_scales : int
        Number of patch scales.

    Raises
    ------
    ValueError
        Unknown method, or an alpha or thresholds out of range.

    Examples
    --------
    >>> apt_selection("budget", 0.3, None).label
    'budget_alpha0.3'
    >>> apt_selection("budget", 1.5, None)
    Traceback (most recent call last):
        ...
    aptviz.errors.ParameterError: budget alpha must be in [0, 1], got 1.5
    """
    return RunSpec(method, alpha, None if thresholds is None else tuple(thresholds)).check_scales(num_scales)


class _Recorder(threading.local):
    """The resized and normalized images of the call in progress (per thread)."""

    resized: list | None = None
    normalized: list | None = None


_RECORDER = _Recorder()


class APTQwen2VLImageProcessor(Qwen2VLImageProcessorPil):
    r"""Qwen2-VL's image processor (Pillow backend) that also returns APT's tokens.

    Accepts every argument of ``Qwen2VLImageProcessorPil`` plus
    ``patch_selection_method``, ``alpha`` and ``thresholds`` (see
    :class:`APTQwen2VLImageProcessorKwargs`): in the constructor, as
    attributes, or per call. ``num_scales`` (3) and ``bins`` (512) are class
    attributes. APT needs 8-bit RGB pixels: PIL images or uint8 arrays (with
    ``do_convert_rgb``, the default, any PIL mode works); other input raises
    ``ValueError``.

    The standard outputs are transformers' own: ``pixel_values`` and
    ``image_grid_thw`` are computed by the parent class, unchanged. APT's
    selection runs on the same resized pixels (:func:`aptviz.entropy_maps`
    and :func:`aptviz.select_patches`), and its tokens are cut from the same
    normalized pixels. Extra outputs, concatenated over the images in order:

    ``apt_pixel_values``
        float32 ``(T_total, C * temporal_patch_size * P * P)``: one row per kept
        patch, the patch area-averaged to ``P x P``, in ``pixel_values``'s row
        layout and token order (merge units in raster order, inside a unit its
        ``P``-cells in raster order; a patch of a unit's size or larger sits at
        its top-left unit).
    ``apt_patch_sizes``
        int64 ``(T_total,)``: patch side in px.
    ``apt_patch_coords``
        int64 ``(T_total, 2)``: (row, col) of the patch's top-left corner in
        ``P``-px units.
    ``apt_vit_token_counts``, ``apt_llm_token_counts``
        int64 ``(images,)``: ViT tokens (rows) and LLM tokens after the merger.

    After each call ``last_budget_info`` holds one entry per image (the budget
    method's ``budget_info`` dict, else None) and ``last_selections`` the
    :class:`aptviz.Selection` of each image.
    """

    patch_selection_method = "v1"
    alpha = 1.0
    thresholds = DEFAULT_THRESHOLDS
    num_scales = 3
    bins = 512
    apt_tokens = None  # a processor option (see APTQwen2VLProcessor); accepted here so images_kwargs may carry it
    valid_kwargs = APTQwen2VLImageProcessorKwargs

    def __init__(self, **kwargs: Unpack[APTQwen2VLImageProcessorKwargs]):
        super().__init__(**kwargs)
        apt_selection(self.patch_selection_method, self.alpha, self.thresholds, self.num_scales)
        self.last_budget_info: list[dict | None] = []
        self.last_selections: list[Selection] = []

    @classmethod
    def from_preset(cls, name: str = "qwen2-vl", *, checkpoint_pixels: bool = False, **overrides):
        """An image processor with a model preset's settings, built offline.

        Parameters
        ----------
        name : {"qwen2-vl", "qwen2.5-vl", "qwen3-vl"}
            The preset (:mod:`aptviz.compute.presets`): patch, merge and
            temporal patch size and image mean/std.
        checkpoint_pixels : bool
            Use the official checkpoints' pixel bounds (Qwen2/2.5-VL 3136 /
            12845056, Qwen3-VL 65536 / 16777216) instead of transformers'
            class defaults (3136 / 1003520, as ``aptviz --model``).
        **overrides
            Any argument of the constructor (``patch_selection_method``,
            ``alpha``, ``size``, ``max_pixels``, ...); they win over the preset.

        Raises
        ------
        ValueError
            An unknown preset name.

        Examples
        --------
        >>> ip = APTQwen2VLImageProcessor.from_preset("qwen3-vl", patch_selection_method="budget", alpha=0.3)
        >>> ip.patch_size, ip.merge_size, list(ip.image_mean), ip.size["longest_edge"]
        (16, 2, [0.5, 0.5, 0.5], 1003520)
        """
        p = preset(name)
        kwargs = {
            "patch_size": p.patch_size,
            "merge_size": p.merge_size,
            "temporal_patch_size": p.temporal_patch_size,
            "image_mean": list(p.image_mean),
            "image_std": list(p.image_std),
        }
        if checkpoint_pixels:
            kwargs["size"] = {"shortest_edge": p.checkpoint_pixels[0], "longest_edge": p.checkpoint_pixels[1]}
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """The saved configuration (``save_pretrained``): the APT options, not the last call's results."""
        out = super().to_dict()
        for name in ("last_budget_info", "last_selections"):
            out.pop(name, None)
        if out.get("thresholds") is not None:
            out["thresholds"] = [float(t) for t in out["thresholds"]]
        return out

    def _validate_preprocess_kwargs(self, patch_selection_method=None, alpha=None, thresholds=None, **kwargs):
        apt_selection(patch_selection_method, alpha, thresholds, self.num_scales)
        super()._validate_preprocess_kwargs(**kwargs)

    def resize(self, image: np.ndarray, size, resample, factor: int, **kwargs) -> np.ndarray:
        """The parent's resize; the result is kept for APT's selection."""
        resized = super().resize(image, size=size, resample=resample, factor=factor, **kwargs)
        if _RECORDER.resized is not None:
            _RECORDER.resized.append(resized)
        return resized

    def patchify(self, image: np.ndarray, patch_size: int, merge_size: int, temporal_patch_size: int):
        """The parent's patchify; the normalized image is kept for APT's tokens."""
        if _RECORDER.normalized is not None:
            _RECORDER.normalized.append(image)
        return super().patchify(image, patch_size, merge_size, temporal_patch_size)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        patch_size: int,
        temporal_patch_size: int,
        merge_size: int,
        return_tensors=None,
        patch_selection_method: str | None = None,
        alpha: float | None = None,
        thresholds=None,
        apt_tokens=None,
        **kwargs,
    ) -> BatchFeature:
        spec = apt_selection(patch_selection_method, alpha, thresholds, self.num_scales)
        _RECORDER.resized, _RECORDER.normalized = [], []
        try:
            standard = super()._preprocess(
                images,
                do_resize=do_resize,
                patch_size=patch_size,
                temporal_patch_size=temporal_patch_size,
                merge_size=merge_size,
                return_tensors=None,
                **kwargs,
            )
            resized = _RECORDER.resized if do_resize else list(images)
            normalized = _RECORDER.normalized
        finally:
            _RECORDER.resized = _RECORDER.normalized = None

        selections = [self._select(chw, spec, patch_size) for chw in resized]
        rows, packed = _pack(
            standard["pixel_values"], normalized, selections, (patch_size, merge_size, temporal_patch_size)
        )
        self.last_selections = selections
        self.last_budget_info = [dict(s.budget_info) if s.budget_info is not None else None for s in selections]
        logger.debug("APT {}: ViT tokens {}", spec.label, [p.vit_tokens for p in packed])
        data = dict(standard.data)
        data.update(
            apt_pixel_values=rows,
            apt_patch_sizes=np.concatenate([p.patch_sizes for p in packed]),
            apt_patch_coords=np.concatenate([p.patch_coords for p in packed]),
            apt_vit_token_counts=np.array([p.vit_tokens for p in packed], dtype=np.int64),
            apt_llm_token_counts=np.array([p.llm_tokens for p in packed], dtype=np.int64),
        )
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _select(self, chw: np.ndarray, spec: RunSpec, patch_size: int) -> Selection:
        """APT's selection on one resized (C, H, W) uint8 image."""
        if chw.dtype != np.uint8 or chw.shape[0] != 3:
            raise ValueError(f"APT needs 8-bit RGB images, got {chw.shape[0]} channel(s) of {chw.dtype}")
        return select(compute_maps(np.moveaxis(chw, 0, -1), patch_size, self.num_scales, self.bins), spec)


def _pack(pixel_values: np.ndarray, normalized: list, selections: list[Selection], sizes: tuple[int, int, int]):
    """Every image's APT rows, written straight into one array; and each image's :class:`PackedPatches`.

    ``pixel_values`` are transformers' rows of the whole batch: each image's
    ``P``-px patches are copied from its own rows.
    """
    patch_size = sizes[0]
    out = np.empty((sum(s.tokens for s in selections), pixel_values.shape[1]), dtype=np.float32)
    packed: list[PackedPatches] = []
    first = row = 0
    for pixels, sel in zip(normalized, selections):
        cells = (pixels.shape[1] // patch_size) * (pixels.shape[2] // patch_size)
        rows = pixel_values[first : first + cells]
        packed.append(pack_selection(pixels, sel.masks, *sizes, rows=rows, out=out[row : row + sel.tokens]))
        first, row = first + cells, row + sel.tokens
    return out, packed


class APTQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor with :class:`APTQwen2VLImageProcessor` and no video processor.

    ``images_kwargs={"patch_selection_method": ..., "alpha": ..., "thresholds": ...}``
    (or the same keys as plain keyword arguments) reach the image processor.
    By default the text gets exactly as many ``<|image_pad|>`` tokens as plain
    Qwen2-VL gives it (``image_grid_thw`` is unchanged), so an unmodified model
    still runs on ``input_ids`` + ``pixel_values``. With ``apt_tokens=True``
    (constructor, ``from_pretrained`` or per call, also inside ``images_kwargs``)
    image i gets ``apt_llm_token_counts[i]`` pads instead: the input of a model
    made APT-aware by :func:`aptviz.qwen2vl.enable_apt`. Videos are not
    supported (transformers' video processor needs torchvision).

    ``APTQwen2VLProcessor.from_pretrained(folder_or_id)`` loads a Qwen2-VL
    family checkpoint's tokenizer, chat template and image-processor settings
    into this class; its keyword arguments set the image processor
    (``patch_selection_method``, ``alpha``, ``max_pixels``, ...) or else the
    tokenizer (``padding_side="left"``).

    Parameters
    ----------
    image_processor : APTQwen2VLImageProcessor, optional
        Defaults to ``APTQwen2VLImageProcessor()``.
    tokenizer : PreTrainedTokenizerBase
        A Qwen2-VL tokenizer (with ``<|image_pad|>``).
    chat_template : str, optional
    apt_tokens : bool
        Image pads per image: ``apt_llm_token_counts[i]`` (True) or the stock
        count (False, the default). A call's ``apt_tokens`` wins.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, apt_tokens=False, **kwargs):
        if not isinstance(apt_tokens, bool):
            raise TypeError(f"apt_tokens must be True or False, got {apt_tokens!r}")
        image_processor = APTQwen2VLImageProcessor() if image_processor is None else image_processor
        # the parent's ``video_processor`` slot stays empty: this class's signature has no video attribute
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.apt_tokens = apt_tokens

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, apt_tokens=None, **kwargs):
        """A processor from a checkpoint folder (or hub id), on transformers' public loaders.

        The tokenizer comes from ``AutoTokenizer``, the image-processor settings
        from :meth:`APTQwen2VLImageProcessor.from_pretrained` (whatever image
        processor class the checkpoint names), the chat template from the
        checkpoint's processor files. ``apt_tokens`` defaults to the value a
        saved ``APTQwen2VLProcessor`` recorded, else False.

        Parameters
        ----------
        pretrained_model_name_or_path : str or os.PathLike
        apt_tokens : bool, optional
        **kwargs
            Loading options (``cache_dir``, ``force_download``,
            ``local_files_only``, ``token``, ``revision``, ``subfolder``) go to
            every loader; the image processor's options (``patch_selection_method``,
            ``alpha``, ``max_pixels``, ...) set it; the rest go to the tokenizer
            (``padding_side="left"``, ...).
        """
        from transformers import AutoTokenizer

        path = pretrained_model_name_or_path
        loading = {k: kwargs.pop(k) for k in _LOADING_KWARGS if k in kwargs}
        image_options = APTQwen2VLImageProcessor.valid_kwargs.__annotations__
        image_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in image_options}
        tokenizer = kwargs.pop("tokenizer", None)
        if tokenizer is None:  # the options the image processor does not take (padding_side, ...) are the tokenizer's
            tokenizer = AutoTokenizer.from_pretrained(path, **loading, **kwargs)
        image_processor = kwargs.pop("image_processor", None)
        if image_processor is None:
            image_processor = APTQwen2VLImageProcessor.from_pretrained(path, **loading, **image_kwargs)
        processor_dict, _ = cls.get_processor_dict(path, **loading)
        if apt_tokens is None:
            apt_tokens = bool(processor_dict.get("apt_tokens", False))
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=processor_dict.get("chat_template"),
            apt_tokens=apt_tokens,
        )

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        """As Qwen2-VL's processor, for images and text; ``videos`` raise (they were silently dropped)."""
        if videos is not None:
            raise ValueError(
                "APTQwen2VLProcessor takes images and text, not videos (transformers' video processor needs "
                "torchvision); the aptviz command analyses videos: aptviz clip.mp4 -m budget:0.3"
            )
        return super().__call__(images=images, text=text, **kwargs)

    def replace_image_token(self, image_inputs: dict, image_idx: int, apt_tokens=None, **kwargs) -> str:
        """Image ``image_idx``'s pads: ``apt_llm_token_counts`` with ``apt_tokens``, else the stock count."""
        if apt_tokens is not None and not isinstance(apt_tokens, bool):  # "false" would count as true
            raise TypeError(f"apt_tokens must be True or False, got {apt_tokens!r}")
        if not (self.apt_tokens if apt_tokens is None else apt_tokens):
            return super().replace_image_token(image_inputs, image_idx, **kwargs)
        if "apt_llm_token_counts" not in image_inputs:
            raise ValueError(
                f"apt_tokens=True needs an APTQwen2VLImageProcessor, got {type(self.image_processor).__name__}"
            )
        return self.image_token * int(image_inputs["apt_llm_token_counts"][image_idx])


_LOADING_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
