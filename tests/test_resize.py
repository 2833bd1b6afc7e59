import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import aptviz
from aptviz.compute.resize import resize_image
from aptviz.errors import InputError


def _transformers_smart_resize():
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    except ImportError:  # transformers 5.x keeps the PIL backend free of torchvision
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    return smart_resize


def _call(fn, *args):
    try:
        return fn(*args)
    except ValueError as exc:
        return ("error", str(exc).split(",")[0])


def test_equals_transformers_on_random_and_edge_sizes():
    ref = _transformers_smart_resize()
    rng = random.Random(1234)
    cases = []
    for _ in range(4000):
        h = rng.choice([rng.randint(1, 64), rng.randint(1, 2000), rng.randint(1, 20000)])
        w = rng.choice([rng.randint(1, 64), rng.randint(1, 2000), rng.randint(1, 20000)])
        factor = rng.choice([28, 28, 14, 32, 16, 56, 1, 2])
        lo = rng.choice([56 * 56, 1, 3136, 10_000, 200_000])
        hi = rng.choice([28 * 28 * 1280, 1003520, 50_000, 4_000_000, lo, lo + 1])
        cases.append((h, w, factor, lo, max(lo, hi)))
    edges = [1, 2, 13, 14, 15, 27, 28, 29, 41, 42, 43, 55, 56, 57, 199, 200, 201, 1001, 1002, 1004, 5600, 5601]
    for h in edges:
        for w in edges:
            cases.append((h, w, 28, 3136, 1003520))
    cases += [(1, 200, 28, 3136, 1003520), (1, 201, 28, 3136, 1003520), (200, 1, 28, 3136, 1003520)]
    cases += [(1002, 1001, 28, 3136, 1003520), (6000, 4000, 28, 3136, 1003520), (4000, 6000, 28, 3136, 30_000_000)]
    mismatches = [c for c in cases if _call(aptviz.smart_resize, *c) != _call(ref, *c)]
    assert not mismatches, mismatches[:10]


def test_defaults_match_spec():
    assert aptviz.smart_resize(300, 451) == _transformers_smart_resize()(300, 451) == (308, 448)
    assert aptviz.smart_resize(512, 512) == (504, 504)


def test_aspect_ratio_over_200_is_refused():
    with pytest.raises(ValueError, match="absolute aspect ratio must be smaller than 200"):
        aptviz.smart_resize(1, 201)
    with pytest.raises(InputError, match="aspect ratio"):
        resize_image(Image.new("RGB", (402, 2)))


def test_resize_is_pillow_bicubic_to_the_smart_size():
    import numpy as np

    from conftest import textured

    img = Image.fromarray(textured(300, 451))
    out = resize_image(img)
    assert out.size == (448, 308)
    expected = img.resize((448, 308), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 300), st.integers(1, 300), st.integers(1, 120), st.integers(1, 60_000), st.integers(0, 60_000)
)
def test_resize_never_exceeds_max_pixels(h, w, factor, min_pixels, extra):
    """Issue 27: the resize never has more than ``max_pixels`` pixels: where smart_resize (as transformers)
    would give more -- a unit larger than max-pixels, or min-pixels rounded up past it -- the image is refused."""
    from aptviz.compute.resize import smart_resize

    max_pixels = min_pixels + extra
    if max(h, w) / min(h, w) > 200:
        return
    want = smart_resize(h, w, factor, min_pixels, max_pixels)
    try:
        out = resize_image(Image.new("RGB", (w, h)), factor, min_pixels, max_pixels)
    except InputError as exc:
        assert want[0] * want[1] > max_pixels and "more than max-pixels" in str(exc)
        return
    assert out.size == (want[1], want[0]) and out.width * out.height <= max_pixels


def test_min_pixels_rounded_up_past_max_pixels_is_one_clear_error():
    """min = max = 56 x 56 on a 10 x 1000 image: smart_resize gives 28 x 560 (15680 pixels); refused."""
    with pytest.raises(InputError, match=r"resizes to 560x28 = 15680 pixels, more than max-pixels \(3136\)"):
        resize_image(Image.new("RGB", (1000, 10)), 28, 3136, 3136)


from conftest import textured  # noqa: E402


def test_aspect_ratio_over_200(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (602, 3), (9, 9, 9)).save(path)
    with pytest.raises(InputError, match="aspect ratio must be smaller than 200"):
        aptviz.analyze(path)


def test_small_and_thin_images_follow_smart_resize(tmp_path):
    Image.fromarray(textured(10, 10)).save(tmp_path / "tiny.png")
    Image.fromarray(textured(1, 150)).save(tmp_path / "thin.png")
    assert aptviz.analyze(tmp_path / "tiny.png")["image"]["resized_size"] == [56, 56]
    assert aptviz.analyze(tmp_path / "thin.png")["image"]["resized_size"] == [700, 28]
