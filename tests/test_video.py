"""Videos (docs/video.md): decoding with exact indices, qwen-vl-utils sampling and sizes, the time axis,
per-tubelet APT, the static-token rule, and the outputs -- on clips the tests write themselves
(FFV1 in Matroska: lossless, so every decoded pixel is the pixel written)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import SAMPLES, textured
from conftest import command as aptviz  # the command in this process: its files and lines are the point

cv2 = pytest.importorskip("cv2")

from aptviz.compute.analysis import analyse_frames  # noqa: E402
from aptviz.compute.entropy import compute_maps, entropy_maps_over_time  # noqa: E402
from aptviz.compute.loading import open_image  # noqa: E402
from aptviz.compute.params import Params, RunSpec, build_runs  # noqa: E402
from aptviz.compute.resize import smart_resize  # noqa: E402
from aptviz.compute.video import (  # noqa: E402
    analyse_video,
    decode_video,
    drop_static,
    sample_indices,
    smart_nframes,
    static_units,
    video_pixel_bounds,
    video_stats,
)
from aptviz.errors import InputError, ParameterError  # noqa: E402

H, W = 308, 336  # multiples of 28 within the default video pixel bounds: frames are decoded at their own size
U = 28


def write_clip(path: Path, frames, fps: float = 10.0) -> Path:
    """Frames (RGB uint8, one size) as a lossless FFV1 Matroska clip."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    assert out.isOpened(), "the bundled FFmpeg writes FFV1"
    for f in frames:
        out.write(np.ascontiguousarray(f[..., ::-1]))
    out.release()
    return path


