import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import aptviz
from aptviz.compute.entropy import PAD, entropy_maps
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import coverage, select_patches
from aptviz.errors import ParameterError

import reference as ref
from conftest import textured


def _np_maps(maps):
    return {ps: m.numpy().astype(np.float64) for ps, m in maps.items()}


def _assert_masks_equal(sel, expected):
    for ps, m in expected.items():
        got = sel.masks[ps].numpy()
        assert got.dtype == bool and got.shape == m.shape
        assert np.array_equal(got, m), f"scale {ps}: {np.argwhere(got != m)[:5].tolist()}"


def _blocky(h, w, seed, levels):
    """Images with flat blocks (many equal scores -> tie-breaking matters) and noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, levels, (max(1, h // 9 + 1), max(1, w // 9 + 1), 3)) * (255 // max(levels - 1, 1))
    img = np.repeat(np.repeat(small, 9, 0), 9, 1)[:h, :w].astype(np.uint8)
    noise = rng.random((h, w)) < rng.random() * 0.3
    img[noise] = rng.integers(0, 256, (int(noise.sum()), 3))
    return img


images = st.builds(
    _blocky,
    h=st.integers(1, 150),
    w=st.integers(1, 150),
    seed=st.integers(0, 10**6),
    levels=st.sampled_from([1, 2, 3, 8, 256]),
)


@given(img=images, alpha=st.floats(0, 1), thr=st.tuples(st.floats(0, 9), st.floats(0, 9)))
def test_all_methods_match_reference_and_partition(img, alpha, thr):
    maps = entropy_maps(img)
    geo = ref.Geometry(img.shape[0], img.shape[1], list(maps))
    nm = _np_maps(maps)

    v1 = select_patches(maps, "v1", thresholds=thr)
    _assert_masks_equal(v1, ref.select_thresholds(nm, geo, thr))

    v2 = select_patches(maps, "v2", alpha=alpha * 2)
    expected_thr = ref.v2_thresholds(nm, geo, alpha * 2)
    # float32 entropies summed in float64 are exact, so the thresholds are equal to the last bit
    assert v2.thresholds == expected_thr
    _assert_masks_equal(v2, ref.select_thresholds(nm, geo, v2.thresholds))

    b = select_patches(maps, "budget", alpha=alpha)
    masks, info = ref.select_budget(nm, geo, alpha)
    _assert_masks_equal(b, masks)
    assert b.budget_info.to_dict() == info

    for sel in (v1, v2, b):
        assert bool((coverage(sel.masks) == 1).all()), "masks must partition the image"
        assert sel.tokens == sum(int(m.sum()) for m in sel.masks.values())
        assert sel.base_small_tokens == maps[14].numel()
        for ps in (28, 56):  # PAD cells are never kept as whole patches
            assert not bool(sel.masks[ps][maps[ps] == PAD].any())


@given(
    img=images,
    patch_size=st.integers(1, 24),
    num_scales=st.integers(1, 4),
    bins=st.sampled_from([2, 7, 256, 1000]),
    alpha=st.floats(0, 1),
    thr=st.lists(st.floats(0, 9), min_size=3, max_size=3),
)
def test_any_patch_size_and_scale_count_match_reference(img, patch_size, num_scales, bins, alpha, thr):
    """Every method, with patch sizes, scale counts and bin counts other than the defaults."""
    maps = entropy_maps(img, patch_size=patch_size, num_scales=num_scales, bins=bins)
    geo = ref.Geometry(img.shape[0], img.shape[1], list(maps))
    nm = _np_maps(maps)
    thr = thr[: num_scales - 1]
    v1 = select_patches(maps, "v1", thresholds=thr)
    _assert_masks_equal(v1, ref.select_thresholds(nm, geo, thr))
    v2 = select_patches(maps, "v2", alpha=alpha * 2)
    assert v2.thresholds == ref.v2_thresholds(nm, geo, alpha * 2)
    _assert_masks_equal(v2, ref.select_thresholds(nm, geo, v2.thresholds))
    b = select_patches(maps, "budget", alpha=alpha)
    masks, info = ref.select_budget(nm, geo, alpha)
    _assert_masks_equal(b, masks)
    assert b.budget_info.to_dict() == info
    for sel in (v1, v2, b):
        assert bool((coverage(sel.masks) == 1).all()), "masks must partition the image"


def test_budget_with_one_scale_covers_pad_cells():
    """One scale: every finest cell is a token, PAD cells included (20x20 at 14 px: N = 4, 3 of them PAD)."""
    maps = entropy_maps(textured(20, 20), num_scales=1)
    for alpha in (0.0, 0.5, 1.0):
        sel = select_patches(maps, "budget", alpha=alpha)
        assert bool((coverage(sel.masks) == 1).all())
        assert sel.tokens == sel.budget_info.base_tokens == 4


@given(img=images, alpha=st.floats(0, 1))
def test_budget_tokens_are_base_plus_3k(img, alpha):
    sel = select_patches(entropy_maps(img), "budget", alpha=alpha)
    info = sel.budget_info
    assert info["tokens"] == sel.tokens == info["base_tokens"] + 3 * info["k"]
    assert sel.tokens <= max(info["budget"], info["base_tokens"])
    assert info["budget"] == round(alpha * sel.base_small_tokens)
    if info["base_tokens"] <= info["budget"]:
        assert abs(sel.retention - alpha) <= 3 / sel.base_small_tokens + 1e-12


@given(img=images, alphas=st.lists(st.floats(0, 1), min_size=2, max_size=6))
def test_budget_retention_increases_with_alpha(img, alphas):
    maps = entropy_maps(img)
    alphas = sorted(alphas)
    ret = [select_patches(maps, "budget", alpha=a).retention for a in alphas]
    assert ret == sorted(ret)


@given(img=images, alphas=st.lists(st.floats(0, 3), min_size=2, max_size=6))
def test_v2_retention_decreases_with_alpha(img, alphas):
    maps = entropy_maps(img)
    alphas = sorted(alphas)
    ret = [select_patches(maps, "v2", alpha=a).retention for a in alphas]
    assert ret == sorted(ret, reverse=True)


def test_sample_photos_match_reference(sample_paths):
    for path in sample_paths:
        img = np.asarray(resize_image(aptviz.load_image(path)))
        maps = entropy_maps(img)
        geo = ref.Geometry(img.shape[0], img.shape[1], list(maps))
        nm = _np_maps(maps)
        for alpha in (0.0, 0.1, 0.3, 0.55, 1.0):
            masks, info = ref.select_budget(nm, geo, alpha)
            sel = select_patches(maps, "budget", alpha=alpha)
            _assert_masks_equal(sel, masks)
            assert sel.budget_info.to_dict() == info
        _assert_masks_equal(select_patches(maps, "v1"), ref.select_thresholds(nm, geo, (3.0, 2.0)))


def test_chelsea_numbers():
    """Pinned from the pipeline and cross-checked by the reference above."""
    img = np.asarray(resize_image(aptviz.load_image("sample_images/chelsea.png")))
    assert img.shape[:2] == (308, 448)
    sel = select_patches(entropy_maps(img), "budget", alpha=0.3)
    assert sel.budget_info.to_dict() == {
        "alpha": 0.3,
        "base_small_tokens": 704,
        "base_tokens": 56,
        "budget": 211,
        "k": 51,
        "tokens": 209,
    }


def test_v1_threshold_order_28_then_56():
    maps = entropy_maps(np.zeros((112, 112, 3), np.uint8))
    maps[56][:] = 2.5  # not < 2 (56 threshold), but < 3 (28 threshold)
    sel = select_patches(maps, "v1", thresholds=(3, 2))
    assert sel.tokens_by_scale == {14: 0, 28: 16, 56: 0}
    sel = select_patches(maps, "v1", thresholds=(3, 2.6))
    assert sel.tokens_by_scale == {14: 0, 28: 0, 56: 4}


def test_v2_scale_without_data_keeps_nothing():
    maps = entropy_maps(textured(28, 40))  # one 56 row, all PAD
    sel = select_patches(maps, "v2", alpha=100.0)
    assert sel.thresholds[1] is None and int(sel.masks[56].sum()) == 0
    assert bool((coverage(sel.masks) == 1).all())


def test_single_scale():
    maps = entropy_maps(textured(56, 84), num_scales=1)
    for method in ("v1", "v2", "budget"):
        sel = select_patches(maps, method, alpha=0.3, thresholds=())
        assert sel.tokens == sel.base_small_tokens == 24


def test_budget_tie_break_larger_then_row_then_column():
    maps = entropy_maps(np.zeros((112, 112, 3), np.uint8))  # every score 0
    sel = select_patches(maps, "budget", alpha=0.5)  # budget 32, base 4, k 9
    assert sel.budget_info["k"] == 9
    assert not sel.masks[56].any()  # all four 56 cells split first
    m28 = sel.masks[28].numpy()
    split28 = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    for r, c in split28:
        assert not m28[r, c]
    assert int(m28.sum()) == 16 - 5


def test_parameter_errors():
    maps = entropy_maps(textured(56, 56))
    with pytest.raises(ParameterError):
        select_patches(maps, "budget", alpha=1.5)
    with pytest.raises(ParameterError):
        select_patches(maps, "v2", alpha=-0.1)
    with pytest.raises(ParameterError):
        select_patches(maps, "v1", thresholds=(3.0,))
    with pytest.raises(ValueError):
        select_patches(maps, "v3")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_selection_equals_cpu(sample_paths):
    img = np.asarray(resize_image(aptviz.load_image(sample_paths[1])))
    cpu, gpu = entropy_maps(img), entropy_maps(img, device="cuda")
    for method in ("v1", "v2", "budget"):
        a, b = select_patches(cpu, method, alpha=0.3), select_patches(gpu, method, alpha=0.3)
        for ps in a.masks:
            assert torch.equal(a.masks[ps], b.masks[ps].cpu())
        assert a.budget_info == b.budget_info


@given(img=images, alpha=st.floats(0, 1))
def test_numpy_and_torch_backends_select_identically(img, alpha):
    """The torch-free CPU path (NumPy) and the tensor path (CUDA, API) agree exactly."""
    from aptviz.compute.entropy import compute_maps

    np_maps = compute_maps(img)
    t_maps = {ps: torch.from_numpy(m.copy()) for ps, m in np_maps.items()}
    for method, a in (("v1", 1.0), ("v2", alpha * 2), ("budget", alpha)):
        a_sel = select_patches(np_maps, method, alpha=a)
        b_sel = select_patches(t_maps, method, alpha=a)
        assert a_sel.thresholds == b_sel.thresholds and a_sel.budget_info == b_sel.budget_info
        for ps in a_sel.masks:
            assert isinstance(a_sel.masks[ps], np.ndarray) and isinstance(b_sel.masks[ps], torch.Tensor)
            assert np.array_equal(a_sel.masks[ps], b_sel.masks[ps].numpy())


from PIL import Image  # noqa: E402


def test_single_colour_image_is_zero_entropy_and_budget_deterministic(tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (12, 200, 77)).save(path)
    a = aptviz.analyze(path, methods=["budget", "v1"], alphas=[0.37])
    b = aptviz.analyze(path, methods=["budget", "v1"], alphas=[0.37])
    assert a == b
    for s in a["entropy"].values():
        assert s["min"] == s["max"] == 0.0
    budget = a["selections"][0]
    info = budget["budget_info"]
    n = budget["base_small_tokens"]
    assert info["budget"] == round(0.37 * n) and info["tokens"] == info["base_tokens"] + 3 * info["k"]
    assert abs(budget["retention"] - 0.37) <= 3 / n
    assert a["selections"][1]["tokens_by_scale"]["14"] < n  # v1 merges flat areas
