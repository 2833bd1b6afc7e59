"""aptviz's OpenCV SSIM against scikit-image's structural_similarity (the definition, SPEC-side)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from skimage.metrics import structural_similarity

from aptviz.compute.entropy import entropy_maps
from aptviz.compute.loading import load_image
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import select_patches
from aptviz.compute.ssim import WIN_SIZE, SsimReference, gaussian_kernel, ssim
from aptviz.compute.views import llm_uniform_view, model_view, uniform_view

from conftest import textured

TOL = 1e-4  # the promise; the tests also report how far inside it the implementation is


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        structural_similarity(
            a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
    )


def noisy(img: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-amplitude, amplitude + 1, img.shape), 0, 255).astype(np.uint8)


def test_kernel_is_scipys_11_tap_gaussian():
    from scipy import ndimage

    impulse = np.zeros(41)
    impulse[20] = 1.0
    ref = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="reflect")
    np.testing.assert_allclose(ref[15:26], gaussian_kernel(), atol=1e-15)
    assert WIN_SIZE == 11 and np.count_nonzero(ref) == 11


def test_opencv_reflect_border_is_scipys_reflect():
    """scipy.ndimage mode='reflect' repeats the edge pixel: OpenCV's BORDER_REFLECT, not BORDER_REFLECT_101."""
    import cv2
    from scipy import ndimage

    rng = np.random.default_rng(3)
    a = rng.random((23, 17))
    k = gaussian_kernel()
    ref = ndimage.gaussian_filter(a, 1.5, truncate=3.5, mode="reflect")
    ours = cv2.sepFilter2D(a, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    other = cv2.sepFilter2D(a, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.abs(other - ref).max() > 1e-3


def _photo_pairs(path):
    """The resized photo against its model view (budget 0.3), uniform view, noise and a blur."""
    loaded = load_image(path)
    resized = np.asarray(resize_image(loaded))
    sel = select_patches(entropy_maps(resized), method="budget", alpha=0.3)
    apt = model_view(resized, sel.masks)
    uni = uniform_view(loaded, (resized.shape[1], resized.shape[0]), sel.tokens).image
    blurred = np.asarray(Image.fromarray(resized).resize((resized.shape[1] // 3, resized.shape[0] // 3)).resize(
        (resized.shape[1], resized.shape[0]), Image.Resampling.BILINEAR))  # fmt: skip
    return resized, {"model view": apt, "uniform": uni, "noise": noisy(resized, 25), "blur": blurred}


def test_matches_skimage_on_sample_photos(sample_paths):
    assert sample_paths
    worst = 0.0
    for path in sample_paths:
        resized, others = _photo_pairs(path)
        ref = SsimReference(resized)
        for name, other in others.items():
            want = skimage_ssim(resized, other)
            assert abs(ssim(resized, other) - want) < TOL, (path.name, name)
            assert abs(ref.score(other) - want) < TOL, (path.name, name)
            worst = max(worst, abs(ref.score(other) - want))
        assert abs(ref.score(resized) - 1.0) < 1e-6
    assert worst < 1e-6  # float32 filtering with shifted values: far inside the promise


def _made_pairs():
    rng = np.random.default_rng(7)
    flat = np.full((48, 64, 3), 255, np.uint8)
    two = np.zeros((60, 60, 3), np.uint8)
    two[:, 30:] = 255  # the worst case for rounding: values 128 away from the mean on both halves
    two_off = np.where(two == 0, 1, 254).astype(np.uint8)
    checker = ((np.indices((40, 40)).sum(axis=0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    noise_a = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    return {
        "flat vs flat-1": (flat, flat - 1),
        "flat white vs black": (flat, np.zeros_like(flat)),
        "flat vs itself": (flat, flat),
        "two-tone vs off by one": (two, two_off),
        "checker vs flat": (checker, np.full_like(checker, 128)),
        "checker vs inverse": (checker, 255 - checker),
        "noise vs noise": (noise_a, rng.integers(0, 256, noise_a.shape, dtype=np.uint8)),
        "textured vs noisy": (textured(96, 128), noisy(textured(96, 128), 10)),
        "smallest (11x11)": (noise_a[:11, :11], noisy(noise_a[:11, :11], 30)),
        "thin (11x70)": (noise_a[:11], noisy(noise_a[:11], 30)),
    }


@pytest.mark.parametrize("name", list(_made_pairs()))
def test_matches_skimage_on_made_images(name):
    a, b = _made_pairs()[name]
    want = skimage_ssim(a, b)
    got = ssim(a, b)
    assert abs(got - want) < 1e-6, (got, want)
    assert abs(ssim(b, a) - want) < 1e-6  # symmetric, as the definition


@given(
    h=st.integers(11, 40),
    w=st.integers(11, 40),
    seed=st.integers(0, 2**32 - 1),
    amplitude=st.sampled_from([0, 1, 5, 40, 255]),
)
def test_matches_skimage_on_random_images(h, w, seed, amplitude):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if seed % 3 == 0:  # flat areas too, not only noise
        a[: h // 2] = a[0, 0]
    b = noisy(a, amplitude, seed + 1) if amplitude < 255 else rng.integers(0, 256, a.shape, dtype=np.uint8)
    assert abs(ssim(a, b) - skimage_ssim(a, b)) < TOL


@pytest.mark.parametrize("shape", [(7, 7), (10, 40), (40, 10)])
def test_smaller_than_the_window_is_refused_like_skimage(shape):
    a = np.zeros((*shape, 3), np.uint8)
    with pytest.raises(ValueError, match="win_size exceeds image extent"):
        skimage_ssim(a, a)
    with pytest.raises(ValueError, match=r"at least 11 x 11 px \(its window\); the reference is \d+ x \d+"):
        ssim(a, a)


def test_bad_inputs_are_clear_errors():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="one size"):
        ssim(a, np.zeros((20, 21, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ssim(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        ssim(a[..., 0], a[..., 0])


def _run_cli(*args):
    from conftest import command  # in this process: stats.json's numbers are the point

    return command(*args)


def test_cli_ssim_fields_are_skimages_on_the_views(tmp_path, sample_paths):
    """stats.json's ssim_apt / ssim_uniform: scikit-image's SSIM of the model view and the uniform view."""
    path = sample_paths[0]
    r = _run_cli(path, "-m", "budget:0.3", "-m", "v2:1.0", "--save-maps", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / path.stem / "stats.json").read_text())
    loaded = load_image(path)
    resized = np.asarray(resize_image(loaded))
    maps = np.load(tmp_path / path.stem / "maps.npz")
    assert len(stats["selections"]) == 2
    for sel in stats["selections"]:
        label = f"{sel['method']}_alpha{sel['alpha']:g}"
        masks = {ps: maps[f"mask_{label}_{ps}"] for ps in (14, 28, 56)}
        apt = model_view(resized, masks)
        uni = uniform_view(loaded, (resized.shape[1], resized.shape[0]), sel["tokens"]).image
        assert abs(sel["ssim_apt"] - skimage_ssim(resized, apt)) < TOL
        assert abs(sel["ssim_uniform"] - skimage_ssim(resized, uni)) < TOL
        assert 0 < sel["ssim_apt"] < 1 and 0 < sel["ssim_uniform"] < 1
        llm = llm_uniform_view(loaded, (resized.shape[1], resized.shape[0]), sel["llm_tokens"]).image
        assert abs(sel["ssim_uniform_llm"] - skimage_ssim(resized, llm)) < TOL
    text = " ".join(r.stdout.split())
    first = stats["selections"][0]
    assert (f"SSIM, APT / uniform at equal ViT / equal LLM tokens: budget 0.3 {first['ssim_apt']:.3f}/"
            f"{first['ssim_uniform']:.3f}/{first['ssim_uniform_llm']:.3f}") in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("ssim_apt", "ssim_uniform", "ssim_uniform_llm", "psnr_uniform_llm", "llm_uniform_tokens"):
        assert [row[key] for row in summary] == [s[key] for s in stats["selections"]]
    page = (tmp_path / "report.html").read_text()
    data = json.loads(re.search(r'id="aptviz-data">(.*?)</script>', page, re.S).group(1))  # what the page shows
    keys = [n[0] for n in data["numbers"]]
    assert {"ssim_apt", "ssim_uniform"} <= set(keys) and "ssim_apt" in data["table"]["columns"]
    card = data["cards"][0]["sels"][0]["numbers"]
    assert abs(card[keys.index("ssim_apt")] - stats["selections"][0]["ssim_apt"]) < 1e-5


def test_all_views_scores_every_selection_as_one_at_a_time(sample_paths):
    """One banded pass over the image for every selection (uniform pictures shared by size) = each alone."""
    from aptviz.compute.views import all_views, compare_views

    loaded = load_image(sample_paths[1])
    resized = np.asarray(resize_image(loaded))
    maps = entropy_maps(resized)
    sels = [select_patches(maps, method=m, alpha=a) for m, a in (("budget", 0.3), ("v2", 1.0), ("budget", 0.3))]
    together = all_views(loaded, resized, [(s.masks, s.tokens) for s in sels])
    for sel, view in zip(sels, together):
        alone = compare_views(loaded, resized, sel.masks, sel.tokens)
        assert view.stats == alone.stats
        assert abs(view.stats.ssim_uniform - skimage_ssim(resized, view.uniform.image)) < TOL


@given(st.integers(11, 160), st.integers(11, 160), st.integers(0, 10**6), st.integers(0, 4))
def test_bands_equal_to_the_reference_skip_their_filtering_and_change_no_bit(h, w, seed, patches):
    """A band of the image identical to the reference's (a model view's finest patches) has exact-zero
    filterings: scoring it without computing them gives the very same float as computing them, and the
    SSIM stays scikit-image's."""
    import cv2

    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    view = ref.copy()
    for _ in range(patches):  # a few changed blocks; the other bands stay identical
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        view[y : y + int(rng.integers(1, 20)), x : x + int(rng.integers(1, 20))] = rng.integers(0, 256, 3)
    skipped = SsimReference(ref).scores([view, ref])
    real = cv2.countNonZero
    try:
        cv2.countNonZero = lambda a: 1  # every band filtered, as if it differed
        filtered = SsimReference(ref).scores([view, ref])
    finally:
        cv2.countNonZero = real
    assert skipped == filtered
    assert abs(skipped[0] - skimage_ssim(ref, view)) < TOL and skipped[1] == pytest.approx(1.0, abs=1e-6)


@given(st.integers(11, 400), st.integers(11, 90), st.integers(0, 10**6))
def test_the_block_size_changes_no_bit_of_a_score(h, w, seed):
    """Bands filtered together in blocks (their halo once) give every score bit for bit as band by band does:
    the same map values, the bands' sums added in the same order; any height (last band and block partial)."""
    from aptviz.compute import ssim as module

    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    views = [noisy(ref, 40, seed), ref.copy(), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)]
    views[1][h // 3 : h // 2] = 0  # identical outside a few rows
    saved = module.BLOCK_BANDS
    try:
        found = set()
        for size in (1, 2, 3, 5):
            module.BLOCK_BANDS = size
            found.add(tuple(SsimReference(ref).scores(views)))
    finally:
        module.BLOCK_BANDS = saved
    assert len(found) == 1
