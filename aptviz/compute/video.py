"""Videos: decoding, sampling and per-frame size, per-tubelet analysis, the static-token rule (docs/video.md).

A video is the image flow with a time axis (t > 1): its sampled frames are
resized once, frames ``(2i, 2i+1)`` form tubelet ``i`` (Qwen2-VL's
``temporal_patch_size``), and every tubelet is analysed like an image by
:func:`aptviz.compute.analysis.analyse_frames` -- importance over both frames'
pixels per cell, the image selection methods, ViT and LLM tokens per scale.

* Decoding: OpenCV's bundled FFmpeg (``opencv-python-headless``, already a
  dependency for the importance measures: no new package). Frames are
  decoded sequentially and the wanted indices kept, never by seeking, so
  the indices are exact; the frame count is the number of frames that
  decode, not the header's estimate.
* Sampling and size follow qwen-vl-utils 0.0.14 ``fetch_video``
  (:func:`smart_nframes`, :func:`sample_indices`, :func:`video_pixel_bounds`);
  frames are resized with Pillow BICUBIC as images are (qwen-vl-utils uses
  torchvision's antialiased bicubic: same sizes, pixels may differ by rounding).
* Static tokens (``static_threshold``): a merge unit of tubelet ``i > 0`` is
  static when the mean absolute gray difference of its ``2 u^2`` pixels
  against the same unit of tubelet ``i - 1`` is ``<= T`` (RLT's rule on merge
  units); APT patches lying wholly in static units are dropped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz._text import text_path
from aptviz._version import __version__
from aptviz.compute.analysis import Analysis, analyse_frames, entropy_summary, selection_stats
from aptviz.compute.entropy import grayscale
from aptviz.compute.histogram import value_histogram
from aptviz.compute.loading import FileIdentity, LoadedImage, check_regular, decode_limit, file_identity
from aptviz.compute.params import Params, RunSpec
from aptviz.compute.resize import smart_resize
from aptviz.compute.stats import BudgetInfo, ImageInfo, ImageStats, SelectionStats, TimeAxis
from aptviz.compute.tokens import llm_tokens
from aptviz.errors import InputError

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoAnalysis",
    "VideoClip",
    "analyse_video",
    "decode_video",
    "drop_static",
    "is_video",
    "sample_indices",
    "smart_nframes",
    "static_units",
    "unit_differences",
    "video_pixel_bounds",
    "video_stats",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".mkv", ".avi"})

FRAME_FACTOR = 2  # the frame count is a multiple of it (qwen-vl-utils)
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_UNITS = 128  # per-frame pixel bounds in merge units (u^2 pixels each)
VIDEO_MAX_UNITS = 768
VIDEO_TOTAL_UNITS = 128000 * 0.9  # all frames together
#: A clip's sampled frames take about 10 bytes a pixel while analysed (measured: 1.54 GB for 8 frames of
#: 5180 x 3892) against 14 for a decode (aptviz.runs.memory): the decode limit lets through 1.4 times its pixels.
CLIP_PIXELS_PER_DECODE_PIXEL = 1.4
TRUNCATED_SLACK = 0.05  # a header may overstate its frame count by this much (estimated from the duration)


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video by its extension (any case).

    Examples
    --------
    >>> is_video("clip.MP4"), is_video("a.png")
    (True, False)
    """
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def smart_nframes(total: int, video_fps: float, fps: float = 2.0, nframes: int | None = None) -> int:
    """How many frames to sample, as qwen-vl-utils 0.0.14 ``smart_nframes``.

    ``nframes`` given: rounded to a multiple of 2. Else ``total / video_fps *
    fps`` clamped to ``[4, min(768, total)]`` (bounds taken to multiples of
    2), at most ``total``, floored to a multiple of 2.

    Raises
    ------
    InputError
        When the count is not within ``[2, total]`` (a video of 1 frame).

    Examples
    --------
    >>> smart_nframes(300, 30.0), smart_nframes(300, 30.0, fps=0.1), smart_nframes(3, 30.0)
    (20, 4, 2)
    >>> smart_nframes(9000, 30.0), smart_nframes(100, 25.0, nframes=7)
    (600, 8)
    """
    if nframes is not None:
        n = round(nframes / FRAME_FACTOR) * FRAME_FACTOR
    else:
        lo = math.ceil(FPS_MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
        hi = math.floor(min(FPS_MAX_FRAMES, total) / FRAME_FACTOR) * FRAME_FACTOR
        n = total / video_fps * fps
        n = min(min(max(n, lo), hi), total)
        n = math.floor(n / FRAME_FACTOR) * FRAME_FACTOR
    if n > total:
        raise InputError(f"cannot sample {n} frames (--nframes) from a video of {total} frames")
    if n < FRAME_FACTOR:
        raise InputError(f"cannot sample {n} frames from a video of {total} frame(s): at least 2 are needed")
    return int(n)


def sample_indices(total: int, nframes: int) -> list[int]:
    """Frame indices ``round(linspace(0, total - 1, nframes))`` exactly as qwen-vl-utils takes them.

    That is ``torch.linspace(...).round()``: float32 values (a float32 step;
    the first half counted up from 0, the second down from ``total - 1``, each
    value rounded once) and halves rounded to even. A float64 linspace
    differs where a value lies near ``k + 0.5``.

    Examples
    --------
    >>> sample_indices(10, 4), sample_indices(2524, 291)[25]
    ([0, 3, 6, 9], 218)
    """
    if nframes == 1:
        return [0]
    step = float(np.float32(total - 1) / np.float32(nframes - 1))
    i = np.arange(nframes, dtype=np.float64)
    # step * i is exact in float64 (24 x 32 bits), so each value is rounded to float32 once (as torch's FMA does)
    values = np.where(i < nframes // 2, step * i, (total - 1) - step * (nframes - 1 - i)).astype(np.float32)
    return [int(v) for v in np.round(values)]


def video_pixel_bounds(
    nframes: int, factor: int = 28, min_pixels: int | None = None, max_pixels: int | None = None,
    total_pixels: int | None = None,
) -> tuple[int, float]:  # fmt: skip
    """Per-frame ``(min_pixels, max_pixels)`` of qwen-vl-utils 0.0.14 ``fetch_video``.

    ``max = max(min(max_pixels, total_pixels / nframes * 2), int(min_pixels * 1.05))``
    with defaults ``min_pixels = 128 u^2``, ``max_pixels = 768 u^2``,
    ``total_pixels = 115200 u^2`` (``u = factor``); any of them may be given.

    Examples
    --------
    >>> video_pixel_bounds(20)
    (100352, 602112)
    >>> video_pixel_bounds(768)
    (100352, 235200.0)
    """
    unit = factor * factor
    lo = VIDEO_MIN_UNITS * unit if min_pixels is None else min_pixels
    hi = VIDEO_MAX_UNITS * unit if max_pixels is None else max_pixels
    total = VIDEO_TOTAL_UNITS * unit if total_pixels is None else total_pixels
    return lo, max(min(hi, total / nframes * FRAME_FACTOR), int(lo * 1.05))


# ----------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class VideoClip:
    """The sampled, resized frames of one video and how they were sampled.

    Attributes
    ----------
    frames : ndarray
        ``(T, H, W, 3)`` uint8 RGB, read-only, resized by smart_resize.
    first : PIL.Image.Image
        The first sampled frame at its original size.
    total_frames : int
        Frames that decode (all of them are read).
    video_fps : float
        The file's frame rate.
    frame_indices : list of int
        The sampled frames' indices.
    identity : FileIdentity or None
        The file, as for images (resume).
    """

    frames: np.ndarray
    first: object
    total_frames: int
    video_fps: float
    frame_indices: list[int]
    identity: FileIdentity | None = None

    @property
    def sample_fps(self) -> float:
        """Frames sampled per second of video (qwen-vl-utils' ``sample_fps``)."""
        return len(self.frame_indices) / max(self.total_frames, 1e-6) * self.video_fps


def _quiet_ffmpeg() -> None:
    """FFmpeg's own warnings (truncated streams) go nowhere: aptviz says one line itself."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def resize_frame(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR frame -> RGB uint8 at ``size = (h, w)`` with Pillow BICUBIC (a copy when the size is kept)."""
    from PIL import Image

    rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
    if rgb.shape[:2] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BICUBIC))


