"""Selections on any importance measure (docs/pipeline.md §7) against tests/reference.py's selectors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_importance import SYNTHETIC

import aptviz
from aptviz.compute.importance import compute_importance
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import coverage, select_patches
from aptviz.errors import ParameterError

import reference as ref
from conftest import SAMPLES, textured

MEASURES = [("laplacian", "mean"), ("laplacian", "max"), ("laplacian", "std"),
            ("upsample-mse", "mean"), ("upsample-mse", "max"), ("upsample-mse", "std")]  # fmt: skip


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    out = {p.stem: np.asarray(resize_image(aptviz.load_image(p))) for p in sorted(SAMPLES.glob("*.png"))}
    out.update({name: make() for name, make in SYNTHETIC.items()})
    return out


def _masks_equal(sel, expected):
    for ps, m in sel.masks.items():
        got = m.numpy() if isinstance(m, torch.Tensor) else m
        assert np.array_equal(got, expected[ps]), f"masks differ at scale {ps}"


def check_against_reference(img, measure, aggregate, alphas_v2=(0.8, 1.0, 1.2), alphas_budget=(0.1, 0.3, 0.5, 1.0)):
    maps = compute_importance(img, measure, aggregate)
    geo = ref.Geometry(img.shape[0], img.shape[1], list(maps))
    nm = {ps: m.astype(np.float64) for ps, m in maps.items()}
    own = measure == "upsample-mse"
    for alpha in alphas_v2:
        v2 = select_patches(maps, "v2", alpha=alpha, measure=measure)
        expected = ref.v2_thresholds(nm, geo, alpha)
        assert [t is None for t in v2.thresholds] == [t is None for t in expected]
        assert [t for t in v2.thresholds if t is not None] == pytest.approx(
            [t for t in expected if t is not None], rel=1e-12
        )
        _masks_equal(v2, ref.select_thresholds(nm, geo, v2.thresholds))
        assert (coverage(v2.masks) == 1).all()
    for alpha in alphas_budget:
        b = select_patches(maps, "budget", alpha=alpha, measure=measure)
        masks, info = ref.select_budget(nm, geo, alpha, own_value=own)
        _masks_equal(b, masks)
        assert b.budget_info.to_dict() == info
        assert (coverage(b.masks) == 1).all()


@pytest.mark.parametrize("measure,aggregate", MEASURES)
def test_v2_and_budget_match_reference(images, measure, aggregate):
    for img in images.values():
        check_against_reference(img, measure, aggregate)


@given(h=st.integers(1, 120), w=st.integers(1, 120), seed=st.integers(0, 2**16), alpha=st.floats(0, 1))
def test_random_images_match_reference(h, w, seed, alpha):
    img = textured(h, w, seed)
    for measure, aggregate in MEASURES[::2]:
        check_against_reference(img, measure, aggregate, (alpha * 2,), (alpha,))


def test_budget_on_upsample_mse_scores_own_value():
    """The finest upsample-mse map is all zeros: finest-mean scores would tie everywhere."""
    img = np.asarray(resize_image(aptviz.load_image(SAMPLES / "coffee.png")))
    maps = compute_importance(img, "upsample-mse")
    geo = ref.Geometry(img.shape[0], img.shape[1], list(maps))
    nm = {ps: m.astype(np.float64) for ps, m in maps.items()}
    sel = select_patches(maps, "budget", alpha=0.3, measure="upsample-mse")
    own, _ = ref.select_budget(nm, geo, 0.3, own_value=True)
    finest_mean, _ = ref.select_budget(nm, geo, 0.3)
    _masks_equal(sel, own)
    assert any(not np.array_equal(own[ps], finest_mean[ps]) for ps in own)


def test_v1_needs_thresholds_except_for_entropy():
    img = textured(84, 140)
    for measure in ("laplacian", "upsample-mse"):
        maps = compute_importance(img, measure)
        with pytest.raises(ParameterError, match=f"no default thresholds for {measure}"):
            select_patches(maps, "v1", measure=measure)
        sel = select_patches(maps, "v1", thresholds=(0.05, 0.02), measure=measure)
        geo = ref.Geometry(84, 140, list(maps))
        _masks_equal(
            sel, ref.select_thresholds({ps: m.astype(np.float64) for ps, m in maps.items()}, geo, (0.05, 0.02))
        )
    assert select_patches(compute_importance(img), "v1").thresholds == [3.0, 2.0]


def test_torch_maps_select_the_same(images):
    img = images["astronaut"]
    for measure, aggregate in MEASURES:
        cpu = compute_importance(img, measure, aggregate)
        tt = aptviz.importance_maps(img, measure, aggregate)
        for method, alpha in (("v2", 1.0), ("budget", 0.3)):
            a = select_patches(cpu, method, alpha=alpha, measure=measure)
            b = select_patches(tt, method, alpha=alpha, measure=measure)
            assert a.tokens_by_scale == b.tokens_by_scale
