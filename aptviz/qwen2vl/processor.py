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

Videos (``APTQwen2VLProcessor(videos=...)``,
:meth:`APTQwen2VLImageProcessor.preprocess_videos`) are decoded and sampled
with :mod:`aptviz.compute.video` and give transformers' ``pixel_values_videos``
/ ``video_grid_thw`` plus APT's fields per tubelet (``apt_video_*``).

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

import re
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
from aptviz.compute.packing import PackedPatches, normalize_pixels, pack_selection
from aptviz.compute.params import DEFAULT_THRESHOLDS, RunSpec
from aptviz.compute.presets import preset
from aptviz.compute.selection import Selection, select

__all__ = [
    "APTQwen2VLImageProcessor",
    "APTQwen2VLImageProcessorKwargs",
    "APTQwen2VLProcessor",
    "apt_selection",
    "video_rows",
]

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
    """The resized and normalized images of the call in progress (per thread); whether video pads are in."""

    resized: list | None = None
    normalized: list | None = None
    video_pads: bool = False


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
        self.last_video_selections: list[Selection] = []
        self.last_video_metadata: list[dict] = []

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
        for name in ("last_budget_info", "last_selections", "last_video_selections", "last_video_metadata"):
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

    def preprocess_videos(self, videos, return_tensors=None, **options) -> BatchFeature:
        """Videos as Qwen2-VL reads them, plus APT's selection per tubelet (frames ``(2i, 2i+1)``).

        Parameters
        ----------
        videos : path, uint8 array (T, H, W, 3), or a list of them
            A path is decoded (OpenCV's FFmpeg) and sampled as qwen-vl-utils
            0.0.14 does (``fps``, default 2.0, or ``nframes``); an array holds
            the sampled frames, taken at ``fps``. Frames are resized by smart_resize with the video
            pixel bounds (``video_min_pixels``, ``video_max_pixels``,
            ``video_total_pixels``; docs/video.md), an odd count padded with the
            last frame.
        return_tensors : str, optional
        **options
            ``patch_selection_method``, ``alpha``, ``thresholds`` (default: this
            processor's), ``fps``, ``nframes`` and the video pixel bounds.

        Returns
        -------
        BatchFeature
            ``pixel_values_videos`` and ``video_grid_thw`` in transformers'
            layout (``(tubelets, H/P, W/P)`` per video; rows tubelet by tubelet),
            and APT's fields per tubelet, concatenated over the videos' tubelets
            in order: ``apt_video_pixel_values``, ``apt_video_patch_sizes``,
            ``apt_video_patch_coords`` (as the image fields, one tubelet at a
            time, each row holding both frames' patch) and
            ``apt_video_vit_token_counts``, ``apt_video_llm_token_counts`` (one
            entry per tubelet). ``last_video_selections`` holds each tubelet's
            :class:`aptviz.Selection`, ``last_video_metadata`` each video's
            ``tubelet_seconds`` (the mean time of a tubelet's frames, as
            Qwen3-VL's timestamps) and ``sample_fps``.
        """
        return preprocess_videos(self, videos, return_tensors=return_tensors, **options)

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
    made APT-aware by :func:`aptviz.qwen2vl.enable_apt`. ``videos=`` (paths or
    frame arrays) go through :meth:`APTQwen2VLImageProcessor.preprocess_videos`
    (no torchvision); with ``apt_tokens`` video i gets the sum of its tubelets'
    ``apt_video_llm_token_counts`` video pads.

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
    video_style : {"qwen2-vl", "qwen2.5-vl", "qwen3-vl"}
        How a video goes in the text, as that model's own processor writes it:
        one run of pads (Qwen2-VL); the same plus ``second_per_grid_ts``
        (Qwen2.5-VL); each tubelet's pads in their own vision block after its
        timestamp ``<t seconds>`` (Qwen3-VL). ``from_pretrained`` takes it from
        the checkpoint's processor class.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, apt_tokens=False,
                 video_style="qwen2-vl", **kwargs):  # fmt: skip
        if not isinstance(apt_tokens, bool):
            raise TypeError(f"apt_tokens must be True or False, got {apt_tokens!r}")
        if video_style not in VIDEO_STYLES:
            raise ValueError(f"video_style must be one of {', '.join(VIDEO_STYLES)}, got {video_style!r}")
        self.video_style = video_style
        image_processor = APTQwen2VLImageProcessor() if image_processor is None else image_processor
        # the parent's ``video_processor`` slot stays empty: this class's signature has no video attribute
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.apt_tokens = apt_tokens

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, apt_tokens=None, video_style=None, **kwargs):
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
        if video_style is None:
            video_style = processor_dict.get("video_style")
        if video_style is None:  # a checkpoint's own processor class names its family
            image_dict, _ = APTQwen2VLImageProcessor.get_image_processor_dict(path, **loading)
            video_style = _style_of(processor_dict.get("processor_class") or image_dict.get("processor_class"))
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=processor_dict.get("chat_template"),
            apt_tokens=apt_tokens,
            video_style=video_style,
        )

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        """transformers' processor call; ``videos=`` go through :meth:`APTQwen2VLImageProcessor.preprocess_videos`.

        Video options (``fps``, ``nframes``, the video pixel bounds, and the APT
        options, which images' ``images_kwargs`` also set) come as keywords or
        in ``videos_kwargs``. With ``apt_tokens`` video i gets the sum of its
        tubelets' ``apt_video_llm_token_counts`` video pads, else the stock count.
        """
        if videos is None:
            return super().__call__(images=images, text=text, **kwargs)
        return _apt_call(self, images, text, videos, **kwargs)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """transformers' checks; the video pads :meth:`__call__` put in the text are not counted again."""
        if _RECORDER.video_pads and text is not None:
            text = [t.replace(self.video_token, "") for t in ([text] if isinstance(text, str) else text)]
        return super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

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