def _read(path: Path, wanted: list[int], size_of) -> tuple[np.ndarray | None, int, object]:
    """Decode every frame in order and keep the ``wanted`` ones resized, in one preallocated array.

    Returns the ``(len(wanted), h, w, 3)`` frames (None when none was reached),
    the number of frames that decode, and the first wanted frame at its own size.
    """
    import cv2
    from PIL import Image

    slots: dict[int, list[int]] = {}
    for k, i in enumerate(wanted):
        slots.setdefault(i, []).append(k)
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        out, index, first, size, filled = None, 0, None, None, 0
        while cap.grab():
            if index in slots:
                ok, frame = cap.retrieve()
                if not ok or frame is None or frame.ndim != 3:
                    raise InputError(f"cannot decode frame {index}")
                if out is None:
                    first = Image.fromarray(np.ascontiguousarray(frame[..., ::-1]))
                    size = size_of(frame.shape[0], frame.shape[1])
                    out = np.empty((len(wanted), *size, 3), dtype=np.uint8)
                small = resize_frame(frame, size)
                for k in slots[index]:
                    out[k] = small
                    filled += 1
            index += 1
    finally:
        cap.release()
    return (out if filled == len(wanted) else None), index, first


def _check_memory(width: int, height: int, n: int, size_of, limit: int) -> None:
    """Raise :class:`InputError` when a frame exceeds the decode limit, or ``n`` resized frames what it allows.

    The memory plan (``--max-memory``) counts a decode of ``limit`` pixels
    (14 bytes each); the resized clip takes about 10 bytes a pixel while
    analysed, so it may hold :data:`CLIP_PIXELS_PER_DECODE_PIXEL` times as many.
    """
    if width * height > limit:  # as an image's
        raise InputError(
            f"refused as a possible decompression bomb ({width * height:,} pixels a frame, limit {limit:,}; "
            "a larger --max-pixels or --max-memory raises it)"
        )
    if n and width > 0 and height > 0:
        fh, fw = size_of(height, width)
        if n * fh * fw > CLIP_PIXELS_PER_DECODE_PIXEL * limit:
            raise InputError(
                f"{n} sampled frames of {fw}x{fh} ({n * fh * fw:,} pixels) need more memory than this run "
                f"allows ({int(CLIP_PIXELS_PER_DECODE_PIXEL * limit):,} pixels); lower --video-min-pixels, "
                "--video-max-pixels or --nframes, or raise --max-memory"
            )


