import numpy as np
import torch

from aptviz.compute.entropy import PAD, entropy_maps
from aptviz.compute.selection import select_patches
from aptviz.render.pictures import (
    NO_DATA_COLORS,
    boundary_mask,
    colormap_lut,
    draw_overlay,
    render_heatmap,
)

from conftest import textured


def _finest_only(h1, w1):
    return {
        14: torch.ones((h1, w1), dtype=torch.bool),
        28: torch.zeros(((h1 + 1) // 2, (w1 + 1) // 2), dtype=torch.bool),
        56: torch.zeros(((h1 + 3) // 4, (w1 + 3) // 4), dtype=torch.bool),
    }


def test_grid_lines_are_two_pixels_and_drawn_once():
    edge = boundary_mask(_finest_only(4, 4), 56, 56)
    # a row between horizontal lines: green exactly at the borders and at x-1, x for x = 14, 28, 42
    assert np.flatnonzero(edge[7]).tolist() == [0, 1, 13, 14, 27, 28, 41, 42, 54, 55]
    assert np.flatnonzero(edge[:, 7]).tolist() == [0, 1, 13, 14, 27, 28, 41, 42, 54, 55]


def test_kept_large_patch_has_no_inner_lines():
    masks = _finest_only(4, 4)
    masks[14][:] = False
    masks[56][0, 0] = True
    edge = boundary_mask(masks, 56, 56)
    assert not edge[2:54, 2:54].any()
    assert edge[:2].all() and edge[-2:].all() and edge[:, :2].all() and edge[:, -2:].all()


def test_mixed_partition_outline():
    masks = _finest_only(4, 4)
    masks[14][:2, :2] = False
    masks[28][0, 0] = True  # one 28 patch in the top-left corner
    edge = boundary_mask(masks, 56, 56)
    assert not edge[5:22, 5:22].any()  # inside the 28 patch: no line
    assert edge[10, 27] and edge[10, 28] and edge[27, 10] and edge[28, 10]
    assert edge[40, 13] and edge[40, 14]  # finest lines elsewhere


def test_overlay_is_exact_green_on_boundaries_only():
    img = textured(112, 140)
    sel = select_patches(entropy_maps(img), "budget", alpha=0.3)
    out = draw_overlay(img, sel.masks)
    edge = boundary_mask(sel.masks, 112, 140)
    assert (out[edge] == (0, 255, 0)).all()
    assert np.array_equal(out[~edge], img[~edge])
    assert out.shape == img.shape


def test_heatmap_cells_are_crisp_and_pad_marked():
    ent = np.array([[0.0, 4.0, 8.0], [2.0, 6.0, PAD]])
    pic = render_heatmap(ent, 14, (40, 28), vmin=0.0, vmax=8.0)
    assert pic.shape[0] == 28 and pic.shape[1] > 40 and pic.dtype == np.uint8
    cells = pic[:, :40]
    lut = colormap_lut("inferno")
    assert (cells[:14, :14] == lut[0]).all()
    assert (cells[:14, 28:40] == lut[255]).all()
    assert (cells[:14, 14:28] == lut[128]).all()
    pad_px = {tuple(p) for p in cells[14:, 28:40].reshape(-1, 3)}
    assert pad_px == {tuple(c) for c in NO_DATA_COLORS}


def test_heatmap_of_real_maps_has_image_size():
    img = textured(84, 140)
    maps = entropy_maps(img)
    for ps, m in maps.items():
        pic = render_heatmap(m, ps, (140, 84))
        assert pic.shape[0] == 84 and pic.shape[1] > 140


def test_embedded_inferno_equals_matplotlib():
    from matplotlib import colormaps

    expected = np.rint(colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    assert np.array_equal(colormap_lut("inferno"), expected)
    assert colormap_lut("viridis").shape == (256, 3)