def photo(h: int = H, w: int = W) -> np.ndarray:
    """A sample photo resized to ``(h, w)`` (real texture)."""
    from PIL import Image

    return np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((w, h), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- sampling (qwen-vl-utils 0.0.14)


def reference_nframes(total: int, video_fps: float, fps: float | None, nframes: int | None) -> int:
    """qwen-vl-utils 0.0.14 ``smart_nframes``, transcribed (FRAME_FACTOR 2, 4..768 frames)."""
    if nframes is not None:
        n = round(nframes / 2) * 2
    else:
        min_frames = math.ceil(4 / 2) * 2
        max_frames = math.floor(min(768, total) / 2) * 2
        n = total / video_fps * fps
        n = min(min(max(n, min_frames), max_frames), total)
        n = math.floor(n / 2) * 2
    if not (2 <= n and n <= total):
        raise ValueError(n)
    return n


@given(
    total=st.integers(1, 20000),
    video_fps=st.floats(1.0, 240.0),
    fps=st.floats(0.05, 60.0),
    nframes=st.one_of(st.none(), st.integers(1, 2000)),
)
def test_smart_nframes_is_qwen_vl_utils(total, video_fps, fps, nframes):
    try:
        want = reference_nframes(total, video_fps, fps, nframes)
    except ValueError:
        with pytest.raises(InputError, match="at least 2 are needed|--nframes"):
            smart_nframes(total, video_fps, fps, nframes)
        return
    got = smart_nframes(total, video_fps, fps, nframes)
    assert got == want and got % 2 == 0
    if nframes is None:
        assert 2 <= got <= min(768, total)


@given(total=st.integers(2, 50000), n=st.integers(2, 768))
def test_sample_indices_are_torch_linspace_rounded(total, n):
    torch = pytest.importorskip("torch")
    n = min(n, total)
    assert sample_indices(total, n) == torch.linspace(0, total - 1, n).round().long().tolist()


@given(
    nframes=st.integers(2, 768).map(lambda n: n - n % 2),
    h=st.integers(1, 5000),
    w=st.integers(1, 5000),
)
def test_frame_size_is_fetch_video_smart_resize(nframes, h, w):
    lo, hi = video_pixel_bounds(nframes)
    assert lo == 128 * 28 * 28
    assert hi == max(min(768 * 28 * 28, 128000 * 28 * 28 * 0.9 / nframes * 2), int(lo * 1.05))
    if max(h, w) / min(h, w) > 200:
        return
    assert smart_resize(h, w, 28, lo, hi) == reference_video_resize(h, w, 28, lo, hi)


def reference_video_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: float):
    """qwen-vl-utils 0.0.14 ``smart_resize``, transcribed (it differs from transformers' at the edges)."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def test_pixel_bounds_are_overridable():
    assert video_pixel_bounds(10, 28, min_pixels=1000, max_pixels=5000) == (1000, 5000)
    assert video_pixel_bounds(10, 28, total_pixels=50_000) == (100352, 105369)  # the floor min * 1.05 wins


# ----------------------------------------------------------------------------- decoding


def test_decoded_frames_are_exactly_the_sampled_indices(tmp_path):
    frames = [textured(H, W, seed=k) for k in range(45)]
    path = write_clip(tmp_path / "c.mkv", frames, fps=15.0)
    clip = decode_video(path, Params(fps=2.0))
    want_n = reference_nframes(45, 15.0, 2.0, None)
    assert clip.frame_indices == [round(x) for x in np.round(np.linspace(0, 44, want_n))]
    assert clip.total_frames == 45 and clip.video_fps == 15.0
    for j, k in enumerate(clip.frame_indices):
        assert np.array_equal(clip.frames[j], frames[k]), f"sampled frame {j} is not frame {k}"
    assert clip.sample_fps == pytest.approx(want_n / 45 * 15.0)
    assert decode_video(path, Params(nframes=7)).frame_indices == sample_indices(45, 8)


def test_frames_are_resized_with_the_video_bounds(tmp_path):
    frames = [textured(120, 200, seed=k) for k in range(6)]
    clip = decode_video(write_clip(tmp_path / "s.mkv", frames), Params())
    lo, hi = video_pixel_bounds(6)
    assert clip.frames.shape[1:3] == smart_resize(120, 200, 28, lo, hi)
    small = decode_video(tmp_path / "s.mkv", Params(video_min_pixels=28 * 28, video_max_pixels=200 * 28 * 28))
    assert small.frames.shape[1:3] == smart_resize(120, 200, 28, 28 * 28, video_pixel_bounds(6, 28, 784, 156800)[1])


def test_bad_videos_are_one_clear_error(tmp_path):
    good = write_clip(tmp_path / "g.mkv", [textured(H, W, seed=k) for k in range(40)])
    data = good.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.webm").write_bytes(b"not a video at all" * 50)
    write_clip(tmp_path / "one.mkv", [textured(H, W)])
    p = Params()
    with pytest.raises(InputError, match=r"truncated video: \d+ of the 40 frames"):
        decode_video(tmp_path / "cut.mkv", p)
    with pytest.raises(InputError, match="empty file"):
        decode_video(tmp_path / "empty.mp4", p)
    with pytest.raises(InputError, match="not a video"):
        decode_video(tmp_path / "junk.webm", p)
    with pytest.raises(InputError, match="at least 2 are needed"):
        decode_video(tmp_path / "one.mkv", p)
    os.mkfifo(tmp_path / "pipe.mp4")  # never opened: a FIFO without a writer would block
    with pytest.raises(InputError, match="not a regular file"):
        decode_video(tmp_path / "pipe.mp4", p)


def test_video_params_validated_and_recorded_only_when_set():
    for bad in ({"fps": 0}, {"fps": -1.0}, {"nframes": 1}, {"static_threshold": -0.5}, {"video_max_pixels": 0},
                {"fps": 1.0, "nframes": 8}):
        with pytest.raises(ParameterError):
            Params(**bad)
    assert "fps" not in Params().to_dict() and "static_threshold" not in Params().to_dict()
    assert Params(static_threshold=3).to_dict()["static_threshold"] == 3.0


# ----------------------------------------------------------------------------- the time axis


@given(seed=st.integers(0, 2**16), h=st.integers(1, 90), w=st.integers(1, 90), bins=st.sampled_from([16, 256, 512]))
def test_equal_frames_give_the_image_entropy_bit_for_bit(seed, h, w, bins):
    img = textured(h, w, seed=seed)
    one = compute_maps(img, 14, 3, bins)
    two = entropy_maps_over_time(np.stack([img, img]), 14, 3, bins)
    for ps in one:
        assert np.array_equal(one[ps], two[ps])


def test_tubelet_entropy_is_the_joint_histogram(tmp_path):
    """Two different frames: each cell's entropy is that of both frames' gray values together (float64 reference)."""
    a, b = textured(56, 84, seed=1), textured(56, 84, seed=2)
    maps = entropy_maps_over_time(np.stack([a, b]), 14, 2, 512)
    gray = np.stack([x.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32) for x in (a, b)])
    bins = np.minimum((gray.astype(np.float64) * 2).astype(int), 511)
    for ps in (14, 28):
        for r in range(56 // ps):
            for c in range(84 // ps):
                counts = np.bincount(bins[:, r * ps : (r + 1) * ps, c * ps : (c + 1) * ps].ravel())
                p = counts[counts > 0] / counts.sum()
                assert abs(maps[ps][r, c] - -(p * np.log2(p)).sum()) < 1e-4


def test_one_photo_clip_gives_the_image_selection_per_tubelet(tmp_path):
    img = photo()
    path = write_clip(tmp_path / "still.mkv", [img] * 8)
    runs = build_runs(["v1", "v2:0.8", "budget:0.3"], (), None, 3, ["entropy"])
    va = analyse_video(path, runs, Params(nframes=8))
    assert len(va.tubelets) == 4
    loaded = open_image(SAMPLES / "chelsea.png")
    image = analyse_frames("img", loaded, img, runs, Params(), views=False)  # the photo at the video's size
    for tub in va.tubelets:
        assert tub.frames == 2
        for ps in image.maps:
            assert np.array_equal(tub.maps[ps], image.maps[ps])
        for got, want in zip(tub.selections, image.selections):
            assert got.selection.tokens_by_scale == want.selection.tokens_by_scale
            for ps, mask in want.selection.masks.items():
                assert np.array_equal(got.selection.masks[ps], mask)
    stats = video_stats(va)
    for sel, want in zip(stats.selections, image.selections):
        assert sel.tubelet_vit_tokens == [want.selection.tokens] * 4
        assert sel.tokens == 4 * want.selection.tokens


# ----------------------------------------------------------------------------- the static rule


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("static") / "static.mkv", [photo()] * 10)


@pytest.mark.parametrize("threshold", [0.0, 0.25, 3.0, 255.0])
def test_static_clip_keeps_only_the_first_tubelet(static_clip, threshold):
    runs = [RunSpec("budget", 0.3), RunSpec("v1", thresholds=(3.0, 2.0))]
    stats = video_stats(analyse_video(static_clip, runs, Params(nframes=10, static_threshold=threshold)))
    assert stats.time.tubelets == 5
    for sel in stats.selections:
        assert sel.tubelet_static_vit_tokens == [sel.tubelet_vit_tokens[0], 0, 0, 0, 0]
        assert sel.tubelet_static_llm_tokens == [sel.tubelet_llm_tokens[0], 0, 0, 0, 0]
        assert sel.static_llm_tokens == sel.tubelet_llm_tokens[0] > 0


def square_at(k: int) -> tuple[int, int]:
    """Top-left (y, x) of the moving square in frame ``k``: 26 px right and 17 px down a frame."""
    return 40 + 17 * k, 4 + 26 * k


def moving_square_frames(n: int = 12, side: int = 20) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    background = rng.integers(0, 200, (H, W, 3), dtype=np.uint8)  # never the square's colour
    frames = []
    for k in range(n):
        f = background.copy()
        y, x = square_at(k)
        f[y : y + side, x : x + side] = (255, 255, 255)
        frames.append(f)
    return frames


def crossed_units(frames_k: list[int], side: int = 20) -> np.ndarray:
    """Merge units the square touches in any of these frames (the square never overlaps itself two frames on)."""
    out = np.zeros((H // U, W // U), dtype=bool)
    for k in frames_k:
        y, x = square_at(k)
        out[y // U : (y + side - 1) // U + 1, x // U : (x + side - 1) // U + 1] = True
    return out


def test_moving_square_keeps_exactly_the_units_it_crosses(tmp_path):
    path = write_clip(tmp_path / "square.mkv", moving_square_frames())
    runs = [RunSpec("budget", 1.0), RunSpec("budget", 0.3)]
    va = analyse_video(path, runs, Params(nframes=12, static_threshold=0.0))
    assert va.clip.frame_indices == list(range(12))
    stats = video_stats(va)
    full, apt = stats.selections
    for i in range(1, 6):
        moving = crossed_units([2 * i - 2, 2 * i - 1, 2 * i, 2 * i + 1])
        assert np.array_equal(~va.static[i], moving), f"tubelet {i}"
        # budget 1.0 keeps every 14 px patch: 4 ViT tokens and 1 LLM token per unit crossed
        assert full.tubelet_static_vit_tokens[i] == 4 * moving.sum()
        assert full.tubelet_static_llm_tokens[i] == moving.sum()
        # budget 0.3: a patch is kept iff it touches a unit the square crosses
        for ps, mask in va.tubelets[i].selections[1].selection.masks.items():
            kept = va.kept[1][i][ps]
            r = max(1, ps // U)
            touch = np.pad(moving, ((0, -moving.shape[0] % r), (0, -moving.shape[1] % r)))
            touch = touch.reshape(touch.shape[0] // r, r, touch.shape[1] // r, r).any(axis=(1, 3))
            if ps < U:
                touch = np.repeat(np.repeat(moving, U // ps, 0), U // ps, 1)
            assert np.array_equal(kept, mask & touch[: mask.shape[0], : mask.shape[1]])
    assert full.tubelet_static_vit_tokens[0] == full.tubelet_vit_tokens[0]
    assert apt.static_vit_tokens < apt.vit_tokens


@given(threshold=st.floats(0, 300), seed=st.integers(0, 1000))
def test_static_units_follow_the_rule(threshold, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    frames[2:, :28] = frames[:2, :28]  # the first row of units repeats
    got = static_units(frames, 2, 28, threshold)
    assert not got[0].any() and got[1, 0].all()
    gray = frames.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    diff = np.abs(gray[2:] - gray[:2]).reshape(2, 2, 28, 3, 28).mean(axis=(0, 2, 4))
    close = np.abs(diff - threshold) < 1e-3  # float32 gray: leave the exact boundary out
    assert np.array_equal(got[1][~close], (diff <= threshold)[~close])


def test_drop_static_drops_a_large_patch_only_when_all_its_units_are_static():
    static = np.array([[True, True], [True, False]])
    masks = {56: np.array([[True]]), 28: np.zeros((2, 2), bool), 14: np.zeros((4, 4), bool)}
    assert drop_static(masks, static, 28)[56].all()
    assert not drop_static(masks, np.ones((2, 2), bool), 28)[56].any()


# ----------------------------------------------------------------------------- outputs


@pytest.mark.slow
def test_command_on_a_folder_of_images_and_videos(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    write_clip(src / "sq.mkv", moving_square_frames(), fps=4.0)
    (src / "broken.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + b"\x01" * 200)
    out = tmp_path / "out"
    res = aptviz(src, "-m", "budget:0.3", "--nframes", "12", "--static-threshold", "0", "-o", out, "-j", "1")
    assert res.returncode == 1, res.stderr
    assert "broken.mov" in res.stderr and "Traceback" not in res.stderr
    stats = json.loads((out / "sq" / "stats.json").read_text())
    time = stats["time"]
    assert (time["frames"], time["tubelets"], time["total_frames"]) == (12, 6, 12)
    assert time["fps"] == pytest.approx(4.0) and time["frame_indices"] == list(range(12))
    assert time["tubelet_seconds"] == [2 * i / 4.0 for i in range(6)]
    sel = stats["selections"][0]
    for key in ("tubelet_vit_tokens", "tubelet_llm_tokens", "tubelet_static_vit_tokens",
                "tubelet_static_llm_tokens", "tubelet_uniform_llm_tokens"):  # fmt: skip
        assert len(sel[key]) == 6
    assert sel["vit_tokens"] == sum(sel["tubelet_vit_tokens"]) and sel["llm_tokens"] == sum(sel["tubelet_llm_tokens"])
    assert sel["llm_tokens_uniform"] == sum(sel["tubelet_uniform_llm_tokens"]) == 6 * (H // U) * (W // U)
    files = [stats["files"][k] for k in ("timeline", "card", "scrubber")] + list(sel["files"].values())
    for rel in files:
        assert (out / "sq" / rel).stat().st_size > 0, rel
    from PIL import Image

    with Image.open(out / "sq" / sel["files"]["animation"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == 6
    assert "type=\"range\"" in (out / "sq" / stats["files"]["card"]).read_text()
    image = json.loads((out / "a" / "stats.json").read_text())
    assert image["time"] == {"frames": 1, "tubelets": 1}
    assert "fps" not in image["params"] and "tubelet_vit_tokens" not in image["selections"][0]
    rows = {Path(r["image"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["sq.mkv"]["llm_tokens"] == sel["llm_tokens"] and rows["broken.mov"]["status"] == "failed"
    from aptviz.render.report import NUMBER_KEYS, card_data

    card = card_data("sq", stats)["sels"][0]
    assert card["files"] == ["05_video/contact_sheet.jpg", None, None]  # the report's card shows the tubelets
    numbers = dict(zip([k for k, _, _ in NUMBER_KEYS], card["numbers"]))
    assert numbers["psnr_apt"] == numbers["psnr_uniform"] == "\u2013"  # not measured, not "lossless"
    assert numbers["llm_tokens"] == sel["llm_tokens"]
    before = (out / "sq" / "stats.json").stat().st_mtime_ns
    again = aptviz(src, "-m", "budget:0.3", "--nframes", "12", "--static-threshold", "0", "-o", out, "-j", "1")
    assert again.returncode == 1 and (out / "sq" / "stats.json").stat().st_mtime_ns == before  # resumed: skipped
    aptviz(src, "-m", "budget:0.3", "--nframes", "12", "--static-threshold", "1", "-o", out, "-j", "1")
    assert json.loads((out / "sq" / "stats.json").read_text())["time"]["static_threshold"] == 1.0  # redone


def test_analyze_returns_a_videos_stats(tmp_path):
    import aptviz as api

    path = write_clip(tmp_path / "s.mkv", [photo()] * 4)
    stats = api.analyze(path, methods=["budget"], alphas=[0.5], static_threshold=0)
    assert stats["time"]["tubelets"] == 2 and stats["selections"][0]["tubelet_static_vit_tokens"][1] == 0
    assert replace(Params(), fps=1.0).fps == 1.0


def test_stats_command_gives_one_row_per_video_and_selection_with_totals(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "sq.mkv", moving_square_frames(), fps=4.0)
    (src / "a.png").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    (src / "bad.avi").write_bytes(b"RIFF" + b"\x00" * 100)
    res = aptviz("stats", src, "-m", "budget:0.3", "-m", "v1", "--nframes", "12", "-o", tmp_path / "rows", "-j", "1")
    assert res.returncode == 1, res.stderr
    rows = [r for f in sorted((tmp_path / "rows").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    video = [r for r in rows if r["path"].endswith("sq.mkv")]
    assert [r["method"] for r in video] == ["budget", "v1"]
    stats = json.loads(json.dumps(video_stats(analyse_video(src / "sq.mkv", [RunSpec("budget", 0.3)],
                                                            Params(nframes=12))).to_dict()))  # fmt: skip
    assert video[0]["vit_tokens"] == stats["selections"][0]["vit_tokens"] == sum(
        stats["selections"][0]["tubelet_vit_tokens"])
    assert video[0]["llm_tokens_uniform"] == 6 * (H // U) * (W // U) and video[0]["frames"] == 12
    assert [r["status"] for r in rows if r["path"].endswith("bad.avi")] == ["failed", "failed"]


def test_terminal_table_names_frames_tubelets_and_static_tokens(static_clip):
    from rich.console import Console

    from aptviz.cli.visualize import image_table

    stats = video_stats(analyse_video(static_clip, [RunSpec("budget", 0.3)], Params(nframes=10, static_threshold=1)))
    console = Console(width=300, record=True)
    console.print(image_table(stats))
    text = " ".join(console.export_text().split())  # titles wrap at the table width
    assert "(10 of 10 frames, 5 tubelets)" in text
    assert f"static rule (T=1), all 5 tubelets: budget 0.3 {stats.selections[0].tubelet_llm_tokens[0]}" in text


def panned_zoomed_frames(n: int = 16) -> list[np.ndarray]:
    """A sample photo panned right and zoomed in over ``n`` frames, at the video's size."""
    from PIL import Image

    img = Image.open(SAMPLES / "astronaut.png").convert("RGB")
    frames = []
    for k in range(n):
        side = img.width * (1 - 0.03 * k)
        x0 = 6.0 * k
        box = (x0, 0, x0 + side, side * H / W)
        frames.append(np.asarray(img.resize((W, H), Image.Resampling.BICUBIC, box=box)))
    return frames