def decode_video(path: str | Path, params: Params, max_image_pixels: int | None = None) -> VideoClip:
    """Decode a video and sample and resize its frames as qwen-vl-utils 0.0.14 does.

    Parameters
    ----------
    path : str or Path
        Video file (anything OpenCV's FFmpeg reads).
    params : Params
        ``fps``/``nframes``, the video pixel bounds and ``factor``.
    max_image_pixels : int, optional
        The run's decode limit per frame, as for images (default
        :func:`aptviz.compute.loading.decode_limit`; ``--max-memory`` lowers it).

    Raises
    ------
    InputError
        One line: not a regular or an empty file, not a video, no frame rate,
        too few frames, or truncated (fewer frames decode than the header
        announces).
    """
    _quiet_ffmpeg()
    import cv2

    path = Path(path)
    st = check_regular(path)
    if st.st_size == 0:
        raise InputError("empty file (0 bytes)")
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        if not cap.isOpened():
            raise InputError("not a video OpenCV's FFmpeg can read (unknown format or damaged file)")
        header_total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        video_fps = float(cap.get(cv2.CAP_PROP_FPS))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    limit = decode_limit() if max_image_pixels is None else int(max_image_pixels)
    _check_memory(width, height, 0, None, limit)
    if not (video_fps > 0 and math.isfinite(video_fps)):
        raise InputError("the video has no frame rate")
    total = max(header_total, 0)
    for attempt in range(2):  # a second pass only when the header's frame count was wrong
        try:
            n = smart_nframes(total, video_fps, params.fps, params.nframes) if total else 0
        except InputError:
            if attempt:
                raise
            n = 0  # the header's count may be wrong: count the frames that decode first
        indices = sample_indices(total, n) if n else []
        lo, hi = video_pixel_bounds(
            n or 1, params.factor, params.video_min_pixels, params.video_max_pixels, params.video_total_pixels
        )

        def size_of(h: int, w: int, lo=lo, hi=hi) -> tuple[int, int]:
            try:
                return smart_resize(h, w, params.factor, lo, hi)
            except ValueError as exc:
                raise InputError(str(exc)) from exc

        _check_memory(width, height, n, size_of, limit)
        kept, decoded, first = _read(path, indices, size_of)
        if decoded == 0:
            raise InputError("no frame could be decoded (empty or damaged video)")
        if decoded < header_total and header_total - decoded > max(2, TRUNCATED_SLACK * header_total):
            raise InputError(f"truncated video: {decoded} of the {header_total} frames its header announces decode")
        if decoded == total and kept is not None:
            break
        logger.debug("{}: {} frames decode, the header said {}; sampling again", path, decoded, total)
        total = decoded
    else:  # pragma: no cover - the second pass reads the count the first one found
        raise InputError("the video's frame count changed between two reads")
    frames = kept
    frames.flags.writeable = False
    return VideoClip(frames, first, total, video_fps, indices, file_identity(path))


