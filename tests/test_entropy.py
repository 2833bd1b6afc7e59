import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import aptviz
from aptviz.compute.entropy import (
    PAD,
    _bin_keys,
    _finest_histograms,
    compute_maps,
    entropy_maps,
    set_num_threads,
)
from aptviz.compute.resize import resize_image

import reference as ref
from conftest import textured


def _check_against_reference(img, patch_size=14, num_scales=3, bins=512):
    maps = entropy_maps(img, patch_size=patch_size, num_scales=num_scales, bins=bins)
    assert sorted(maps) == [patch_size * 2**i for i in range(num_scales)]
    for ps, m in maps.items():
        assert m.dtype == torch.float32
        expected = ref.entropy_map(img, ps, bins)
        assert m.shape == expected.shape
        got = m.numpy().astype(np.float64)
        pad = expected == PAD
        assert np.array_equal(got == PAD, pad), f"PAD cells differ at scale {ps}"
        assert np.abs(got[~pad] - expected[~pad]).max(initial=0.0) < 1e-4
        # in fact the float32 maps are the exact values correctly rounded, but for rare ties
        same = got[~pad] == expected[~pad].astype(np.float32).astype(np.float64)
        assert same.mean() >= 0.999 if same.size >= 1000 else same.sum() >= same.size - 1


@pytest.mark.parametrize("h,w", [(56, 84), (70, 100), (28, 28), (13, 200), (1, 1), (113, 57)])
def test_matches_float64_brute_force(h, w):
    _check_against_reference(textured(h, w, seed=h * w))


def test_sample_photo_matches_brute_force(sample_paths):
    img = np.asarray(resize_image(aptviz.load_image(sample_paths[0])))[:196, :280]
    _check_against_reference(img)


@pytest.mark.parametrize("ps,scales,bins", [(16, 3, 256), (8, 4, 100), (14, 1, 512), (10, 2, 7)])
def test_other_patch_sizes_and_bins(ps, scales, bins):
    _check_against_reference(textured(90, 130, seed=ps), ps, scales, bins)