def test_panned_photo_gets_a_budget_per_tubelet(tmp_path):
    path = write_clip(tmp_path / "pan.mkv", panned_zoomed_frames(), fps=8.0)
    va = analyse_video(path, [RunSpec("budget", 0.3), RunSpec("v2", 1.0)], Params())  # 2 s at 2 fps: 4 frames
    assert va.clip.frame_indices == sample_indices(16, 4) and len(va.tubelets) == 2
    stats = video_stats(va)
    n = (H // 14) * (W // 14)
    budget, v2 = stats.selections
    for i, tub in enumerate(va.tubelets):
        info = tub.selections[0].selection.budget_info
        assert info.budget == round(0.3 * n) and abs(info.tokens - info.budget) <= 3
        assert budget.tubelet_vit_tokens[i] == info.tokens
        frames = va.clip.frames[2 * i : 2 * i + 2]
        assert np.array_equal(tub.maps[14], entropy_maps_over_time(frames)[14])
    assert budget.budget_info.budget == 2 * round(0.3 * n) and budget.base_small_tokens == 2 * n
    assert v2.thresholds is None and v2.tokens == sum(v2.tubelet_vit_tokens)
    assert len(set(map(tuple, (t.selections[0].selection.masks[14].ravel() for t in va.tubelets)))) == 2


def video_patchify(frames: np.ndarray, patch_size: int = 14, merge_size: int = 2, temporal: int = 2) -> np.ndarray:
    """transformers' ``Qwen2VLVideoProcessor.patchify`` (5.x) in NumPy, one video: ``(T, C, H, W)`` -> rows."""
    t, c, h, w = frames.shape
    gt, gh, gw = t // temporal, h // patch_size, w // patch_size
    patches = frames.reshape(gt, temporal, c, gh // merge_size, merge_size, patch_size, gw // merge_size,
                             merge_size, patch_size)  # fmt: skip
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(gt * gh * gw, c * temporal * patch_size * patch_size)


@pytest.mark.slow
def test_exported_video_tokens_are_qwen2_vl_video_rows(tmp_path):
    from aptviz.compute.packing import normalize_pixels

    frames = moving_square_frames(8)
    path = write_clip(tmp_path / "sq.mkv", frames)
    out = tmp_path / "out"
    res = aptviz(path, "-m", "budget:1", "-m", "budget:0.3", "--nframes", "8", "--static-threshold", "0",
                 "--export-tokens", "-o", out, "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    tokens = np.load(out / "sq" / "tokens.npz")
    assert tokens["video_grid_thw"].tolist() == [[4, H // 14, W // 14]]
    normalized = np.stack([normalize_pixels(f) for f in frames])  # (T, C, H, W)
    assert np.array_equal(tokens["apt_pixel_values_budget_alpha1"], video_patchify(normalized))
    stats = json.loads((out / "sq" / "stats.json").read_text())
    full, apt = stats["selections"]
    assert tokens["apt_vit_token_counts_budget_alpha0.3"].tolist() == apt["tubelet_vit_tokens"]
    assert tokens["apt_llm_token_counts_budget_alpha0.3_static"].tolist() == apt["tubelet_static_llm_tokens"]
    assert len(tokens["apt_pixel_values_budget_alpha0.3_static"]) == apt["static_vit_tokens"]
    # a kept row after the static rule is the same row as without it (same patch, same tubelet)
    rows, coords = tokens["apt_pixel_values_budget_alpha0.3"], tokens["apt_patch_coords_budget_alpha0.3"]
    counts = np.cumsum([0, *apt["tubelet_vit_tokens"]])
    first = {tuple(c): r for c, r in zip(coords[counts[1] : counts[2]], rows[counts[1] : counts[2]])}
    s_counts = np.cumsum([0, *apt["tubelet_static_vit_tokens"]])
    s_rows = tokens["apt_pixel_values_budget_alpha0.3_static"][s_counts[1] : s_counts[2]]
    s_coords = tokens["apt_patch_coords_budget_alpha0.3_static"][s_counts[1] : s_counts[2]]
    assert len(s_rows) and all(np.array_equal(first[tuple(c)], r) for c, r in zip(s_coords, s_rows))
    assert full["tubelet_static_vit_tokens"][0] == full["tubelet_vit_tokens"][0]


@pytest.mark.slow
def test_saved_maps_hold_every_tubelet_and_the_static_units(tmp_path):
    path = write_clip(tmp_path / "sq.mkv", moving_square_frames(8))
    out = tmp_path / "out"
    args = (path, "-m", "budget:0.3", "--nframes", "8", "--static-threshold", "0", "--save-maps", "-o", out, "-q")
    assert aptviz(*args).returncode == 0
    va = analyse_video(path, [RunSpec("budget", 0.3)], Params(nframes=8, static_threshold=0))
    with np.load(out / "sq" / "maps.npz") as maps:
        assert np.array_equal(maps["static_units"], va.static)
        for i, tub in enumerate(va.tubelets):
            assert np.array_equal(maps["entropy_28"][i], tub.maps[28])
            assert np.array_equal(maps["mask_budget_alpha0.3_56"][i], tub.selections[0].selection.masks[56])
    before = (out / "sq" / "stats.json").stat().st_mtime_ns
    assert aptviz(*args).returncode == 0 and (out / "sq" / "stats.json").stat().st_mtime_ns == before  # resumed


@given(seed=st.integers(0, 10_000), p_static=st.floats(0, 1))
def test_drop_static_matches_a_patch_by_patch_reference(seed, p_static):
    from aptviz.compute.selection import select_patches

    rng = np.random.default_rng(seed)
    h, w = 4 * U + U, 5 * U  # the 56 px grid overhangs at the bottom
    maps = compute_maps((rng.integers(0, 256, (h, w, 3)) // rng.integers(1, 64)).astype(np.uint8))
    masks = {ps: np.asarray(m) for ps, m in select_patches(maps, "budget", float(rng.random())).masks.items()}
    static = rng.random((h // U, w // U)) < p_static
    got = drop_static(masks, static, U)
    for ps, mask in masks.items():
        for r, c in np.argwhere(mask):
            y0, x0 = r * ps // U, c * ps // U
            units = static[y0 : y0 + max(1, ps // U), x0 : x0 + max(1, ps // U)]
            assert got[ps][r, c] == (not units.all()), (ps, r, c)
        assert not (got[ps] & ~mask).any()


# ----------------------------------------------------------------------------- adversarial pass (issue 27)


@given(seed=st.integers(0, 10_000), p_static=st.floats(0, 1), unit=st.sampled_from([42, 21, 70]))
def test_drop_static_with_sizes_that_do_not_nest_matches_a_patch_by_patch_reference(seed, p_static, unit):
    """Merge size 3 (42 px units, 28 px patches): a patch goes when every unit it overlaps is static."""
    rng = np.random.default_rng(seed)
    rows, cols = 3, 4
    static = rng.random((rows, cols)) < p_static
    masks = {ps: rng.random((-(-rows * unit // ps), -(-cols * unit // ps))) < 0.7 for ps in (14, 28, 56)}  # overhangs
    got = drop_static(masks, static, unit)
    for ps, mask in masks.items():
        for r, c in np.argwhere(mask):
            rows = slice(r * ps // unit, ((r + 1) * ps - 1) // unit + 1)
            cols = slice(c * ps // unit, ((c + 1) * ps - 1) // unit + 1)
            units = static[rows, cols]
            assert got[ps][r, c] == (not units.all()), (ps, r, c)  # beyond the image: no unit, dropped
        assert not (got[ps] & ~mask).any()


def test_merge_size_three_video_gets_null_llm_tokens_not_an_internal_error(tmp_path):
    """`--merge-size 3 --num-scales 2` on a clip: images give null LLM tokens; the video crashed the timeline
    (TypeError) and, with --static-threshold, the static rule (ValueError "do not nest")."""
    clip = write_clip(tmp_path / "sq.mkv", moving_square_frames(8))
    for extra in ([], ["--static-threshold", "0"]):
        out = tmp_path / f"out{len(extra)}"
        done = aptviz(clip, "-o", out, "-m", "budget:0.3", "--merge-size", "3", "--num-scales", "2", "--nframes", "8",
                      *extra)
        assert done.returncode == 0, done.stderr
        assert "internal error" not in done.stderr + done.stdout
        sel = json.loads((out / "sq" / "stats.json").read_text())["selections"][0]
        assert sel["llm_tokens"] is None and sel["tubelet_llm_tokens"] == [None] * 4
        assert (out / "sq" / "token_timeline.png").stat().st_size > 0
        if extra:
            assert sel["tubelet_static_llm_tokens"] == [None] * 4 and sel.get("static_llm_tokens") is None
            assert sel["tubelet_static_vit_tokens"][0] == sel["tubelet_vit_tokens"][0]
            assert sum(sel["tubelet_static_vit_tokens"][1:]) < sum(sel["tubelet_vit_tokens"][1:])


def test_a_bidi_control_in_a_video_name_is_shown_escaped_in_its_card_and_report_title(tmp_path):
    """`x\u202egpj.mkv` was written raw into card.html's title and report.html's card heading, where the browser
    reverses it: the clip reads as `xvkm.jpg`. Shown as `\\u202e` (as in the terminal); the data keeps the name."""
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "x\u202egpj.mkv", moving_square_frames(4))
    out = tmp_path / "out"
    done = aptviz(src, "-o", out, "-m", "budget:0.3", "-j", "1")
    assert done.returncode == 0, done.stderr
    folder = out / "x\u202egpj"
    card = (folder / "card.html").read_text(encoding="utf-8")
    report = (out / "report.html").read_text(encoding="utf-8")
    heading = report[report.index('<div class="card"') :]
    heading = heading[: heading.index("</h3>")]
    for page in (card.split("<script>")[0], heading):
        assert "\u202e" not in page and "x\\u202egpj.mkv" in page
    assert json.loads((folder / "stats.json").read_text())["image"]["path"].endswith("x\u202egpj.mkv")


def test_a_video_frame_above_the_decode_limit_is_refused_as_an_image_is(tmp_path):
    """--max-memory lowers the decode limit and large images fail alone; a video's frames ignored it: a 6000 x 6000
    clip under --max-memory 600M (estimated peak 600 MB, decode 26 MP) peaked at 1.0 GB."""
    from aptviz.datasets.rows import InputRef, image_rows
    from aptviz.pipeline import process_image

    clip = write_clip(tmp_path / "c.mkv", [textured(100, 200, seed=k) for k in range(4)])
    with pytest.raises(InputError, match=r"decompression bomb \(20,000 pixels a frame, limit 19,999"):
        decode_video(clip, Params(), max_image_pixels=19_999)
    with pytest.raises(InputError, match="decompression bomb"):
        process_image(clip, tmp_path / "out", [RunSpec("budget", 0.3)], Params(), max_image_pixels=19_999)
    assert not (tmp_path / "out" / "stats.json").exists()
    ref = InputRef("file", str(clip), None, "c.mkv", 0, 0)
    [row] = image_rows(clip, ref, Params(), [RunSpec("budget", 0.3)], max_image_pixels=19_999)
    assert row["status"] == "failed" and "decompression bomb" in row["error"]
    with pytest.raises(InputError, match="need more memory"):  # the frame passes at 20,000 (the clip is checked next)
        decode_video(clip, Params(), max_image_pixels=20_000)


def test_sampled_frames_beyond_the_runs_memory_are_refused_before_decoding(tmp_path):
    """--video-min-pixels 20000000 under --max-memory 1G resized 8 frames to 5180 x 3892 (161 MP) and peaked at
    1.54 GB: the clip's resized frames are held to 1.4 times the run's decode limit (about 10 bytes a pixel)."""
    clip = write_clip(tmp_path / "c.mkv", [textured(100, 200, seed=k) for k in range(4)])
    params = Params(nframes=4)
    n, (h, w) = 4, smart_resize(100, 200, 28, *video_pixel_bounds(4))
    needed = n * h * w
    with pytest.raises(InputError, match=rf"4 sampled frames of {w}x{h} \({needed:,} pixels\) need more memory"):
        decode_video(clip, params, max_image_pixels=int(needed / 1.4) - 1)
    assert decode_video(clip, params, max_image_pixels=int(needed / 1.4) + 1).frames.shape == (4, h, w, 3)