# ----------------------------------------------------------------------------- static units


def unit_differences(previous: np.ndarray, current: np.ndarray, unit: int) -> np.ndarray:
    """Mean absolute gray difference per merge unit between two tubelets.

    Frame ``k`` of ``current`` is compared with frame ``k`` of ``previous``
    (frame ``2i`` with ``2i - 2``, ``2i + 1`` with ``2i - 1``); the mean runs
    over the unit's ``T * u^2`` pixels, in float64 of the float32 gray values
    (docs/pipeline.md §1.3).

    Parameters
    ----------
    previous, current : ndarray
        ``(T, H, W, 3)`` uint8, ``H`` and ``W`` multiples of ``unit``.
    unit : int
        Merge unit side in pixels (``patch_size * merge_size``).

    Returns
    -------
    ndarray
        ``(H / unit, W / unit)`` float64.

    Examples
    --------
    >>> a = np.zeros((2, 56, 56, 3), np.uint8); b = a.copy(); b[1, :28, :28] = 255
    >>> unit_differences(a, b, 28).round(2).tolist()
    [[127.49, 0.0], [0.0, 0.0]]
    """
    t, h, w = current.shape[0], current.shape[1], current.shape[2]
    diff = np.abs(grayscale(current) - grayscale(previous))
    return diff.reshape(t, h // unit, unit, w // unit, unit).mean(axis=(0, 2, 4), dtype=np.float64)


def static_units(frames: np.ndarray, temporal: int, unit: int, threshold: float) -> np.ndarray:
    """Static merge units of every tubelet: ``(tubelets, H / u, W / u)`` bool (tubelet 0: none static).

    A unit of tubelet ``i > 0`` is static when :func:`unit_differences`
    against tubelet ``i - 1`` is ``<= threshold``. One tubelet pair at a time
    (memory stays that of two tubelets).

    Examples
    --------
    >>> clip = np.zeros((4, 56, 28, 3), np.uint8); clip[2:, 28:] = 9
    >>> static_units(clip, 2, 28, 0.0)[:, :, 0].tolist()
    [[False, False], [True, False]]
    """
    n = frames.shape[0] // temporal
    h, w = frames.shape[1] // unit, frames.shape[2] // unit
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(1, n):  # tubelets, not pixels: each step is vectorised over the frame
        prev, cur = frames[(i - 1) * temporal : i * temporal], frames[i * temporal : (i + 1) * temporal]
        out[i] = unit_differences(prev, cur, unit) <= threshold
    return out


def drop_static(masks: dict, static: np.ndarray, unit: int) -> dict:
    """The masks with every patch lying wholly in static merge units dropped.

    A patch no larger than a unit lies in one unit; a larger patch (``ps =
    r u``) covers ``r x r`` units and is dropped only when all are static;
    with sizes that do not nest (merge size 3), a patch is dropped when every
    unit it overlaps is static.

    Parameters
    ----------
    masks : dict[int, ndarray]
        ``{ps: bool grid}`` of one tubelet's selection.
    static : ndarray
        ``(H / u, W / u)`` bool, that tubelet's static units.
    unit : int
        Merge unit side in pixels.

    Examples
    --------
    >>> static = np.array([[True, False]])
    >>> masks = {14: np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool), 28: np.array([[0, 1]], bool)}
    >>> {ps: m.astype(int).tolist() for ps, m in drop_static(masks, static, 28).items()}
    {14: [[0, 0, 0, 0], [0, 0, 0, 0]], 28: [[0, 1]]}
    """
    out = {}
    for ps, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if unit % ps == 0:
            r = unit // ps
            cover = np.repeat(np.repeat(static, r, axis=0), r, axis=1)[: mask.shape[0], : mask.shape[1]]
        elif ps % unit == 0:
            r = ps // unit
            rows, cols = mask.shape
            padded = np.ones((rows * r, cols * r), dtype=bool)  # beyond the image: no unit to keep
            padded[: static.shape[0], : static.shape[1]] = static[: rows * r, : cols * r]
            cover = padded.reshape(rows, r, cols, r).all(axis=(1, 3))
        else:  # sizes that do not nest (merge size 3): a patch goes when every unit it overlaps is static
            cover = _all_static(static, mask.shape, ps, unit)
        out[ps] = mask & ~cover
    return out


def _all_static(static: np.ndarray, shape: tuple[int, int], ps: int, unit: int) -> np.ndarray:
    """Per ``ps`` px patch of a ``shape`` grid: whether every merge unit it overlaps is static (any sizes).

    A 2-D prefix sum of the moving units; each patch's unit rectangle is
    read from it, so nothing loops over patches. Units beyond the image count
    as static (no unit to keep).

    Examples
    --------
    >>> static = np.array([[True, True, False]])   # 42 px units, 28 px patches
    >>> _all_static(static, (1, 4), 28, 42).tolist()
    [[True, True, True, False]]
    """
    moving = np.zeros((static.shape[0] + 1, static.shape[1] + 1), dtype=np.int64)
    moving[1:, 1:] = np.cumsum(np.cumsum(~static, axis=0), axis=1)

    def span(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(n)
        return np.minimum(k * ps // unit, size), np.minimum(((k + 1) * ps - 1) // unit + 1, size)

    r0, r1 = span(shape[0], static.shape[0])
    c0, c1 = span(shape[1], static.shape[1])
    count = (moving[r1][:, c1] - moving[r0][:, c1] - moving[r1][:, c0] + moving[r0][:, c0])
    return count == 0


# ----------------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class VideoAnalysis:
    """Everything computed for one video: the clip, one :class:`Analysis` per tubelet, the static rule.

    Attributes
    ----------
    path : Path
        The video as named by the caller.
    clip : VideoClip
        The sampled, resized frames.
    params : Params
        The parameters, device resolved.
    tubelets : tuple of Analysis
        Tubelet ``i``'s analysis (``frames`` = temporal patch size).
    static : ndarray or None
        ``(tubelets, H / u, W / u)`` static units, None without ``static_threshold``.
    kept : tuple of tuple of dict, or None
        Per selection, per tubelet: the masks after the static rule.
    """

    path: Path
    clip: VideoClip
    params: Params
    tubelets: tuple[Analysis, ...]
    static: np.ndarray | None = None
    kept: tuple | None = None

    @property
    def temporal(self) -> int:
        """Frames per tubelet."""
        return self.params.temporal_patch_size

    @property
    def maps_by_measure(self) -> dict:
        """``{measure: {ps: map}}`` with every tubelet's map stacked along the rows (as one image's, for rows)."""
        return {m: _stacked(self, m) for m in self.tubelets[0].maps_by_measure}

    def stats(self, render: dict | None = None) -> ImageStats:
        """:func:`video_stats` of this analysis."""
        return video_stats(self, render)

    def tubelet_seconds(self) -> list[float]:
        """Start time in seconds of every tubelet (its first frame's index over the frame rate)."""
        step, fps = self.temporal, self.clip.video_fps
        return [self.clip.frame_indices[min(i * step, len(self.clip.frame_indices) - 1)] / fps
                for i in range(len(self.tubelets))]  # fmt: skip


def tubelet_frames(frames: np.ndarray, temporal: int) -> np.ndarray:
    """Frames padded to a multiple of ``temporal`` by repeating the last (as Qwen2-VL's processor does)."""
    extra = -frames.shape[0] % temporal
    if extra:
        frames = np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)])
    return frames


