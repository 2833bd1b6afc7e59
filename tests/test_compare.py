"""compare.png as a grid (SPEC §13): one layout for every image, titles that fit, readable colorbars,
error maps on one scale per row, and vector output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aptviz.compute.analysis import analyse_file, image_stats
from aptviz.compute.params import Params, expand_runs
from aptviz.render.figures import (
    BAR_FONT,
    build_compare,
    encode_figure,
    error_map,
    error_panels,
    heat_panel,
)
from aptviz.render.pictures import _font

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def _layout(path, runs):
    result = analyse_file(path, runs, Params())
    stats = image_stats(result)
    shown = min(result.maps)
    summaries = [e for e in stats.importance.values() if e.min is not None]
    vrange = (min(e.min for e in summaries), max(e.max for e in summaries))
    heat = {"map": result.maps[shown], "scale": shown, "finest": shown, "vrange": vrange}
    sels = [(e.to_dict(), s.selection.masks, s.view) for e, s in zip(stats.selections, result.selections)]
    return result, build_compare(result.loaded.image, result.resized, heat, sels)


def _rows(layout) -> dict[int, list]:
    """Images grouped by their top edge."""
    rows: dict[int, list] = {}
    for x, y, pic in layout.images:
        rows.setdefault(y, []).append((x, pic))
    return rows


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny image, a 4:1 panorama and a large photo (an upscaled sample)."""
    folder = tmp_path_factory.mktemp("shapes")
    coffee = Image.open(SAMPLES / "coffee.png").convert("RGB")
    coffee.resize((40, 40)).save(folder / "tiny.png")
    coffee.crop((0, 100, 600, 250)).resize((1600, 400)).save(folder / "panorama.png")
    coffee.resize((2400, 1800), Image.Resampling.BICUBIC).save(folder / "large.png")
    return sorted(folder.glob("*.png"))


@pytest.mark.parametrize("methods", [(["budget"], [0.3]), (["v1", "v2", "budget"], [0.5, 1.0])])
@pytest.mark.slow
def test_the_same_grid_for_every_image(shapes, methods):
    runs = expand_runs(*methods)
    for path in shapes:
        result, layout = _layout(path, runs)
        rows = _rows(layout)
        counts = [len(rows[y]) for y in sorted(rows)]
        assert counts == [3] + [5] * len(runs), (path.name, counts)  # original, heat, blend; 5 per selection
        # every panel of a row starts at the same y, and no panel overlaps the next row
        tops = sorted(rows)
        for upper, lower in zip(tops, tops[1:]):
            assert all(upper + pic.shape[0] < lower for _, pic in rows[upper])
        assert layout.width <= 3000 and layout.height < 400 * (len(runs) + 1)


def test_every_title_fits_its_panel(shapes):
    runs = expand_runs(["v1", "v2", "budget"], [0.3, 0.9])
    for path in shapes:
        _, layout = _layout(path, runs)
        starts = sorted({x for x, _, _ in layout.images})
        panel_width = {x: max(p.shape[1] for px, _, p in layout.images if px == x) for x in starts}
        for x, _y, text, size in layout.texts:
            assert _font(size).getlength(text) <= panel_width[x], (path.name, text)
            assert size >= 10


def test_titles_name_tokens_views_and_errors():
    _, layout = _layout(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3]))
    texts = " ".join(t for _, _, t, _ in layout.texts)
    for word in ("original", "importance, 14 px", "ViT", "LLM", "what the ViT sees", "uniform,", "PSNR",
                 "|APT view - resized|", "|uniform - resized|"):
        assert word in texts


def _text_heights(panel: np.ndarray, x0: int) -> list[int]:
    """Heights of the runs of rows holding dark pixels right of column ``x0`` (one run per label)."""
    dark = (panel[:, x0:] < 100).all(axis=2).any(axis=1)
    runs, n = [], 0
    for row in dark:
        if row:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs + ([n] if n else [])


def test_colorbar_tick_labels_are_at_least_10_px_high():
    result = analyse_file(SAMPLES / "coffee.png", expand_runs(["v1"]), Params())
    resized = result.resized
    for zoom in (0.3, 1, 5):
        panel = heat_panel(result.maps[14], 14, (resized.shape[1], resized.shape[0]), (0.0, 9.0), zoom)
        shown_w = max(1, round(resized.shape[1] * zoom))
        bar_x = shown_w + 4 + 6 + BAR_FONT + 6  # the heatmap, the gap, the bar's margin and width, the tick gap
        column = panel[:, shown_w + 4 + 8].astype(int)
        inside_bar = column.max(axis=1) - column.min(axis=1) > 40  # coloured: the bar, not the black title
        top = int(np.argmax(inside_bar))  # the bar's first row: tick labels start half a line above
        digits = _text_heights(panel[top - BAR_FONT // 2 :], bar_x)
        assert len(digits) >= 2 and min(digits) >= 10, digits


def test_error_maps_share_one_scale_per_row():
    resized = np.zeros((56, 56, 3), np.uint8)
    a = resized.copy()
    a[:28] = 40
    b = resized.copy()
    b[:, :28] = 20
    shown, means, bar = error_panels(resized, [a, b], 1)
    assert error_map(a, resized).max() == 40 and means == [20.0, 10.0]
    # the same error gets the same colour in both panels: b's 20 is about half way along a's scale to 40
    assert (shown[0][0, 0] != 255).any() and (shown[1][0, 0] != shown[0][0, 0]).any()
    assert shown[0][40, 40].tolist() == shown[1][40, 40].tolist() == [255, 255, 255]  # no error: white
    assert bar.shape[0] >= 56


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_compare_in_every_figure_format(fmt):
    pytest.importorskip("matplotlib")
    _, layout = _layout(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3]))
    data = encode_figure(layout, fmt)
    head = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[fmt]
    assert data.startswith(head)
    if fmt == "svg":
        assert data.count(b"<image") >= 3 + 5


def test_a_flat_image_has_a_compare_figure(tmp_path):
    """One grey level: every map is constant and both views are exact (a one-value colour scale)."""
    Image.new("RGB", (120, 90), (128, 128, 128)).save(tmp_path / "flat.png")
    result, layout = _layout(tmp_path / "flat.png", expand_runs(["v1", "budget"], [0.3]))
    assert [len(r) for _, r in sorted(_rows(layout).items())] == [3, 5, 5]
    assert encode_figure(layout).startswith(b"\x89PNG")
