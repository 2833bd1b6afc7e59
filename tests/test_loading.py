import numpy as np
import pytest
from PIL import Image

import aptviz
from aptviz.compute.loading import open_image

from conftest import textured


def _arr(img):
    return np.asarray(img)


def test_rgb_png_loads_unchanged(make_image):
    path = make_image("a.png", 40, 60)
    img = aptviz.load_image(path)
    assert img.mode == "RGB" and img.size == (60, 40)
    assert np.array_equal(_arr(img), textured(40, 60))


def test_16bit_png_is_scaled_not_white(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = _arr(aptviz.load_image(path))
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155


def test_float_tiff_is_scaled(tmp_path):
    vals = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    path = tmp_path / "f.tif"
    Image.fromarray(vals, mode="F").save(path)
    rgb = _arr(aptviz.load_image(path))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert abs(int(rgb[16, 0, 0]) - round(vals[16, 0] * 255)) <= 1


def test_int32_tiff_16bit_range_is_scaled(tmp_path):
    vals = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(vals, mode="I").save(path)
    rgb = _arr(aptviz.load_image(path))
    assert rgb.max() == round(vals.max() * 255 / 65535)


def test_cmyk_jpeg_converts_like_pillow(tmp_path):
    cmyk = Image.fromarray(textured(48, 64)).convert("CMYK")
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        expected = _arr(im.convert("RGB"))
    assert np.array_equal(_arr(aptviz.load_image(path)), expected)


# EXIF orientation -> the transpose that makes the stored pixels upright
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_exif_orientation_all_eight(tmp_path, orientation, fmt):
    upright = np.zeros((30, 50, 3), np.uint8)
    upright[:, :] = (0, 0, 255)
    upright[:10, :10] = (255, 0, 0)  # marker: top-left must stay top-left
    true_img = Image.fromarray(upright)
    stored = true_img
    if orientation in _UPRIGHT:
        t = _UPRIGHT[orientation]
        stored = true_img.transpose(_INVERSE.get(t, t))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{fmt}"
    stored.save(path, exif=exif, **({"quality": 98} if fmt == "jpg" else {}))
    loaded = _arr(aptviz.load_image(path)).astype(int)
    assert loaded.shape == upright.shape
    if fmt == "png":
        assert np.array_equal(loaded, upright)
    else:
        assert np.abs(loaded - upright).mean() < 4
        assert loaded[3, 3, 0] > 200 and loaded[3, 3, 2] < 60
        assert loaded[25, 45, 2] > 200


def test_palette_with_transparency_composites_on_white(tmp_path):
    p = Image.new("P", (20, 20), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    p.paste(1, (0, 0, 10, 20))
    p.info["transparency"] = 0
    path = tmp_path / "pal.png"
    p.save(path, transparency=0)
    rgb = _arr(aptviz.load_image(path))
    assert tuple(rgb[5, 5]) == (255, 0, 0)
    assert tuple(rgb[5, 15]) == (255, 255, 255)


def test_grayscale_alpha_and_rgba_composite_on_white(tmp_path):
    la = np.zeros((10, 10, 2), np.uint8)
    la[..., 0] = 50
    la[:, 5:, 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    rgb = _arr(aptviz.load_image(path))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 9]) == (50, 50, 50)

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert tuple(_arr(aptviz.load_image(path))[0, 0]) == (255, 127, 127)


def test_grayscale_and_bilevel(tmp_path):
    g = Image.fromarray(textured(20, 30)[..., 0])
    g.save(tmp_path / "g.png")
    rgb = _arr(aptviz.load_image(tmp_path / "g.png"))
    assert np.array_equal(rgb[..., 1], np.asarray(g))
    g.convert("1").save(tmp_path / "b.png")
    assert set(np.unique(_arr(aptviz.load_image(tmp_path / "b.png")))) <= {0, 255}


def test_animated_gif_uses_first_frame_and_counts_frames(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = open_image(path)
    assert loaded.frames == 3
    assert tuple(_arr(loaded.image)[8, 8]) == (255, 0, 0)


def test_multipage_tiff_uses_first_page(tmp_path):
    pages = [Image.new("RGB", (16, 16), c) for c in [(10, 20, 30), (200, 100, 0)]]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    loaded = open_image(path)
    assert loaded.frames == 2
    assert tuple(_arr(loaded.image)[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize("ext,kw", [("webp", {"lossless": True}), ("bmp", {}), ("tiff", {}), ("png", {})])
def test_lossless_formats_roundtrip(make_image, ext, kw):
    path = make_image(f"x.{ext}", 33, 47, **kw)
    assert np.array_equal(_arr(aptviz.load_image(path)), textured(33, 47))


def test_rgb_with_colour_key_transparency_composites_on_white(tmp_path):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:, 4:] = (10, 200, 30)
    path = tmp_path / "key.png"
    Image.fromarray(arr).save(path, transparency=(0, 0, 0))
    with Image.open(path) as im:
        assert im.mode == "RGB" and "transparency" in im.info
    rgb = _arr(aptviz.load_image(path))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 7]) == (10, 200, 30)


import os  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from aptviz.compute import loading  # noqa: E402
from aptviz.errors import InputError  # noqa: E402


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda tmp: Path("/dev/zero"), r"not a regular file \(a character device\)"),
        (lambda tmp: (os.mkfifo(tmp / "pipe.png"), tmp / "pipe.png")[1], r"not a regular file \(a named pipe\)"),
        (lambda tmp: Path("/proc/self/status"), r"not a regular file \(reports 0 bytes but has content"),
        (lambda tmp: (tmp / "dir.png").mkdir() or tmp / "dir.png", r"not a regular file \(a folder\)"),
        (lambda tmp: (tmp / "empty.png").write_bytes(b"") or tmp / "empty.png", r"empty file \(0 bytes\)"),
    ],
    ids=["dev-zero", "fifo", "proc", "folder", "empty"],
)
@pytest.mark.timing
def test_special_files_are_not_regular_files(tmp_path, make, reason):
    path = make(tmp_path)
    if not path.exists():
        pytest.skip(f"{path} does not exist here")
    outcome: list = []

    def load():  # a FIFO without a writer must not block the open
        try:
            open_image(path)
        except InputError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "opening blocked"
    assert len(outcome) == 1
    import re

    assert re.match(reason, outcome[0]), outcome[0]