VIDEO_STYLES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")


def _style_of(processor_class: str | None) -> str:
    """The video style of a checkpoint's processor class (Qwen2-VL's by default)."""
    name = processor_class or ""
    return "qwen3-vl" if name.startswith("Qwen3VL") else "qwen2.5-vl" if name.startswith("Qwen2_5") else "qwen2-vl"


_LOADING_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


# --- videos ----------------------------------------------------------------------------------------------

#: video options read by :meth:`APTQwen2VLImageProcessor.preprocess_videos` (``videos_kwargs``)
VIDEO_OPTIONS = ("patch_selection_method", "alpha", "thresholds", "fps", "nframes", "video_min_pixels",
                 "video_max_pixels", "video_total_pixels")  # fmt: skip


def video_rows(frames: np.ndarray, patch_size: int, merge_size: int, temporal_patch_size: int) -> np.ndarray:
    """Qwen2-VL's ``pixel_values_videos`` rows of one normalized video, as its video processor lays them out.

    Parameters
    ----------
    frames : ndarray, float32, (T, C, H, W)
        The normalized frames, ``T`` a multiple of ``temporal_patch_size``,
        ``H`` and ``W`` multiples of ``patch_size * merge_size``.
    patch_size, merge_size, temporal_patch_size : int

    Returns
    -------
    ndarray, float32, (T / t * H / P * W / P, C * t * P * P)
        Tubelet by tubelet; inside one, merge units in raster order and their
        ``P``-cells in raster order; each row (channel, time, y, x).

    Examples
    --------
    >>> video_rows(np.zeros((4, 3, 28, 56), np.float32), 14, 2, 2).shape
    (16, 1176)
    """
    t, c, h, w = frames.shape
    p, m, tp = patch_size, merge_size, temporal_patch_size
    patches = frames.reshape(t // tp, tp, c, h // p // m, m, p, w // p // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(patches.reshape(t // tp * (h // p) * (w // p), c * tp * p * p), dtype=np.float32)


def _video_frames(video, params) -> tuple[np.ndarray, np.ndarray, float]:
    """One video's sampled, resized uint8 frames ``(T, H, W, 3)``, padded to whole tubelets; their times; the fps.

    A path is decoded and sampled as :func:`aptviz.compute.video.decode_video`
    does (qwen-vl-utils' rules: a frame's time is its index over the file's
    frame rate, the sampled fps qwen-vl-utils' ``sample_fps``); an array
    ``(T, H, W, 3)`` (or a list of frames) is taken as frames sampled at
    ``params.fps``, each resized by smart_resize with the video pixel bounds.
    """
    from pathlib import Path

    from aptviz.compute.resize import smart_resize
    from aptviz.compute.video import decode_video, resize_frame, tubelet_frames, video_pixel_bounds
    from aptviz.errors import InputError

    if isinstance(video, (str, Path)):
        try:
            clip = decode_video(video, params)
        except InputError as exc:  # one line naming the file
            raise ValueError(f"{video}: {exc}") from exc
        frames, fps = clip.frames, clip.sample_fps
        times = np.asarray(clip.frame_indices, dtype=np.float64) / clip.video_fps
    else:
        frames = np.stack([np.asarray(f) for f in video]) if isinstance(video, (list, tuple)) else np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"a video must be a file path or uint8 frames (T, H, W, 3), got {frames.dtype} "
                             f"{frames.shape}")  # fmt: skip
        lo, hi = video_pixel_bounds(len(frames), params.factor, params.video_min_pixels, params.video_max_pixels,
                                    params.video_total_pixels)  # fmt: skip
        size = smart_resize(frames.shape[1], frames.shape[2], params.factor, lo, hi)
        if size != frames.shape[1:3]:  # Pillow BICUBIC, as aptviz's decoder (it takes BGR)
            frames = np.stack([resize_frame(np.ascontiguousarray(f[..., ::-1]), size) for f in frames])
        fps = params.fps
        times = np.arange(len(frames)) / fps
    padded = tubelet_frames(frames, params.temporal_patch_size)
    return padded, np.concatenate([times, np.repeat(times[-1:], len(padded) - len(times))]), fps


