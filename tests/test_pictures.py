"""aptviz.render.pictures: the drawing primitives, against plain NumPy."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aptviz.render.pictures import _expand


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 9), st.integers(0, 2), st.integers(0, 10**6),
       st.integers(-12, 4), st.integers(-12, 4))  # fmt: skip
def test_expand_repeats_every_cell_and_crops(rows, cols, ps, kind, seed, dh, dw):
    """Cells blown up to ps x ps pixels, cropped to (or short of) the asked size: the same array as
    repeating every pixel along both axes, of the same dtype, new and writable (callers draw into it)."""
    rng = np.random.default_rng(seed)
    shape = [(rows, cols), (rows, cols, 3), (rows, cols, 3)][kind]
    cells = rng.integers(0, 256, shape).astype([bool, np.uint8, np.float64][kind])
    height, width = max(1, rows * ps + dh), max(1, cols * ps + dw)
    out = _expand(cells, ps, height, width)
    expected = np.repeat(np.repeat(cells, ps, axis=0), ps, axis=1)[:height, :width]
    assert out.dtype == cells.dtype and out.shape == expected.shape and np.array_equal(out, expected)
    assert out.flags.writeable and not np.shares_memory(out, cells)


@given(st.integers(1, 60), st.integers(1, 60), st.sampled_from([1, 2, 14, 28]), st.integers(0, 10**6),
       st.sampled_from([0.0, 0.3, 0.55, 1.0]), st.booleans())  # fmt: skip
def test_blend_heatmap_is_the_rounded_mix_of_photo_and_colour(h, w, ps, seed, opacity, flat):
    """Every pixel: (photo * (256 - a) + colour * a + 128) >> 8 with a = opacity * 256, the colour of the cell's
    value on the colormap (vmin..vmax, a flat range gives its first colour); PAD cells keep the photo."""
    from aptviz.compute.entropy import PAD
    from aptviz.render.pictures import blend_heatmap, colormap_lut

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ent = rng.random((-(-h // ps), -(-w // ps))) * 4
    ent[rng.random(ent.shape) < 0.2] = PAD
    vmin, vmax = (1.0, 1.0) if flat else (0.5, 3.5)
    a = round(opacity * 256)
    cells = np.repeat(np.repeat(ent, ps, axis=0), ps, axis=1)[:h, :w]
    level = np.zeros(cells.shape) if flat else (np.clip(cells, vmin, vmax) - vmin) / (vmax - vmin)
    colour = colormap_lut("inferno")[np.rint(level * 255).astype(int)].astype(np.int64)
    mixed = (img.astype(np.int64) * (256 - a) + colour * a + 128) >> 8
    expected = np.where((cells == PAD)[..., None], img, mixed).astype(np.uint8)
    assert np.array_equal(blend_heatmap(img, ent, ps, vmin, vmax, opacity), expected)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 10**6), st.integers(1, 4))
def test_overlay_is_the_photo_with_green_boundaries(rows, cols, seed, line_width):
    """draw_overlay: exactly the boundary pixels are (0, 255, 0), every other pixel is the photo's; the input is
    left as it was."""
    from aptviz.render.pictures import boundary_mask, draw_overlay

    rng = np.random.default_rng(seed)
    h, w = rows * 28, cols * 28
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = {14: rng.random((2 * rows, 2 * cols)) < 0.5, 28: np.zeros((rows, cols), bool)}
    masks[28][~masks[14].reshape(rows, 2, cols, 2).any(axis=(1, 3))] = True  # a partition: 28 where no 14 is kept
    masks[14] = masks[14] | np.repeat(np.repeat(~masks[28], 2, 0), 2, 1)
    before = img.copy()
    out = draw_overlay(img, masks, line_width)
    edge = boundary_mask(masks, h, w, line_width)
    assert np.array_equal(img, before) and out.dtype == np.uint8 and out.shape == img.shape
    assert (out[edge] == (0, 255, 0)).all() and np.array_equal(out[~edge], img[~edge])
