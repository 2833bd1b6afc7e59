"""The analysis outputs through the real command: overlays, model view numbers, compare.png,
calibrate, the dataset view."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aptviz.cli.command import main
from aptviz.compute.entropy import entropy_maps
from aptviz.compute.loading import load_image
from aptviz.compute.resize import resize_image
from aptviz.render.pictures import SCALE_COLORS, boundary_mask

from conftest import SAMPLES
from conftest import invoke as _invoke


def invoke(*args):
    return _invoke(*args, catch_exceptions=False)


def _masks(folder: Path, label: str) -> dict:
    npz = np.load(folder / "maps.npz")
    return {ps: npz[f"mask_{label}_{ps}"] for ps in (14, 28, 56)}


def test_written_jpeg_overlay_keeps_its_lines_green(tmp_path):
    r = invoke(SAMPLES / "chelsea.png", "-m", "budget:0.3", "--save-maps", "-q", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    folder = tmp_path / "chelsea"
    pic = np.asarray(Image.open(folder / "02_patches_grid/patches_visualization.jpg").convert("RGB")).astype(int)
    edge = boundary_mask(_masks(folder, "budget_alpha0.3"), *pic.shape[:2])
    dev = np.abs(pic[edge] - [0, 255, 0]).max(axis=1)
    # 4:4:4: every boundary pixel stays pure green up to JPEG rounding (4:2:0 shifted them by up to 111)
    assert dev.max() <= 24, dev.max()
    assert (dev <= 8).mean() > 0.9


def test_png_overlay_is_exactly_green_with_line_width(tmp_path):
    r = invoke(SAMPLES / "coffee.png", "-m", "v2:1", "--overlay-format", "png", "--line-width", "1",
               "--save-maps", "-q", "-o", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    folder = tmp_path / "coffee"
    pic = np.asarray(Image.open(folder / "02_patches_grid/patches_visualization.png").convert("RGB"))
    resized = np.asarray(resize_image(load_image(SAMPLES / "coffee.png")))
    edge = boundary_mask(_masks(folder, "v2_alpha1"), *resized.shape[:2], line_width=1)
    assert (pic[edge] == [0, 255, 0]).all()
    assert np.array_equal(pic[~edge], resized[~edge])
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["render"]["line_width"] == 1 and stats["render"]["overlay_format"] == "png"


def test_color_by_scale_has_a_colour_per_scale_and_a_legend(tmp_path):
    r = invoke(SAMPLES / "chelsea.png", "-m", "budget:0.3", "--color-by-scale", "--caption",
               "--overlay-format", "png", "--save-maps", "-q", "-o", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    folder = tmp_path / "chelsea"
    pic = np.asarray(Image.open(folder / "02_patches_grid/patches_visualization.png").convert("RGB"))
    h, w = 308, 448
    assert pic.shape[0] > h and pic.shape[1] == w  # caption and legend below the picture
    masks = _masks(folder, "budget_alpha0.3")
    edge = boundary_mask(masks, h, w)
    colours = {tuple(c) for c in pic[:h, :w][edge].tolist()}
    assert colours == set(SCALE_COLORS[:3])  # every scale present in this selection, nothing else
    legend = pic[h:]
    for colour in SCALE_COLORS[:3]:
        assert (legend == colour).all(axis=2).sum() > 20  # a swatch per scale


def test_model_view_numbers_reach_stats_summary_and_table(tmp_path):
    r = invoke(SAMPLES / "astronaut.png", SAMPLES / "coffee.png", "-m", "budget:0.3,0.5", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert "PSNR dB, APT / uniform" in r.stdout and "SSIM, APT / uniform" in r.stdout
    rows = json.loads((tmp_path / "summary.json").read_text())
    for row in rows:
        stats = json.loads((Path(row["output"]) / "stats.json").read_text())
        sel = next(s for s in stats["selections"] if s["alpha"] == row["alpha"])
        for key in ("psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt", "ssim_uniform"):
            assert row[key] == sel[key] is not None
        assert sel["uniform_vit_tokens"] <= sel["tokens"]
        view = np.asarray(Image.open(Path(row["output"]) / sel["files"]["model_view"]))
        assert view.shape[:2] == tuple(stats["image"]["resized_size"][::-1])
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt", "ssim_uniform"} <= set(header)


def test_compare_is_readable_for_a_tiny_input(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "tiny.png"
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(src)
    r = invoke(src, "-m", "v1", "-m", "budget:0.5", "-q", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    fig = np.asarray(Image.open(tmp_path / "out/tiny/compare.png"))
    # 56 px resized image shown 5x (280 px): a first row of 3 panels, then a row of 5 per selection
    assert fig.shape[0] > 3 * 280 and fig.shape[1] >= 5 * 280
    green = (fig == [0, 255, 0]).all(axis=2)
    rows_with_green = green[:, :300].any(axis=1)
    assert not rows_with_green[:300].any()  # the first row: original, heatmap, blend
    assert rows_with_green[300:].sum() > 2 * 250  # each selection row starts with its overlay, crisp green lines


def test_dataset_view_percentiles_and_report(tmp_path):
    r = invoke(SAMPLES, "-m", "v1", "-m", "v2:1", "-q", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "dataset.json").read_text())
    for name in ("importance_histogram.png", "psnr_vs_retention.png", "report.html"):
        assert (tmp_path / name).is_file()
    cells = {14: [], 28: [], 56: []}
    for path in sorted(SAMPLES.glob("*.png")):
        for ps, m in entropy_maps(np.asarray(resize_image(load_image(path)))).items():
            cells[ps].append(m[m != 1e6].ravel())
    for ps, parts in cells.items():
        values = np.sort(np.concatenate(parts).astype(np.float64))
        assert data["cells"][str(ps)] == values.size
        width = 9.0 / 500  # one histogram bin: log2(512) bits / 500
        for q in (5, 25, 50, 75, 95):  # the one rule (NumPy's linear), from the histogram: within one bin
            exact = np.percentile(values, q)
            assert abs(data["percentiles"][str(ps)][f"p{q}"] - exact) <= width + 1e-9


@pytest.mark.parametrize("measure", ["laplacian", "upsample-mse", "entropy"])
def test_dataset_json_names_the_runs_measure(tmp_path, measure):
    """Issue 16 bug: dataset.json of a ``--importance laplacian`` run said ``"measure": "entropy"``;
    its histogram and percentiles are of the run's measure (the laplacian's reach beyond 0..9 bits)."""
    from aptviz.compute.importance import importance_maps

    pics = (SAMPLES / "chelsea.png", SAMPLES / "coffee.png")
    r = invoke(*pics, "-m", "budget:0.3", "--importance", measure, "-q", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "dataset.json").read_text())
    assert data["measure"] == measure and data["images"] == 2
    maps = [importance_maps(np.asarray(resize_image(load_image(path))), measure=measure) for path in pics]
    for ps in (14, 28, 56):
        top = max(float(m[ps][m[ps] != 1e6].max()) for m in maps)
        expected = 9.0 if measure == "entropy" else (top if top > 0 else 1.0)  # the measure's own range
        assert data["histogram"][str(ps)]["hi"] == pytest.approx(expected)


def test_calibrate_then_sweep_gives_exactly_the_achieved_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(SAMPLES), "-m", "v2", "--target", "0.3", "-o", str(tmp_path / "cal")])
    assert exc.value.code == 0
    cal = json.loads((tmp_path / "cal/calibration.json").read_text())
    assert set(cal) >= {"method", "statistic", "target", "alpha", "achieved", "images"}
    assert cal["achieved"] <= 0.3 and cal["statistic"] == "mean"
    assert f"alpha = {cal['alpha']:g}" in capsys.readouterr().out
    r = invoke(SAMPLES, "-m", f"v2:{cal['alpha']!r}", "-q", "-o", tmp_path / "sweep")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "sweep/summary.json").read_text())
    by_path = {row["image"]: row["retention"] for row in rows}
    assert [by_path[i["path"]] for i in cal["images"]] == [i["retention"] for i in cal["images"]]
    assert statistics.fmean(by_path.values()) == cal["achieved"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-m", "budget"], "calibrate works for v1 and v2"),
        (["--statistic", "max"], "max"),
        (["--target", "0"], "target must be in (0, 1]"),
        (["-m", "v1", "--thresholds", "3"], "--thresholds needs 2 value(s)"),
    ],
)
def test_calibrate_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(SAMPLES / "chelsea.png"), *args, "-o", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "calibration.json").exists()


@pytest.mark.slow
def test_figure_format_svg_writes_compare_and_the_batch_figures_as_svg(tmp_path):
    pytest.importorskip("matplotlib")
    r = invoke(SAMPLES / "chelsea.png", SAMPLES / "coffee.png", "-m", "v1", "-m", "budget:0.3",
               "--figure-format", "svg", "-q", "-o", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    for name in ("retention_vs_alpha", "psnr_vs_retention", "importance_histogram"):
        assert (tmp_path / f"{name}.svg").read_bytes().startswith(b"<?xml") and not (tmp_path / f"{name}.png").exists()
    for folder in ("chelsea", "coffee"):
        stats = json.loads((tmp_path / folder / "stats.json").read_text())
        assert stats["files"]["compare"] == "compare.svg" and stats["render"]["figure_format"] == "svg"
        assert b"<svg" in (tmp_path / folder / "compare.svg").read_bytes()[:2000]
        assert (tmp_path / folder / "01_heatmaps/importance_map_scale_14.png").is_file()  # heatmaps stay PNG
    assert "psnr_vs_retention.svg" in (tmp_path / "report.html").read_text()
    again = invoke(SAMPLES / "chelsea.png", "-m", "v1", "-m", "budget:0.3", "-q", "-o", tmp_path)
    assert again.exit_code == 0  # back to png: redone, not skipped as complete
    assert json.loads((tmp_path / "chelsea/stats.json").read_text())["files"]["compare"] == "compare.png"
    assert not (tmp_path / "chelsea/compare.svg").exists()


def test_calibrate_prints_every_reason_when_all_inputs_fail(tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(tmp_path / "broken.jpg"), str(tmp_path / "empty.png"), str(tmp_path / "gone.png"),
              "-o", str(tmp_path / "cal")])  # fmt: skip
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exc.value.code == 1 and len(lines) == 4, err
    assert "broken.jpg: cannot decode image" in err and "empty.png: " in err and "gone.png: " in err
    assert lines[-1] == "aptviz: error: no images to calibrate on: every input failed"
    assert not (tmp_path / "cal" / "calibration.json").exists()
