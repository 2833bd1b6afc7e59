"""Several importance measures in one run (--importance entropy,upsample-mse), through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

import aptviz
from aptviz.compute.importance import compute_importance
from aptviz.compute.loading import load_image
from aptviz.compute.params import RunSpec, build_runs
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import select
from aptviz.compute.views import model_view, uniform_view

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
PHOTOS = sorted(SAMPLES.glob("*.png"))


def aptviz_cli(*args, check: bool = True):
    """``aptviz ARGS`` in this process (the app ``aptviz`` dispatches to: a subcommand's or the main one):
    ``exit_code``, ``stdout``, ``stderr``."""
    from typer.testing import CliRunner

    from aptviz.cli.command import _dispatch

    target, prog, rest = _dispatch([str(a) for a in args])
    done = CliRunner().invoke(target, rest, prog_name=prog)
    if check:
        assert done.exit_code == 0, done.stderr
    return done


def skimage_ssim(a, b) -> float:
    return float(structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255))  # fmt: skip


@pytest.mark.parametrize("photo", PHOTOS[:2], ids=lambda p: p.stem)
@pytest.mark.slow
def test_two_measures_give_four_selections_with_single_run_tokens_and_skimage_ssim(photo, tmp_path):
    sel_args = ["-m", "budget:0.3", "-m", "v2:1.0"]
    both = json.loads(aptviz_cli(photo, "--importance", "entropy,upsample-mse", *sel_args, "--json",
                                 "-o", tmp_path / "both").stdout)  # fmt: skip
    sels = both["selections"]
    assert [(s["importance"], s["method"], s["alpha"]) for s in sels] == [
        ("entropy", "budget", 0.3), ("entropy", "v2", 1.0), ("upsample-mse", "budget", 0.3), ("upsample-mse", "v2", 1.0)
    ]  # fmt: skip
    loaded = load_image(photo)
    resized = np.asarray(resize_image(loaded))
    size = (resized.shape[1], resized.shape[0])
    for measure in ("entropy", "upsample-mse"):
        single = json.loads(aptviz_cli(photo, "--importance", measure, *sel_args, "--json",
                                       "-o", tmp_path / measure).stdout)  # fmt: skip
        mine = [s for s in sels if s["importance"] == measure]
        for a, b in zip(mine, single["selections"]):
            for key in ("tokens", "tokens_by_scale", "llm_tokens", "thresholds", "psnr_apt", "ssim_apt",
                        "ssim_uniform"):  # fmt: skip
                assert a[key] == b[key], (measure, key)
        maps = compute_importance(resized, measure, "mean" if measure != "entropy" else None)
        for s in mine:
            picked = select(maps, RunSpec(s["method"], s["alpha"]), measure)
            assert picked.tokens == s["tokens"]
            assert abs(s["ssim_apt"] - skimage_ssim(resized, model_view(resized, picked.masks))) < 1e-4
            uni = uniform_view(loaded, size, s["tokens"]).image
            assert abs(s["ssim_uniform"] - skimage_ssim(resized, uni)) < 1e-4
    folder = tmp_path / "both" / photo.stem
    overlays = sorted(p.name for p in (folder / "02_patches_grid").iterdir())
    assert overlays == sorted(f"patches_{s['importance']}_{s['method']}_alpha{s['alpha']:g}.jpg" for s in sels)
    assert (folder / "01_heatmaps/importance_map_upsample-mse_scale_28.png").is_file()
    single_names = sorted(p.name for p in (tmp_path / "entropy" / photo.stem / "02_patches_grid").iterdir())
    assert single_names == ["patches_budget_alpha0.3.jpg", "patches_v2_alpha1.jpg"]  # one measure: today's names


@pytest.mark.slow
def test_repeated_option_equals_comma_list_and_rows_carry_the_measure(tmp_path):
    photo = SAMPLES / "chelsea.png"
    a = aptviz_cli(photo, "--importance", "laplacian", "--importance", "entropy", "-m", "budget:0.5", "--json",
                   "-o", tmp_path / "a").stdout  # fmt: skip
    b = aptviz_cli(photo, "--importance", "laplacian,entropy", "-m", "budget:0.5", "--json",
                   "-o", tmp_path / "b").stdout  # fmt: skip
    sa, sb = json.loads(a)["selections"], json.loads(b)["selections"]
    assert [(s["importance"], s["aggregate"], s["tokens"]) for s in sa] == [
        (s["importance"], s["aggregate"], s["tokens"]) for s in sb
    ]
    assert [(s["importance"], s["aggregate"]) for s in sa] == [("laplacian", "mean"), ("entropy", None)]
    rows = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [(r["importance"], r["aggregate"], r["tokens"]) for r in rows] == [
        (s["importance"], s["aggregate"], s["tokens"]) for s in sa
    ]
    again = aptviz_cli(photo, "--importance", "laplacian,entropy", "-m", "budget:0.5", "-o", tmp_path / "a")
    assert "already complete with these parameters: skipped" in " ".join(again.stdout.split())


@pytest.mark.slow
def test_dataset_percentiles_per_measure(tmp_path):
    aptviz_cli(SAMPLES, "--importance", "entropy,laplacian,upsample-mse", "-m", "budget:0.3", "-q", "-o", tmp_path)
    data = json.loads((tmp_path / "dataset.json").read_text())
    assert list(data["by_measure"]) == ["entropy", "laplacian", "upsample-mse"]
    for measure, per in data["by_measure"].items():
        cells = {ps: 0 for ps in (14, 28, 56)}
        for photo in PHOTOS:
            maps = compute_importance(np.asarray(resize_image(load_image(photo))), measure,
                                      None if measure == "entropy" else "mean")  # fmt: skip
            for ps, m in maps.items():
                cells[ps] += int((m != 1e6).sum())
        assert per["cells"] == {str(ps): n for ps, n in cells.items()}
        assert set(per["percentiles"]["28"]) == {"p5", "p25", "p50", "p75", "p95"}
    p50 = {m: per["percentiles"]["28"]["p50"] for m, per in data["by_measure"].items()}
    assert len(set(p50.values())) == 3  # each measure its own distribution


def test_api_takes_a_list_of_measures():
    photo = SAMPLES / "coffee.png"
    both = aptviz.analyze(photo, methods=["budget"], alphas=[0.3], importance=["entropy", "laplacian"], aggregate="max")
    lap = aptviz.analyze(photo, methods=["budget"], alphas=[0.3], importance="laplacian", aggregate="max")
    assert [(s["importance"], s["aggregate"]) for s in both["selections"]] == [("entropy", None), ("laplacian", "max")]
    assert both["selections"][1]["tokens_by_scale"] == lap["selections"][0]["tokens_by_scale"]
    assert set(both["importance_by_measure"]) == {"entropy", "laplacian"}
    assert both["importance_by_measure"]["laplacian"] == lap["importance"]
    labels = [r.label for r in build_runs(["budget:0.3"], measure=["entropy", "upsample-mse"])]
    assert labels == ["entropy_budget_alpha0.3", "upsample-mse_budget_alpha0.3"]


@pytest.mark.slow
def test_stats_and_calibrate_take_several_measures(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    photo = SAMPLES / "chelsea.png"
    aptviz_cli("stats", photo, "-o", tmp_path / "s", "-m", "budget", "-a", "0.3", "--importance", "entropy,laplacian",
               "--fidelity", "-q")  # fmt: skip
    rows = [r for f in sorted((tmp_path / "s").glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert [(r["importance"], r["selection"]) for r in rows] == [
        ("entropy", "entropy_budget_alpha0.3"), ("laplacian", "laplacian_budget_alpha0.3")
    ]  # fmt: skip
    assert rows[0]["importance_mean"] != rows[1]["importance_mean"] and rows[0]["ssim_apt"] != rows[1]["ssim_apt"]
    again = aptviz_cli("stats", photo, "-o", tmp_path / "s", "-m", "budget", "-a", "0.3", "--importance",
                       "entropy,laplacian", "--fidelity")  # fmt: skip
    assert "1 already in" in again.stdout  # resumed: the measure is part of the row key
    aptviz_cli("calibrate", SAMPLES, "-m", "v2", "--target", "0.4", "--importance", "entropy,laplacian", "-q",
               "-o", tmp_path / "c")  # fmt: skip
    cal = json.loads((tmp_path / "c" / "calibration.json").read_text())
    assert [c["importance"] for c in cal["measures"]] == ["entropy", "laplacian"]
    for entry in cal["measures"]:
        aptviz_cli("calibrate", SAMPLES, "-m", "v2", "--target", "0.4", "--importance", entry["importance"], "-q",
                   "-o", tmp_path / entry["importance"])  # fmt: skip
        alone = json.loads((tmp_path / entry["importance"] / "calibration.json").read_text())
        assert {**entry, "model": cal["model"], "params": {**cal["params"], "importance": entry["importance"],
                "aggregate": entry["aggregate"]}} == alone  # fmt: skip
