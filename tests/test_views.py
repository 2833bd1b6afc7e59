"""The model view and the uniform baseline, recomputed here from SPEC §8's words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from aptviz.compute.entropy import entropy_maps
from aptviz.compute.loading import load_image
from aptviz.compute.resize import resize_image, smart_resize
from aptviz.compute.selection import select_patches
from aptviz.compute.views import compare_views, model_view, psnr, uniform_view

from conftest import textured


def reference_model_view(resized: np.ndarray, masks: dict) -> np.ndarray:
    """Patch by patch, as the SPEC says it: each kept s x s patch averaged to P x P, repeated back."""
    out = resized.copy()
    finest = min(masks)
    for ps, mask in masks.items():
        r = ps // finest
        for row, col in zip(*np.nonzero(np.asarray(mask))):
            y, x = row * ps, col * ps
            patch = resized[y : y + ps, x : x + ps].astype(np.float64)
            small = np.empty((finest, finest, 3))
            for i in range(finest):
                for j in range(finest):
                    small[i, j] = patch[i * r : (i + 1) * r, j * r : (j + 1) * r].mean(axis=(0, 1))
            small = np.round(small)  # numpy rounds half to even
            out[y : y + ps, x : x + ps] = np.kron(small, np.ones((r, r, 1))).astype(np.uint8)
    return out


def reference_psnr(a: np.ndarray, b: np.ndarray):
    se = 0.0
    n = 0
    for ca, cb in zip(a.reshape(-1, 3).T.astype(float), b.reshape(-1, 3).T.astype(float)):
        se += float(((ca - cb) ** 2).sum())
        n += ca.size
    mse = se / n
    return None if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("method,alpha", [("budget", 0.3), ("budget", 0.5), ("v2", 1.0), ("v1", None)])
def test_model_view_and_psnr_match_the_spec_on_a_sample(sample_paths, method, alpha):
    original = load_image(sample_paths[1])
    resized = np.asarray(resize_image(original))
    maps = entropy_maps(resized, device="cpu")
    sel = select_patches(maps, method, alpha=alpha if alpha is not None else 1.0)
    masks = {ps: np.asarray(m) for ps, m in sel.masks.items()}
    view = model_view(resized, masks)
    assert np.array_equal(view, reference_model_view(resized, masks))
    assert psnr(resized, view) == pytest.approx(reference_psnr(resized, view), abs=1e-9)

    # the baseline: smart_resize at max_pixels = tokens * 196, BICUBIC down from the original, NEAREST back
    h, w = smart_resize(original.height, original.width, 28, 3136, sel.tokens * 196)
    expected = np.asarray(original.resize((w, h), Image.BICUBIC).resize(resized.shape[1::-1], Image.NEAREST))
    mv = compare_views(original, resized, masks, sel.tokens)
    assert mv.stats.uniform_vit_tokens == (h // 14) * (w // 14) <= sel.tokens
    assert mv.stats.uniform_size == [w, h]
    assert np.array_equal(mv.uniform.image, expected)
    ref = reference_psnr(resized, expected)
    assert (mv.stats.psnr_uniform is None) == (ref is None)
    if ref is not None:
        assert mv.stats.psnr_uniform == pytest.approx(ref, abs=1e-9)


def test_apt_beats_uniform_at_half_budget_on_the_photos(sample_paths):
    for path in sample_paths:
        original = load_image(path)
        resized = np.asarray(resize_image(original))
        sel = select_patches(entropy_maps(resized), "budget", alpha=0.5)
        stats = compare_views(original, resized, sel.masks, sel.tokens).stats
        assert stats.psnr_apt > stats.psnr_uniform, path.name


def test_identity_when_every_patch_is_finest():
    img = textured(56, 84)
    masks = select_patches(entropy_maps(img), "budget", alpha=1.0).masks
    assert np.array_equal(model_view(img, masks), img)
    assert psnr(img, model_view(img, masks)) is None


def test_rounding_is_half_to_even():
    img = np.zeros((28, 28, 3), np.uint8)
    img[:2, :2, 0] = [[1, 2], [1, 2]]  # mean 1.5 -> 2
    img[:2, 2:4, 0] = [[0, 1], [0, 1]]  # mean 0.5 -> 0
    masks = {14: np.zeros((2, 2), bool), 28: np.ones((1, 1), bool)}
    view = model_view(img, masks)
    assert view[0, 0, 0] == 2 and view[1, 1, 0] == 2
    assert view[0, 2, 0] == 0 and view[1, 3, 0] == 0


@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 50), st.floats(0.0, 1.0))
def test_model_view_property(rows, cols, seed, alpha):
    img = textured(rows * 28, cols * 28, seed)
    sel = select_patches(entropy_maps(img), "budget", alpha=alpha)
    view = model_view(img, sel.masks)
    assert np.array_equal(view, reference_model_view(img, {k: np.asarray(v) for k, v in sel.masks.items()}))
    # the uniform baseline never uses more tokens than APT once APT keeps at least the minimum image
    u = uniform_view(Image.fromarray(img), (cols * 28, rows * 28), sel.tokens)
    if sel.tokens * 196 >= 3136:
        assert u.vit_tokens <= sel.tokens


@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 10**6), st.floats(0.0, 1.0), st.integers(2, 4))
def test_model_view_of_any_kept_patches_matches_the_spec(rows, cols, seed, density, scales):
    """Any masks (not only a selection's partition), random pixels, 2-4 scales: only the kept patches are
    averaged (model_view's fast path), the same pixels as SPEC §8's patch by patch."""
    rng = np.random.default_rng(seed)
    h, w = rows * 28, cols * 28
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = {}
    for k in range(scales):
        ps = 14 << k
        grid = rng.random((-(-h // ps), -(-w // ps))) < density / (k + 1)
        grid[h // ps :] = False  # only patches inside the image are ever kept
        grid[:, w // ps :] = False
        masks[ps] = grid
    assert np.array_equal(model_view(img, masks), reference_model_view(img, masks))


# ---- SPEC §17: the baseline at equal LLM tokens, and the sweep of sizes ----


def _ssim_ref(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)  # fmt: skip


@pytest.mark.parametrize("method,alpha", [("budget", 0.3), ("v2", 1.0), ("v2", 1.3)])
def test_uniform_at_equal_llm_tokens_matches_the_spec_on_the_photos(sample_paths, method, alpha):
    """max_pixels = llm_tokens * (P*m)**2, BICUBIC down from the original, NEAREST back; its LLM tokens <= APT's."""
    from aptviz.compute.analysis import analyse_file, selection_stats
    from aptviz.compute.params import Params, RunSpec
    from aptviz.compute.tokens import llm_tokens

    for path in sample_paths:
        a = analyse_file(path, [RunSpec(method, alpha)], Params())
        [s] = a.selections
        original, resized = a.loaded.image, a.resized
        llm = llm_tokens(s.selection.tokens_by_scale)
        h, w = smart_resize(original.height, original.width, 28, 3136, llm * 28 * 28)
        expected = np.asarray(original.resize((w, h), Image.BICUBIC).resize(resized.shape[1::-1], Image.NEAREST))
        st_ = selection_stats(s.selection, a.params, s.view)
        assert st_.llm_uniform_size == [w, h] and st_.llm_uniform_tokens == (h // 28) * (w // 28) <= llm, path.name
        assert np.array_equal(s.view.uniform_llm.image, expected)
        ref = reference_psnr(resized, expected)
        assert st_.psnr_uniform_llm == pytest.approx(ref, abs=1e-9)
        assert st_.ssim_uniform_llm == pytest.approx(_ssim_ref(resized, expected), abs=1e-4)
        # the baseline at equal ViT tokens is unchanged beside it
        assert st_.uniform_vit_tokens <= st_.vit_tokens and st_.uniform_vit_tokens <= 4 * st_.llm_uniform_tokens


def test_a_selection_without_an_llm_count_has_no_llm_baseline():
    """merge size 3: 28 px patches straddle 42 px merge units, so no LLM tokens and no baseline at equal LLM tokens."""
    img = textured(84, 126)
    sel = select_patches(entropy_maps(img), "budget", alpha=0.5)
    mv = compare_views(Image.fromarray(img), img, sel.masks, sel.tokens, merge_size=3)
    assert mv.uniform_llm is None and mv.stats.llm_uniform_tokens is None and mv.stats.psnr_uniform_llm is None


def test_uniform_sweep_covers_every_selection_on_the_photos(sample_paths):
    """stats.json uniform_sweep: distinct sizes from below every selection's retention (both costs) to the full size,
    each point the baseline at that size (PSNR and SSIM recomputed here)."""
    from aptviz.pipeline import analyze

    for path in sample_paths:
        stats = analyze(path, methods=("v2:0.8,1.3", "budget:0.2,0.5"))
        sweep = stats["uniform_sweep"]
        rets = [p["retention"] for p in sweep]
        assert rets == sorted(set(rets)) and len(sweep) >= 8, path.name
        lows = [min(s["retention"], s["llm_retention"]) for s in stats["selections"]]
        highs = [max(s["retention"], s["llm_retention"]) for s in stats["selections"]]
        assert rets[0] <= min(lows) and rets[-1] >= max(highs) and rets[-1] == 1.0
        original = load_image(path)
        resized = np.asarray(resize_image(original))
        n = (resized.shape[0] // 14) * (resized.shape[1] // 14)
        for p in sweep[:: max(1, len(sweep) // 4)]:
            w, h = p["size"]
            assert w % 28 == 0 and h % 28 == 0 and p["vit_tokens"] == (w // 14) * (h // 14) == 4 * p["llm_tokens"]
            assert p["retention"] == p["vit_tokens"] / n
            shown = np.asarray(original.resize((w, h), Image.BICUBIC).resize(resized.shape[1::-1], Image.NEAREST))
            ref = reference_psnr(resized, shown)
            assert (p["psnr"] is None) == (ref is None)
            if ref is not None:
                assert p["psnr"] == pytest.approx(ref, abs=1e-9)
            assert p["ssim"] == pytest.approx(_ssim_ref(resized, shown), abs=1e-4)
        assert sweep[-1]["psnr"] is None and sweep[-1]["ssim"] == 1.0  # the full size is the resized image


def test_each_uniform_size_is_resized_once(monkeypatch):
    """The baselines at equal ViT and at equal LLM tokens often have one Qwen2-VL size (and selections share
    sizes): each size is resized from the original once, its picture shared, the same pixels as made alone. The
    sweep resizes only the sizes it scores (not the selections' own, not the full size)."""
    from aptviz.compute.views import all_views, uniform_sweep

    original = Image.fromarray(textured(600, 800, 3))
    resized = np.asarray(resize_image(original))
    h, w = resized.shape[:2]
    masks = {14: np.ones((h // 14, w // 14), bool), 28: np.zeros((-(-h // 28), -(-w // 28)), bool)}
    bicubic = []
    real = Image.Image.resize

    def counting(self, size, resample=None, *args, **kwargs):
        if resample == Image.Resampling.BICUBIC and self.size == original.size:
            bicubic.append(tuple(size))
        return real(self, size, resample, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", counting)
    views = all_views(original, resized, [(masks, 400, 100), (masks, 400, 90), (masks, 1200, None)])
    sizes = [tuple(v.uniform.size) for v in views] + [tuple(v.uniform_llm.size) for v in views[:2]]
    assert sizes[0] == sizes[1] == sizes[3] != sizes[4]  # 400 ViT tokens = 100 LLM tokens; 90 is smaller
    assert views[0].uniform_llm.image is views[0].uniform.image
    assert sorted(bicubic) == sorted(set(sizes))
    for u in [v.uniform for v in views] + [v.uniform_llm for v in views[:2]]:
        alone = uniform_view(original, (w, h), u.max_pixels // 196)  # max_pixels = the tokens asked * P * P
        assert alone.size == u.size and np.array_equal(alone.image, u.image)
    bicubic.clear()
    known = {tuple(v.uniform.size): (1.0, 1.0) for v in views}
    sweep = uniform_sweep(original, resized, (0.05, 0.1, 0.1001, 0.3, 1.0), known=known)
    assert sorted(bicubic) == sorted({tuple(p["size"]) for p in sweep} - set(known) - {(w, h)})
    assert len(bicubic) == len(set(bicubic)) >= 2