def preprocess_videos(ip, videos, return_tensors=None, **options) -> BatchFeature:
    """``ip``'s video rows and APT's per-tubelet fields (:meth:`APTQwen2VLImageProcessor.preprocess_videos`)."""
    from aptviz.compute.importance import compute_importance
    from aptviz.compute.measures import DEFAULT_MEASURE  # the processor selects on entropy, the default
    from aptviz.compute.params import Params

    spec = apt_selection(options.get("patch_selection_method") or ip.patch_selection_method,
                         ip.alpha if options.get("alpha") is None else options["alpha"],
                         options.get("thresholds") or ip.thresholds, ip.num_scales)  # fmt: skip
    video_opts = {k: options[k] for k in VIDEO_OPTIONS[3:] if options.get(k) is not None}
    params = Params(patch_size=ip.patch_size, merge_size=ip.merge_size, temporal_patch_size=ip.temporal_patch_size,
                    num_scales=ip.num_scales, bins=ip.bins, **video_opts)  # fmt: skip
    p, m, tp = ip.patch_size, ip.merge_size, ip.temporal_patch_size
    if isinstance(videos, (str, np.ndarray)) or hasattr(videos, "__fspath__"):
        videos = [videos]
    rows, grids, packed, selections, metadata = [], [], [], [], []
    for video in videos:
        frames, times, fps = _video_frames(video, params)
        metadata.append({"tubelet_seconds": times.reshape(-1, tp).mean(1).tolist(), "sample_fps": fps})
        normalized = np.stack([normalize_pixels(f, ip.rescale_factor, ip.image_mean, ip.image_std) for f in frames])
        stock = video_rows(normalized, p, m, tp)
        n, h, w = len(frames) // tp, frames.shape[1], frames.shape[2]
        cells = (h // p) * (w // p)
        grids.append([n, h // p, w // p])
        for i in range(n):
            clip = frames[i * tp : (i + 1) * tp]
            sel = select(compute_importance(clip, DEFAULT_MEASURE, "mean", p, ip.num_scales, ip.bins), spec)
            tubelet = np.moveaxis(normalized[i * tp : (i + 1) * tp], 0, 1)  # (C, T, H, W)
            packed.append(pack_selection(tubelet, sel.masks, p, m, tp, rows=stock[i * cells : (i + 1) * cells]))
            selections.append(sel)
        rows.append(stock)
    ip.last_video_selections, ip.last_video_metadata = selections, metadata
    logger.debug("APT {} on {} video(s): ViT tokens per tubelet {}", spec.label, len(grids),
                 [q.vit_tokens for q in packed])  # fmt: skip
    data = {
        "pixel_values_videos": np.concatenate(rows),
        "video_grid_thw": np.array(grids, dtype=np.int64),
        "apt_video_pixel_values": np.concatenate([q.pixel_values for q in packed]),
        "apt_video_patch_sizes": np.concatenate([q.patch_sizes for q in packed]),
        "apt_video_patch_coords": np.concatenate([q.patch_coords for q in packed]),
        "apt_video_vit_token_counts": np.array([q.vit_tokens for q in packed], dtype=np.int64),
        "apt_video_llm_token_counts": np.array([q.llm_tokens for q in packed], dtype=np.int64),
    }
    return BatchFeature(data=data, tensor_type=return_tensors)


def _apt_call(self, images, text, videos, **kwargs):
    """``APTQwen2VLProcessor(videos=...)``: each video's rows and APT fields (:meth:`preprocess_videos`), its pads."""
    options, apt_tokens = _video_options(kwargs)
    return_tensors = kwargs.get("return_tensors")
    out = self.image_processor.preprocess_videos(videos, return_tensors=return_tensors, **options)
    use_apt = self.apt_tokens if apt_tokens is None else apt_tokens
    grid = np.asarray(out["video_grid_thw"])
    tubelets = np.cumsum([0, *grid[:, 0].tolist()])
    llm = np.asarray(out["apt_video_llm_token_counts"])
    merge = self.image_processor.merge_size**2
    counts = [int(llm[a:b].sum()) if use_apt else int(g.prod() // merge)
              for a, b, g in zip(tubelets[:-1], tubelets[1:], grid)]  # fmt: skip
    if self.video_style == "qwen3-vl":  # per tubelet: its pads in a vision block after its timestamp
        per = [llm[a:b] if use_apt else np.full(b - a, g[1:].prod() // merge) for a, b, g in
               zip(tubelets[:-1], tubelets[1:], grid)]  # fmt: skip
        seconds = [meta["tubelet_seconds"] for meta in self.image_processor.last_video_metadata]
        start = getattr(self.tokenizer, "vision_start_token", None) or "<|vision_start|>"  # as Qwen3-VL's processor
        end = getattr(self.tokenizer, "vision_end_token", None) or "<|vision_end|>"
        pads = ["".join(f"<{t:.1f} seconds>{start}{self.video_token * int(n)}{end}" for t, n in zip(ts, c))
                for ts, c in zip(seconds, per)]  # fmt: skip
        wrapper = f"{start}{self.video_token}{end}"
    else:
        pads, wrapper = [self.video_token * n for n in counts], self.video_token
    if self.video_style == "qwen2.5-vl":  # as its processor: temporal patch size over the sampled fps
        tp = self.image_processor.temporal_patch_size
        out["second_per_grid_ts"] = [tp / meta["sample_fps"] for meta in self.image_processor.last_video_metadata]
    if text is not None:
        text = _with_video_pads(self.video_token, wrapper, [text] if isinstance(text, str) else list(text), pads)
    result = None
    if text is not None or images is not None:
        _RECORDER.video_pads = True  # the pads are in the text already: transformers' count check is ours
        try:
            result = Qwen2VLProcessor.__call__(self, images=images, text=text, **kwargs)
        finally:
            _RECORDER.video_pads = False
    data = dict(result.data) if result is not None else {}
    data.update(out.data)
    return BatchFeature(data=data, tensor_type=return_tensors)


def _video_options(kwargs: dict) -> tuple[dict, bool | None]:
    """The video options of a processor call, and its ``apt_tokens`` (video-only keywords are popped).

    APT's options come from ``images_kwargs``, then plain keywords, then
    ``videos_kwargs`` (the most specific wins); ``fps``, ``nframes`` and the
    video pixel bounds from keywords or ``videos_kwargs``.
    """
    videos_kwargs = dict(kwargs.pop("videos_kwargs", None) or {})
    images_kwargs = kwargs.get("images_kwargs") or {}
    apt = VIDEO_OPTIONS[:3]
    options = {k: v for k, v in images_kwargs.items() if k in apt}
    options.update({k: kwargs[k] for k in apt if k in kwargs})
    options.update({k: kwargs.pop(k) for k in VIDEO_OPTIONS[3:] if k in kwargs})
    apt_tokens = videos_kwargs.pop("apt_tokens", kwargs.get("apt_tokens", images_kwargs.get("apt_tokens")))
    unknown = sorted(set(videos_kwargs) - set(VIDEO_OPTIONS))
    if unknown:
        raise ValueError(f"unknown videos_kwargs {unknown}; the APT video processor takes {', '.join(VIDEO_OPTIONS)}")
    options.update(videos_kwargs)
    return options, apt_tokens


def _with_video_pads(token: str, wrapper: str, texts: list[str], pads: list[str]) -> list[str]:
    """Each ``token`` of ``texts`` (with its ``wrapper`` around it where present), in order, replaced by ``pads[i]``."""
    found = sum(t.count(token) for t in texts)
    if found != len(pads):
        raise ValueError(f"the text holds {found} {token} but {len(pads)} video(s) were given")
    it = iter(pads)
    pattern = re.compile(f"{re.escape(wrapper)}|{re.escape(token)}")
    return [pattern.sub(lambda _: next(it), text) for text in texts]