def analyse_video(path: str | Path, runs: list[RunSpec], params: Params, max_image_pixels: int | None = None
                  ) -> VideoAnalysis:  # fmt: skip
    """Decode, sample and resize a video, analyse every tubelet, and apply the static rule.

    Raises
    ------
    InputError
        When the video cannot be decoded (see :func:`decode_video`).
    """
    path, params = Path(path), params.resolved()
    clip = decode_video(path, params, max_image_pixels)
    t = params.temporal_patch_size
    frames = tubelet_frames(clip.frames, t)
    first = clip.first
    loaded = LoadedImage(first, clip.total_frames, "RGB", None, 1, clip.identity)
    logger.debug("{}: {} of {} frames, {}x{} -> {}x{}", path, len(clip.frame_indices), clip.total_frames,
                 first.width, first.height, frames.shape[2], frames.shape[1])  # fmt: skip
    tubelets = tuple(
        analyse_frames(path, loaded, frames[i : i + t], runs, params, views=False)
        for i in range(0, frames.shape[0], t)
    )
    static = kept = None
    if params.static_threshold is not None:
        static = static_units(frames, t, params.factor, params.static_threshold)
        static.flags.writeable = False
        kept = tuple(
            tuple(drop_static(tub.selections[j].selection.masks, static[i], params.factor)
                  for i, tub in enumerate(tubelets))
            for j in range(len(runs))
        )  # fmt: skip
    return VideoAnalysis(path, clip, params, tubelets, static, kept)


