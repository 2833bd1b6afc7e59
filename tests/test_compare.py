"""compare.png as a grid (SPEC §13): one layout for every image, titles that fit, readable colorbars,
error maps on one scale per row, and vector output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aptviz.compute.analysis import analyse_file, image_stats
from aptviz.compute.params import Params, expand_runs
from aptviz.compute.views import error_map, error_percentile, error_scale
from aptviz.render.figures import (
    _show,
    build_compare,
    compare_zoom,
    encode_figure,
    error_panels,
    heat_panel,
)
from aptviz.render.pictures import get_font

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
        # original, heat, blend; 6 per selection (overlay, APT view, uniform at equal ViT and at equal LLM tokens,
        # two error maps)
        assert counts == [3] + [6] * len(runs), (path.name, counts)
        # every panel of a row starts at the same y, and no panel overlaps the next row
        tops = sorted(rows)
        for upper, lower in zip(tops, tops[1:]):
            assert all(upper + pic.shape[0] < lower for _, pic in rows[upper])
        assert layout.width <= 3600 and layout.height < 400 * (len(runs) + 1)  # 6 panels of at most ~600 px


@pytest.mark.slow
def test_every_title_fits_its_panel(shapes):
    runs = expand_runs(["v1", "v2", "budget"], [0.3, 0.9])
    for path in shapes:
        _, layout = _layout(path, runs)
        starts = sorted({x for x, _, _ in layout.images})
        panel_width = {x: max(p.shape[1] for px, _, p in layout.images if px == x) for x in starts}
        for x, _y, text, size in layout.texts:
            assert get_font(size).getlength(text) <= panel_width[x], (path.name, text)
            assert size >= 10


def test_titles_name_tokens_views_and_errors():
    _, layout = _layout(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3]))
    texts = " ".join(t for _, _, t, _ in layout.texts)
    for word in ("original", "importance, 14 px", "ViT", "LLM", "what the ViT sees", "uniform,", "PSNR",
                 "|APT view - resized|", "|uniform - resized|"):
        assert word in texts


def test_compare_shows_uniform_at_equal_llm_tokens_beside_equal_vit_tokens():
    """The row's uniform at equal LLM tokens: its picture is the view the stats describe, titled with its tokens."""
    result, layout = _layout(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3]))
    [sel] = image_stats(result).selections
    texts = [t for _, _, t, _ in layout.texts]
    assert f"uniform, {sel.uniform_vit_tokens} ViT tokens" in texts
    assert f"uniform, {sel.llm_uniform_tokens} LLM tokens" in texts
    assert f"PSNR {sel.psnr_uniform_llm:.1f} dB, SSIM {sel.ssim_uniform_llm:.3f}" in texts
    [view] = [s.view for s in result.selections]
    shown = _show(view.uniform_llm.image, compare_zoom(*result.resized.shape[:2]))
    assert any(p.shape == shown.shape and np.array_equal(p, shown) for _, _, p in layout.images)
    assert not np.array_equal(view.uniform_llm.image, view.uniform.image)  # 96 LLM tokens vs 160 ViT tokens


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
    """The colour scale runs under the heatmap, as wide as it, with labels at least 10 px high."""
    result = analyse_file(SAMPLES / "coffee.png", expand_runs(["v1"]), Params())
    resized = result.resized
    for zoom in (0.3, 1, 5):
        panel = heat_panel(result.maps[14], 14, (resized.shape[1], resized.shape[0]), (0.0, 9.0), zoom)
        shown_w, shown_h = max(1, round(resized.shape[1] * zoom)), max(1, round(resized.shape[0] * zoom))
        assert panel.shape[1] == shown_w  # exactly the photo's width: the columns below line up
        below = panel[shown_h + 4 :]
        ramp = below[:, shown_w // 2].astype(int)
        coloured = ramp.max(axis=1) - ramp.min(axis=1) > 40  # the ramp's rows
        last = int(np.flatnonzero(coloured).max())
        digits = _text_heights(below[last + 6 :], 0)  # below the outline and the 4 px tick marks
        assert len(digits) >= 1 and min(digits) >= 10, digits


def test_error_maps_share_one_scale_per_row():
    resized = np.zeros((56, 56, 3), np.uint8)
    a = resized.copy()
    a[:28] = 40
    b = resized.copy()
    b[:, :28] = 20
    scale = error_scale(resized, [a, b])  # computed before anything is drawn
    shown, bar = error_panels([error_map(a, resized), error_map(b, resized)], scale, 1)
    assert error_map(a, resized).max() == 40 and scale.means == (20.0, 10.0) and scale.top == 40.0
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
    assert [len(r) for _, r in sorted(_rows(layout).items())] == [3, 6, 6]
    assert encode_figure(layout).startswith(b"\x89PNG")


# -- SPEC 17 figure fixes, on the sample photos ------------------------------------------------------


def _columns(layout) -> list[list[tuple[int, np.ndarray]]]:
    return [sorted(row, key=lambda p: p[0]) for _, row in sorted(_rows(layout).items())]


@pytest.mark.parametrize("photo", ["chelsea.png", "astronaut.png", "coffee.png"])
def test_the_first_row_lines_up_with_the_columns_below(photo):
    """Every first-row panel starts where a selection column starts, and the heatmap (with its colour scale
    beneath) is exactly as wide as the photo panels of its column."""
    _, layout = _layout(SAMPLES / photo, expand_runs(["budget"], [0.3]))
    first, *below = _columns(layout)
    starts = [x for x, _ in below[0]]
    assert [x for x, _ in first] == starts[: len(first)]
    assert all(pic.shape[1] == below[0][i][1].shape[1] for i, (_, pic) in enumerate(first))


def test_lossless_rows_say_lossless_without_a_colour_scale():
    _, layout = _layout(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3, 1.0]))
    _, lossy, lossless = _columns(layout)
    photo_w = lossless[0][1].shape[1]
    assert lossy[-1][1].shape[1] > photo_w  # the error scale beside the last error map
    for _, pic in lossless[-2:]:  # the two error maps
        assert pic.shape[1] == photo_w  # no 0-1 colorbar
        assert (pic < 128).all(axis=2).any() and not ((pic[..., 0] > 150) & (pic[..., 1] < 100)).any()  # text, no red
    texts = [t for _, _, t, _ in layout.texts]
    assert sum("lossless" in t for t in texts) >= 2