@given(
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    levels=st.integers(1, 256),
    seed=st.integers(0, 2**16),
)
def test_random_images_match_brute_force(h, w, levels, seed):
    rng = np.random.default_rng(seed)
    img = (rng.integers(0, levels, (h, w, 3)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    _check_against_reference(img)


@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    patch_size=st.integers(1, 20),
    num_scales=st.integers(1, 4),
    bins=st.one_of(st.sampled_from([1, 2, 3, 7, 100, 255, 256, 1000, 4096]), st.integers(1, 4096)),
    seed=st.integers(0, 2**16),
)
def test_any_patch_size_scale_count_and_bin_count_match_brute_force(h, w, patch_size, num_scales, bins, seed):
    _check_against_reference(textured(h, w, seed=seed), patch_size, num_scales, bins)


@functools.cache
def _float32_boundary_colours(bins: int) -> np.ndarray:
    """Colours whose bin differs between a float32 and the exact float64 ``gray * bins / 256``."""
    v = np.arange(256, dtype=np.float32)
    w = [np.float32(x) for x in (0.2989, 0.5870, 0.1140)]
    gray = (v[:, None, None] * w[0] + v[None, :, None] * w[1]) + v[None, None, :] * w[2]  # as ref.gray_f32
    f32 = np.floor(gray * np.float32(bins) / np.float32(256))
    f64 = np.minimum(np.floor(gray.astype(np.float64) * bins / 256), bins - 1)
    rgb = np.stack(np.nonzero(f32 != f64), axis=-1).astype(np.uint8)
    assert np.array_equal(ref.gray_f32(rgb[None])[0], gray[tuple(rgb.T)])
    return rgb


@pytest.mark.parametrize("bins", [1000, 100, 3000])
def test_bins_are_exact_for_any_bin_count(bins):
    """docs/pipeline.md §1.3: the bin is taken in float64, so colours on a bin edge land in the exact bin."""
    edge = _float32_boundary_colours(bins)
    assert len(edge) > 100  # a float32 product would put all of these in the wrong bin
    img = edge[None]
    keys = _bin_keys(img, img.shape[1], bins)[0]
    expected = np.minimum(np.floor(ref.gray_f32(img)[0].astype(np.float64) * bins / 256), bins - 1)
    assert np.array_equal(keys, expected.astype(keys.dtype))
    # whole maps: cells made of edge colours agree with the float64 reference
    cells = np.resize(edge, (28 * 28, 3)).reshape(28, 28, 3)
    _check_against_reference(cells, 14, 2, bins)


@pytest.mark.parametrize("ps,scales,bins", [(1, 3, 512), (2, 4, 4096), (3, 2, 1000), (4, 1, 256)])
def test_sparse_kernel_equals_dense_kernel(ps, scales, bins):
    """Small patches with many bins count sorted keys (NumPy); the dense torch path gives the same bits."""
    from aptviz.compute.entropy import is_sparse

    assert is_sparse(ps, bins)
    img = textured(90, 131, seed=ps)
    a = compute_maps(img, ps, scales, bins)
    b = compute_maps(torch.from_numpy(img.copy()), ps, scales, bins, backend="torch")
    for s in a:
        assert np.array_equal(a[s], b[s].numpy())


def test_small_patches_many_bins_use_bounded_tiles():
    """Tiles (not the whole image) hold the histograms: same maps as one tile."""
    img = textured(48, 100, seed=9)
    whole = compute_maps(img, 2, 3, 4096, backend="torch")  # dense histograms, one tile
    try:
        set_num_threads(1)
        import aptviz.compute.entropy as entropy_module

        saved = entropy_module.BAND_HIST_ENTRIES
        entropy_module.BAND_HIST_ENTRIES = 1 << 15  # tiles of a few cells
        tiled = compute_maps(torch.from_numpy(img), 2, 3, 4096, backend="torch")
    finally:
        entropy_module.BAND_HIST_ENTRIES = saved
        set_num_threads(None)
    for ps in whole:
        assert torch.equal(whole[ps], tiled[ps])
    _check_against_reference(img, 2, 3, 4096)


def test_pad_rows_and_columns():
    maps = entropy_maps(np.zeros((84, 140, 3), np.uint8))  # 84 = 1.5 x 56, 140 = 2.5 x 56
    assert maps[14].shape == (6, 10) and not (maps[14] == PAD).any()
    assert maps[56].shape == (2, 3)
    assert (maps[56][-1] == PAD).all() and (maps[56][:, -1] == PAD).all()
    assert (maps[56][0, :2] == 0).all()


def test_uniform_image_is_exactly_zero():
    maps = entropy_maps(np.full((112, 168, 3), 77, np.uint8))
    for m in maps.values():
        assert (m[m != PAD] == 0).all()


def test_two_level_cell_is_one_bit():
    img = np.zeros((28, 28, 3), np.uint8)
    img[:, 14:] = 255  # each 28x28 cell: half black, half white
    maps = entropy_maps(img)
    assert float(maps[28][0, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(maps[14][0, 1]) == 0.0


def test_accepts_pil_numpy_and_tensor():
    arr = textured(56, 56)
    a = entropy_maps(arr)
    b = entropy_maps(Image.fromarray(arr))
    c = entropy_maps(torch.from_numpy(arr))
    for ps in a:
        assert torch.equal(a[ps], b[ps]) and torch.equal(a[ps], c[ps])


def test_numpy_and_torch_histograms_are_identical():
    """The torch path (used on CUDA) computes bit-identical histograms."""
    arr = textured(150, 211, seed=3)
    arr = np.concatenate([arr, np.resize(_float32_boundary_colours(1000), (150, 211, 3))], axis=0)
    for bins in (512, 100, 1000):
        h_np = _finest_histograms(arr, 14, bins)
        h_t = _finest_histograms(torch.from_numpy(arr), 14, bins)
        assert np.array_equal(h_np, h_t.numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_equals_cpu(sample_paths):
    arr = np.asarray(resize_image(aptviz.load_image(sample_paths[0])))
    cpu = entropy_maps(arr)
    gpu = entropy_maps(arr, device="cuda")
    for ps in cpu:
        assert torch.equal(cpu[ps], gpu[ps].cpu())


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        entropy_maps(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        entropy_maps(np.zeros((10, 10), np.uint8))


def test_parallel_bands_equal_single_band():
    img = textured(530, 90, seed=5)
    try:
        set_num_threads(1)
        single = entropy_maps(img)
        set_num_threads(4)
        banded = entropy_maps(img)
    finally:
        set_num_threads(None)
    for ps in single:
        assert torch.equal(single[ps], banded[ps])
    _check_against_reference(img)


def test_torch_backend_equals_numpy_backend(sample_paths):
    """The torch code path (what CUDA runs) gives bit-identical maps, here on the CPU."""
    for img in (np.asarray(resize_image(aptviz.load_image(sample_paths[2]))), textured(70, 99), textured(530, 90)):
        for bins in (512, 100):
            a = compute_maps(img, 14, 3, bins)
            b = compute_maps(torch.from_numpy(img.copy()), 14, 3, bins, backend="torch")
            for ps in a:
                assert isinstance(a[ps], np.ndarray) and isinstance(b[ps], torch.Tensor)
                assert np.array_equal(a[ps], b[ps].numpy())


# --- the issue-21 kernel against the previous one: bit-identical for every bin count ---

BIT_IDENTITY_BINS = [1, 2, 3, 7, 64, 100, 256, 512, 1000, 4096]


def _assert_same_bits(img, ps, scales, bins, threads=1, kernel="entropy_previous"):
    """The kernel's maps equal, bit for bit, those of a frozen earlier kernel (a module under tests/)."""
    import importlib

    before = importlib.import_module(kernel).compute_maps(img, ps, scales, bins, threads=threads)
    try:
        set_num_threads(threads)
        after = compute_maps(img, ps, scales, bins)
    finally:
        set_num_threads(None)
    assert sorted(after) == sorted(before)
    for s in before:
        assert after[s].dtype == np.float32 and after[s].shape == before[s].shape
        assert np.array_equal(after[s].view(np.uint32), before[s].view(np.uint32)), (ps, scales, bins, s)


@functools.cache
def _photo(name: str) -> np.ndarray:
    from conftest import SAMPLES

    return np.asarray(resize_image(aptviz.load_image(SAMPLES / f"{name}.png")))


@pytest.mark.parametrize("bins", BIT_IDENTITY_BINS)
def test_new_kernel_is_bit_identical_on_photos(bins):
    """The Qwen-view sample photos (up to ~1 MP, several tiles, 2 threads) at the default and other patch sizes."""
    _assert_same_bits(_photo("astronaut"), 14, 3, bins, threads=2)
    coffee, chelsea = _photo("coffee"), _photo("chelsea")
    _assert_same_bits(coffee[37:, 11:], 17, 2, bins)  # odd offsets: partial cells at every edge
    _assert_same_bits(chelsea[:301, :457], 9, 4, bins)
    _assert_same_bits(chelsea[50:250, 100:400], 28, 1, bins)


@pytest.mark.parametrize("bins", BIT_IDENTITY_BINS)
@pytest.mark.parametrize("ps,scales", [(1, 3), (2, 2), (5, 3), (14, 3), (16, 2), (33, 2)])
def test_new_kernel_is_bit_identical_on_synthetic_images(ps, scales, bins):
    for h, w, seed in ((97, 131, ps), (64, 64, bins), (1, 300, 3)):
        _assert_same_bits(textured(h, w, seed=seed), ps, scales, bins)


@pytest.mark.slow
def test_new_kernel_is_bit_identical_on_exact_bin_boundaries():
    """Colours whose float32 product ``gray * bins / 256`` lands on the other side of a bin edge."""
    for bins in (1000, 100, 3000, 7):
        edge = _float32_boundary_colours(bins)
        if len(edge):
            cells = np.resize(edge, (60 * 90, 3)).reshape(60, 90, 3)
            _assert_same_bits(cells, 15, 2, bins)
    rng = np.random.default_rng(21)
    every = rng.permutation(np.arange(1 << 24, dtype=np.uint32))[: 512 * 512]
    img = np.stack([(every >> 16) & 255, (every >> 8) & 255, every & 255], axis=-1).astype(np.uint8)
    for bins in BIT_IDENTITY_BINS:
        _assert_same_bits(img.reshape(512, 512, 3), 14, 3, bins, threads=2)


@given(
    h=st.integers(1, 150),
    w=st.integers(1, 150),
    ps=st.integers(1, 40),
    scales=st.integers(1, 4),
    bins=st.one_of(st.sampled_from(BIT_IDENTITY_BINS), st.integers(1, 5000)),
    seed=st.integers(0, 2**16),
)
def test_new_kernel_is_bit_identical_for_any_options(h, w, ps, scales, bins, seed):
    _assert_same_bits(textured(h, w, seed=seed), ps, scales, bins)


# --- issue 24 item 8: narrow counts and OpenCV lookups, bit-identical to the milestone-4 kernel ---


def _assert_same_bits_as_milestone4(img, ps, scales, bins, threads=1):
    _assert_same_bits(img, ps, scales, bins, threads, kernel="entropy_milestone4")


@pytest.mark.parametrize("bins", [512, 100, 64, 1000, 2])
def test_kernel_is_bit_identical_to_milestone4_on_photos(bins):
    """The three sample photos (Qwen view, several tiles, 2 threads), at uint8 counts (14, 15 px) and int64 (16 px)."""
    for name in ("astronaut", "coffee", "chelsea"):
        _assert_same_bits_as_milestone4(_photo(name), 14, 3, bins, threads=2)
    coffee = _photo("coffee")
    _assert_same_bits_as_milestone4(coffee[5:, 3:], 15, 3, bins)  # 225-pixel cells: the largest uint8 counts
    _assert_same_bits_as_milestone4(coffee[:301, :457], 16, 2, bins)  # 256-pixel cells: int64 counts


def test_full_cells_at_the_edges_of_every_count_type():
    """A single bin holds all ``n`` pixels of a cell: the top of uint8 (225), uint16 (57,600) and beyond (int64)."""
    img = np.zeros((480, 480, 3), np.uint8)
    img[:, 240:] = 255  # every cell of 15..240 px is one colour; the 480 px cell is half and half
    img[:15, :15] = 128  # one 15 px cell of another colour inside the first coarse cells
    _assert_same_bits_as_milestone4(img, 15, 6, 512)  # scales 15..480 px: n = 225 (uint8) .. 230,400 (int64)
    maps = compute_maps(img, 15, 6, 512)
    p = np.array([480 * 240 - 225, 225, 480 * 240]) / 480**2
    assert (maps[15] == 0).all() and float(maps[480][0, 0]) == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-6)


@settings(deadline=None)
@given(
    h=st.integers(1, 200),
    w=st.integers(1, 200),
    ps=st.integers(1, 20),
    scales=st.integers(1, 5),
    bins=st.one_of(st.sampled_from([512, 256, 100, 64, 1]), st.integers(1, 5000)),
    seed=st.integers(0, 2**16),
)
def test_kernel_is_bit_identical_to_milestone4_for_any_options(h, w, ps, scales, bins, seed):
    _assert_same_bits_as_milestone4(textured(h, w, seed=seed), ps, scales, bins)


@given(
    n=st.integers(1, 255),
    cells=st.integers(1, 40),
    bins=st.integers(1, 700),
    chunk=st.sampled_from([2, 700, 1 << 18]),
    seed=st.integers(0, 2**16),
)
def test_small_count_sums_equal_the_int64_sums(n, cells, bins, chunk, seed):
    """OpenCV's float64 lookups and row sums give the int64 sums exactly, in chunks of rows or in one."""
    import aptviz.compute.entropy as entropy_module

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, rng.dirichlet(np.full(bins, 0.3)), size=cells).astype(np.uint8)
    counts[0] = 0
    counts[0, 0] = n  # a full cell: T[n] = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(entropy_module, "LUT_CHUNK", chunk)
        got = entropy_module._small_count_sums(counts, n)
    expected = entropy_module._entropy_table(n)[counts.astype(np.intp)].sum(axis=-1)
    assert got.dtype == np.int64 and np.array_equal(got, expected)


@given(
    n=st.one_of(st.integers(4, 1200), st.integers(60000, 300000)),
    cells=st.integers(1, 12),
    bins=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_sum4_of_narrow_counts_equals_the_int64_sums(n, cells, bins, seed):
    """2x2 sums in uint16 (narrow counts, n < 65536) or int64, with cells that hold all ``n`` pixels in one bin."""
    from aptviz.compute.entropy import _narrow_counts, _sum4

    rng = np.random.default_rng(seed)
    finer = n // 4
    counts = rng.multinomial(finer, rng.dirichlet(np.full(bins, 0.5)), size=4 * cells)
    counts[:4] = 0
    counts[:4, -1] = finer  # one bin holds every pixel of the coarser cell
    narrow = _narrow_counts(counts, finer) if finer < 256 else counts.astype(np.uint16 if finer < 65536 else np.int64)
    got = _sum4(narrow, 4 * finer)
    assert np.array_equal(got, counts.reshape(cells, 4, bins).sum(axis=1))
    assert got.dtype == (np.uint16 if 4 * finer < 65536 else np.int64)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts page faults with getrusage (Linux)")
def test_kernel_takes_no_fresh_memory_call_after_call_in_a_fresh_process(sample_paths):
    """In a fresh process (a command-line run) a warm call must not fault its temporaries in again.

    Buffers of ~2 MB allocated and freed tile after tile made the C allocator
    return them to the system and fault them back in: ~3,000 page faults a
    call on this photo, 5-10x the kernel's time (the milestone-4 kernel: ~1,600).
    """
    code = f"""
import resource, numpy as np
from PIL import Image
from aptviz.compute.entropy import compute_maps, set_num_threads
set_num_threads(1)
img = np.asarray(Image.open({str(sample_paths[0])!r}).convert("RGB").resize((504, 504)))
for _ in range(3):
    compute_maps(img)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    compute_maps(img)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(aptviz.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert float(done.stdout) < 50, done.stdout