# ----------------------------------------------------------------------------- stats


def _summed_budget(infos: list[BudgetInfo | None]) -> BudgetInfo | None:
    if any(i is None for i in infos):
        return None
    return BudgetInfo(infos[0].alpha, *(sum(getattr(i, k) for i in infos)
                                        for k in ("base_small_tokens", "base_tokens", "budget", "k", "tokens")))


def _video_selection(va: VideoAnalysis, j: int) -> SelectionStats:
    """Selection ``j`` over all tubelets: the image fields summed, and one entry per tubelet."""
    p = va.params
    per = [selection_stats(tub.selections[j].selection, p, None, tub.selections[j].spec) for tub in va.tubelets]
    first = per[0]
    by_scale = {ps: sum(s.tokens_by_scale[ps] for s in per) for ps in first.tokens_by_scale}
    tokens, base = sum(s.tokens for s in per), sum(s.base_small_tokens for s in per)
    out = SelectionStats(
        method=first.method,
        alpha=first.alpha,
        thresholds=first.thresholds if first.method == "v1" else None,  # v2's differ per tubelet
        tokens_by_scale=by_scale,
        tokens=tokens,
        base_small_tokens=base,
        retention=tokens / base,
        target_retention=first.target_retention,
        importance=first.importance,
        aggregate=first.aggregate,
        budget_info=_summed_budget([s.budget_info for s in per]),
    ).with_token_counts(p.patch_size, p.merge_size)
    out.tubelet_vit_tokens = [s.vit_tokens for s in per]
    out.tubelet_llm_tokens = [s.llm_tokens for s in per]
    out.tubelet_uniform_llm_tokens = [s.llm_tokens_uniform for s in per]
    if va.kept is not None:
        kept = va.kept[j]
        counts = [{ps: int(np.count_nonzero(m)) for ps, m in masks.items()} for masks in kept]
        out.tubelet_static_vit_tokens = [sum(c.values()) for c in counts]
        out.tubelet_static_llm_tokens = [_llm_or_none(c, p) for c in counts]
        out.static_vit_tokens = sum(out.tubelet_static_vit_tokens)
        out.static_llm_tokens = _sum_or_none(out.tubelet_static_llm_tokens)
    return out