def test_several_measures_give_one_heatmap_each(monkeypatch):
    """--importance entropy,laplacian: compare.png's first row shows both maps, each named, then the blend."""
    import aptviz.render.image_pictures as extras
    from aptviz.compute.params import build_runs
    from aptviz.compute.heatmaps import heat_scales
    from aptviz.pipeline import complete_stats

    runs = build_runs(["budget"], [0.3], measure=["entropy", "laplacian"])
    result = analyse_file(SAMPLES / "chelsea.png", runs, Params())
    stats = complete_stats(result, extras.RenderOptions())
    made = []
    real = extras.build_compare
    monkeypatch.setattr(extras, "build_compare", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    dict(extras.iter_pictures(result, stats, heat_scales(result, stats)))
    first = _columns(made[0])[0]
    assert len(first) == 4  # original, entropy, laplacian, blend
    texts = " ".join(t for _, _, t, _ in made[0].texts)
    assert "entropy, 14 px" in texts and "laplacian, 14 px" in texts
    assert not np.array_equal(first[1][1], first[2][1])


def test_show_windows_is_drawn_in_compare_too():
    result = analyse_file(SAMPLES / "coffee.png", expand_runs(["budget"], [0.3]), Params(model="qwen2.5-vl"))
    stats = image_stats(result)
    shown = min(result.maps)
    heat = {"map": result.maps[shown], "scale": shown, "finest": shown, "vrange": (0.0, 9.0)}
    sels = [(e.to_dict(), s.selection.masks, s.view) for e, s in zip(stats.selections, result.selections)]
    plain = _columns(build_compare(result.loaded.image, result.resized, heat, sels))[1][0][1]
    layout = build_compare(result.loaded.image, result.resized, heat, sels, window=112)
    windows = _columns(layout)[1][0][1]
    assert plain.shape == windows.shape
    changed = (plain != windows).any(axis=2)
    assert changed.any() and (windows[changed] == (255, 0, 0)).all()
    assert any("112 px attention windows" in t for _, _, t, _ in layout.texts)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40))
def test_error_map_is_the_float32_channel_mean(seed, h, w):
    """error_map's integer channel sum / 3 is bit-identical to the float32 mean of |view - resized|."""
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2))
    expected = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2, dtype=np.float32)
    assert np.array_equal(error_map(a, b).view(np.uint32), expected.view(np.uint32))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from([99.5, 50.0, 0.0, 100.0, 12.3]))
def test_error_percentile_is_numpys(seed, parts, q):
    """The colour scale's top from counts is bit-identical to np.percentile over every error value."""
    rng = np.random.default_rng(seed)
    sums = []  # channel sums k of error maps k / 3
    for _ in range(parts):
        shape = tuple(int(s) for s in rng.integers(1, 40, 2))
        k = rng.integers(0, 766, shape) if rng.random() < 0.5 else np.minimum(rng.geometric(0.2, shape) - 1, 765)
        sums.append(k.ravel())
    expected = np.percentile(np.concatenate([k.astype(np.float32) / np.float32(3) for k in sums]), q)
    got = error_percentile(np.bincount(np.concatenate(sums), minlength=766), q)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


def test_the_error_row_numbers_come_with_the_model_view():
    """The row's means and colour-scale top are computed with the views (before drawing) from the very maps the
    row draws; a lossless selection has means 0 and no scale."""
    result = analyse_file(SAMPLES / "chelsea.png", expand_runs(["budget"], [0.3, 1.0]), Params())
    lossy, lossless = (s.view for s in result.selections)
    maps = lossy.error_maps(result.resized)
    assert lossy.errors.means == tuple(float(m.mean()) for m in maps) and min(lossy.errors.means) > 0
    expected = np.percentile(np.concatenate([m.ravel() for m in maps]), 99.5)
    assert lossy.errors.top == max(1.0, float(expected)) and not lossy.errors.lossless
    assert lossless.errors.means == (0.0, 0.0) and lossless.errors.lossless  # budget 1: both views are the resized image
