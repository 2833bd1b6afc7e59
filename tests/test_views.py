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