def _llm_or_none(counts: dict, p: Params) -> int | None:
    """LLM tokens of ``counts``, None where the patch sizes do not nest in merge units (as for images)."""
    try:
        return llm_tokens(counts, p.patch_size, p.merge_size)
    except ValueError:
        return None


def _sum_or_none(values: list) -> int | None:
    return None if any(v is None for v in values) else sum(values)


def _stacked(va: VideoAnalysis, measure: str) -> dict:
    """Every tubelet's map of ``measure`` stacked along the rows (for summaries and histograms)."""
    return {ps: np.concatenate([tub.maps_by_measure[measure][ps] for tub in va.tubelets])
            for ps in va.tubelets[0].maps_by_measure[measure]}  # fmt: skip


def video_stats(va: VideoAnalysis, render: dict | None = None) -> ImageStats:
    """The stats.json numbers of one video: the image fields summed over tubelets, the time axis, per-tubelet lists.

    Pure. ``grid`` is one tubelet's; ``importance`` summaries and histograms
    run over every tubelet's cells.
    """
    p, first = va.params, va.tubelets[0]
    h, w = first.resized.shape[:2]
    clip, ident = va.clip, va.clip.identity
    measure = first.measure
    maps = _stacked(va, measure)
    several = first.several_measures
    return ImageStats(
        aptviz_version=__version__,
        image=ImageInfo(
            path=text_path(va.path),
            original_size=(clip.first.width, clip.first.height),
            resized_size=(w, h),
            frames=clip.total_frames,
            source_mode="RGB",
            resolved_path=None if ident is None else ident.resolved_path,
            size_bytes=None if ident is None else ident.size_bytes,
            mtime_ns=None if ident is None else ident.mtime_ns,
        ),
        params=p,
        grid={ps: tuple(m.shape) for ps, m in first.maps.items()},
        entropy={ps: entropy_summary(m) for ps, m in maps.items()},
        selections=[_video_selection(va, j) for j in range(len(first.selections))],
        importance_histogram=value_histogram(maps, measure, p.bins),
        importance_by_measure={
            m: {ps: entropy_summary(a) for ps, a in _stacked(va, m).items()} for m in first.maps_by_measure
        } if several else None,
        importance_histograms={
            m: value_histogram(_stacked(va, m), m, p.bins) for m in first.maps_by_measure
        } if several else None,
        render=render,
        time=TimeAxis(
            frames=len(clip.frame_indices),
            tubelets=len(va.tubelets),
            fps=clip.sample_fps,
            video_fps=clip.video_fps,
            total_frames=clip.total_frames,
            frame_indices=list(clip.frame_indices),
            tubelet_seconds=va.tubelet_seconds(),
            static_threshold=p.static_threshold,
        ),
    )  # fmt: skip