def test_decode_limit_rises_with_max_pixels(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(textured(60, 60)).save(path)  # 3600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000
    with pytest.raises(InputError, match=r"decompression bomb \(3,600 pixels, limit 2,000"):
        open_image(path)
    assert loading.decode_limit(5000) == 5000
    assert open_image(path, loading.decode_limit(5000)).image.size == (60, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


import resource  # noqa: E402
import time  # noqa: E402

from conftest import png_bomb, truncated_jpeg  # noqa: E402


def test_decompression_bomb_is_refused_fast_with_low_memory(tmp_path):
    path = png_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="decompression bomb"):
        open_image(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize(
    "maker,reason",
    [
        (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
        (lambda p: p.write_text("hello, I am text"), "not a recognised image format"),
        (truncated_jpeg, "truncated"),
    ],
)
def test_bad_files_raise_input_error(tmp_path, maker, reason):
    path = tmp_path / "bad.jpg"
    maker(path)
    with pytest.raises(InputError, match=reason):
        open_image(path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(textured(20, 20)).save(path)
    if os.geteuid() != 0:  # root reads anything: simulate the OS refusing instead
        path.chmod(0)
    else:
        import aptviz.compute.loading as loading

        def deny(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(loading.Image, "open", deny)
    with pytest.raises(InputError, match="permission denied"):
        open_image(path)


def test_any_other_decoder_exception_is_an_input_error(tmp_path, monkeypatch):
    import aptviz.compute.loading as loading

    path = tmp_path / "x.png"
    Image.fromarray(textured(20, 20)).save(path)

    def explode(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(loading.ImageOps, "exif_transpose", explode)
    with pytest.raises(InputError, match="RuntimeError: decoder exploded"):
        open_image(path)
