"""Model presets (--model, Params(model=)): Qwen2-VL, Qwen2.5-VL and Qwen3-VL on the command line,
in stats.json, summaries, Parquet rows and resume keys."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import aptviz
from aptviz.cli.command import app, main
from aptviz.compute.params import Params
from aptviz.compute.presets import CLIP_MEAN, PRESETS, Model, preset
from aptviz.compute.resize import resize_image
from aptviz.errors import ParameterError

import reference as ref
from conftest import SAMPLES

MODELS = [m.value for m in Model]
PHOTOS = [SAMPLES / "chelsea.png", SAMPLES / "coffee.png"]


def _cli_json(*args) -> dict:
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _numbers(stats: dict) -> dict:
    """stats.json without what only written files have (file names, render options, histograms)."""
    out = {k: v for k, v in stats.items() if k not in ("files", "render", "importance_histogram")}
    out["selections"] = [{k: v for k, v in sel.items() if k != "files"} for sel in stats["selections"]]
    return out


# -- Params ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_a_preset_sets_the_sizes_unless_they_are_given(model):
    p, spec = Params(model=model), PRESETS[Model(model)]
    assert (p.patch_size, p.merge_size, p.temporal_patch_size) == (spec.patch_size, spec.merge_size, 2)
    assert p.scales == [spec.patch_size * k for k in (1, 2, 4)] and p.factor == spec.unit
    assert (p.min_pixels, p.max_pixels) == (3136, 1003520)  # transformers' class defaults for every preset
    given = Params(model=model, patch_size=10, merge_size=4)
    assert (given.patch_size, given.merge_size, given.model) == (10, 4, model)
    d = p.to_dict()
    assert d["model"] == model and d["patch_size"] == spec.patch_size
    assert Params(**d) == p  # stats.json's params rebuild the same Params


def test_preset_values_are_the_checkpoints():
    q2, q25, q3 = (preset(m) for m in MODELS)
    assert q2.image_mean == q25.image_mean == CLIP_MEAN and q3.image_mean == q3.image_std == (0.5, 0.5, 0.5)
    assert (q2.unit, q25.unit, q3.unit) == (28, 28, 32)
    assert q2.checkpoint_pixels == q25.checkpoint_pixels == (3136, 12845056)
    assert q3.checkpoint_pixels == (65536, 16777216)
    assert (q2.window_size, q25.window_size, q3.window_size) == (None, 112, None)


def test_an_unknown_model_is_a_usage_error(tmp_path):
    with pytest.raises(ParameterError, match="unknown model 'qwen4-vl'"):
        Params(model="qwen4-vl")
    r = CliRunner().invoke(app, [str(PHOTOS[0]), "--model", "qwen4-vl", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "qwen3-vl" in r.output
    assert not any(tmp_path.iterdir())


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.stem)
def test_qwen3vl_on_the_command_line(path, tmp_path):
    transformers_resize = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    stats = _cli_json(path, "--model", "qwen3-vl", "-m", "budget:0.3", "-m", "v2:1.0", "-m", "v1",
                      "-o", tmp_path, "--save-maps")  # fmt: skip
    img = aptviz.load_image(path)
    h, w = transformers_resize(img.height, img.width, factor=32, min_pixels=3136, max_pixels=1003520)
    assert stats["image"]["resized_size"] == [w, h]
    assert stats["params"]["model"] == "qwen3-vl" and stats["params"]["patch_size"] == 16
    assert stats["grid"] == {str(ps): [math.ceil(h / ps), math.ceil(w / ps)] for ps in (16, 32, 64)}

    resized = np.asarray(resize_image(img, 32))
    geo = ref.Geometry(h, w, [16, 32, 64])
    with np.load(tmp_path / path.stem / "maps.npz") as z:
        maps = {ps: z[f"entropy_{ps}"] for ps in (16, 32, 64)}
        masks = {label: {ps: z[f"mask_{label}_{ps}"] for ps in (16, 32, 64)} for label in ("budget_alpha0.3", "v2_alpha1", "v1")}
    for ps in (16, 32, 64):  # the maps are those of the factor-32 resize, at 16/32/64 px
        assert np.abs(maps[ps] - ref.entropy_map(resized, ps)).max() <= 1e-4
    budget, info = ref.select_budget(maps, geo, 0.3)
    expected = {
        "budget_alpha0.3": budget,
        "v2_alpha1": ref.select_thresholds(maps, geo, ref.v2_thresholds(maps, geo, 1.0)),
        "v1": ref.select_thresholds(maps, geo, (3.0, 2.0)),
    }
    for sel, label in zip(stats["selections"], expected):
        for ps in (16, 32, 64):
            assert np.array_equal(masks[label][ps], expected[label][ps]), (label, ps)
        t = {int(k): v for k, v in sel["tokens_by_scale"].items()}
        assert t == {ps: int(expected[label][ps].sum()) for ps in (16, 32, 64)}
        assert t[16] % 4 == 0 and sel["llm_tokens"] == t[16] // 4 + t[32] + t[64]
        assert sel["llm_tokens_uniform"] == (h // 32) * (w // 32) and sel["base_small_tokens"] == (h // 16) * (w // 16)
    assert stats["selections"][0]["budget_info"] == info


def test_qwen25vl_gives_qwen2vls_numbers_with_the_model_recorded(tmp_path):
    runs = ["-m", "budget:0.3", "-m", "v2:1.0", "-m", "v1"]
    a = _cli_json(PHOTOS[1], *runs, "-o", tmp_path / "a")
    b = _cli_json(PHOTOS[1], *runs, "-o", tmp_path / "b", "--model", "qwen2.5-vl")
    assert (a["params"].pop("model"), b["params"].pop("model")) == ("qwen2-vl", "qwen2.5-vl")
    assert _numbers(a) == _numbers(b)
    api = aptviz.analyze(PHOTOS[1], ["budget:0.3", "v2:1.0", "v1"], model="qwen2.5-vl")
    assert api["params"].pop("model") == "qwen2.5-vl" and _numbers(api) == _numbers(a)


@pytest.mark.parametrize("model", MODELS)
def test_the_api_and_the_command_line_agree(model, tmp_path):
    stats = _cli_json(PHOTOS[0], "--model", model, "-m", "budget:0.3", "-o", tmp_path, "--device", "cpu")
    assert _numbers(stats) == _numbers(aptviz.analyze(PHOTOS[0], ["budget:0.3"], model=model))
    assert stats["params"]["model"] == model


def test_explicit_sizes_override_the_preset(tmp_path):
    stats = _cli_json(PHOTOS[0], "--model", "qwen3-vl", "--patch-size", "14", "-m", "budget:0.3", "-o", tmp_path)
    assert stats["params"]["model"] == "qwen3-vl"
    assert (stats["params"]["patch_size"], stats["params"]["merge_size"]) == (14, 2)
    assert list(stats["grid"]) == ["14", "28", "56"] and stats["image"]["resized_size"] == [448, 308]


def test_tokens_npz_use_the_presets_normalization(tmp_path):
    r = CliRunner().invoke(app, [str(PHOTOS[0]), "--model", "qwen3-vl", "-m", "budget:1", "-o", str(tmp_path),
                                 "--export-tokens", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    resized = np.asarray(resize_image(aptviz.load_image(PHOTOS[0]), 32)).astype(np.float64)
    with np.load(tmp_path / "chelsea" / "tokens.npz") as z:
        rows = z["apt_pixel_values_budget_alpha1"]
        assert rows.shape[1] == 3 * 2 * 16 * 16
        first = rows[0].reshape(3, 2, 16, 16)[:, 0]  # the top-left 16 px patch, every channel
    expected = ((resized[:16, :16] / 255 - 0.5) / 0.5).transpose(2, 0, 1)
    assert np.abs(first - expected).max() <= 1e-6


def test_each_model_redoes_the_folder_and_the_summary_names_it(tmp_path):
    args = [str(PHOTOS[0]), "-m", "budget:0.3", "-o", str(tmp_path), "-q"]
    stats = tmp_path / "chelsea" / "stats.json"
    seen = set()
    for model in MODELS:
        assert CliRunner().invoke(app, [*args, "--model", model]).exit_code == 0
        assert json.loads(stats.read_text())["params"]["model"] == model
        seen.add(stats.stat().st_mtime_ns)
    assert len(seen) == 3  # qwen2.5-vl's numbers equal qwen2-vl's, yet the folder was redone for it
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["model"], r["tokens_16"]) for r in rows] == [("qwen3-vl", rows[0]["tokens_16"])]
    assert int(rows[0]["tokens_16"]) > 0 and "tokens_14" not in rows[0]


def test_a_second_run_with_the_same_model_is_skipped(tmp_path):
    args = [str(PHOTOS[0]), "-m", "budget:0.3", "-o", str(tmp_path), "-q", "--model", "qwen3-vl"]
    stats = tmp_path / "chelsea" / "stats.json"
    assert CliRunner().invoke(app, args).exit_code == 0
    first = stats.stat().st_mtime_ns
    assert CliRunner().invoke(app, args).exit_code == 0
    assert stats.stat().st_mtime_ns == first  # same model: complete, not redone
    assert CliRunner().invoke(app, [*args[:-1], "qwen2.5-vl"]).exit_code == 0
    assert stats.stat().st_mtime_ns != first and json.loads(stats.read_text())["params"]["model"] == "qwen2.5-vl"


# -- aptviz stats and calibrate ---------------------------------------------------------------------


def test_stats_rows_carry_the_model_and_its_numbers(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    from aptviz.datasets.parquet import part_files

    out = tmp_path / "stats"
    for model in MODELS:
        with pytest.raises(SystemExit) as done:
            main(["stats", str(PHOTOS[0]), "-o", str(out), "-m", "budget:0.3", "-m", "v1", "--model", model, "-q"])
        assert done.value.code == 0
    rows = [r for f in part_files(out) for r in pq.read_table(f).to_pylist()]
    assert sorted(r["model"] for r in rows) == sorted(MODELS * 2)  # three models: three sets of rows, none skipped
    assert len({r["run_key"] for r in rows}) == 6
    for model in MODELS:
        expected = aptviz.analyze(PHOTOS[0], ["budget:0.3", "v1"], model=model)
        mine = [r for r in rows if r["model"] == model]
        assert [r["scales"] for r in mine] == [preset(model).scales()] * 2
        for row, sel in zip(sorted(mine, key=lambda r: r["method"]), expected["selections"]):
            assert row["tokens_by_scale"] == list(sel["tokens_by_scale"].values())
            assert (row["vit_tokens"], row["llm_tokens"]) == (sel["vit_tokens"], sel["llm_tokens"])
            assert [row["resized_width"], row["resized_height"]] == expected["image"]["resized_size"]
    with pytest.raises(SystemExit) as again:  # the same model again: every row already there
        main(["stats", str(PHOTOS[0]), "-o", str(out), "-m", "budget:0.3", "-m", "v1", "--model", "qwen3-vl", "-q"])
    assert again.value.code == 0
    assert sum(pq.read_table(f).num_rows for f in part_files(out)) == 6


def test_calibrate_takes_the_model(tmp_path):
    from aptviz.runs.calibrate import calibrate_paths

    for model in ("qwen2-vl", "qwen3-vl"):
        r = CliRunner().invoke(
            main_app("calibrate"), [str(p) for p in PHOTOS] + ["--model", model, "--target", "0.3", "-o", str(tmp_path / model), "-q"]
        )
        assert r.exit_code == 0, r.output
        cal = json.loads((tmp_path / model / "calibration.json").read_text())
        expected, _ = calibrate_paths([str(p) for p in PHOTOS], "v2", 0.3, "mean", (3.0, 2.0), Params(model=model))
        assert cal["alpha"] == expected.value
        recorded = {k: v for k, v in Params(model=model).to_dict().items() if k != "device"}
        assert (cal["model"], cal["importance"], cal["params"]) == (model, "entropy", recorded)
    assert json.loads((tmp_path / "qwen2-vl" / "calibration.json").read_text()) != json.loads(
        (tmp_path / "qwen3-vl" / "calibration.json").read_text()
    )


def main_app(name: str):
    from importlib import import_module

    from aptviz.cli.command import SUBCOMMANDS

    module, _, attr = SUBCOMMANDS[name].partition(":")
    return getattr(import_module(module), attr)


# -- --show-windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--color-by-scale", "--line-width", "3"]], ids=["green", "by-scale"])
def test_show_windows_changes_only_the_112px_window_borders(tmp_path, extra):
    from PIL import Image

    base = [str(PHOTOS[1]), "--model", "qwen2.5-vl", "-m", "budget:0.3", "--overlay-format", "png", "-q", *extra]
    for name, flags in (("plain", []), ("windows", ["--show-windows"])):
        r = CliRunner().invoke(app, [*base, *flags, "-o", str(tmp_path / name)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    rel = "coffee/02_patches_grid/patches_visualization.png"
    plain = np.asarray(Image.open(tmp_path / "plain" / rel))
    windows = np.asarray(Image.open(tmp_path / "windows" / rel))
    stats = json.loads((tmp_path / "windows" / "coffee" / "stats.json").read_text())
    w, h = stats["image"]["resized_size"]
    assert stats["render"]["window"] == 112 and "window" not in json.loads(
        (tmp_path / "plain" / "coffee" / "stats.json").read_text()
    )["render"]
    lw = 3 if extra else 2
    # the border at x = 112 k covers columns x - lw // 2 ... x - lw // 2 + lw - 1, as a patch edge does
    near = lambda n: np.isin((np.arange(n) + lw // 2) % 112, np.arange(lw)) & (np.arange(n) >= 112 - lw // 2)  # noqa: E731
    border = near(h)[:, None] | near(w)[None, :]
    assert border.sum() > 0 and (w // 112, h // 112) == (5, 3)
    changed = (plain[:h] != windows[:h]).any(axis=-1)
    assert changed.any() and not changed[~border].any()  # only pixels on window borders change...
    assert (windows[:h][border] == (255, 0, 0)).all()  # ... and all of them are drawn in the window colour
    if not extra:  # the windows alone keep the resized image's size (compare.png names them)
        assert windows.shape[:2] == (h, w) == plain.shape[:2]
        return
    assert windows.shape[0] > h  # the scale legend's strip below the picture, with the windows' entry
    legend = windows[h:]
    assert ((legend == (255, 0, 0)).all(axis=-1)).sum() > 20  # the legend's red swatch


@pytest.mark.parametrize("model", ["qwen2-vl", "qwen3-vl"])
def test_show_windows_is_a_usage_error_for_models_without_windows(tmp_path, model):
    r = CliRunner().invoke(app, [str(PHOTOS[0]), "--model", model, "--show-windows", "-o", str(tmp_path)])
    assert r.exit_code == 2
    assert f"--show-windows needs --model qwen2.5-vl: {model}'s vision tower attends to the whole image" in " ".join(
        r.output.split()
    )
    assert not any(tmp_path.iterdir())


def test_show_windows_is_part_of_the_resume_key(tmp_path):
    args = [str(PHOTOS[0]), "--model", "qwen2.5-vl", "-m", "budget:0.3", "-o", str(tmp_path), "-q"]
    stats = tmp_path / "chelsea" / "stats.json"
    assert CliRunner().invoke(app, args).exit_code == 0
    first = stats.stat().st_mtime_ns
    assert CliRunner().invoke(app, [*args, "--show-windows"]).exit_code == 0
    assert stats.stat().st_mtime_ns != first and json.loads(stats.read_text())["render"]["window"] == 112


def test_the_worked_examples_in_the_docs_are_real_runs():
    from conftest import ROOT

    doc = " ".join((ROOT / "docs" / "models.md").read_text(encoding="utf-8").split())
    for model, photo in (("qwen2-vl", "chelsea"), ("qwen3-vl", "chelsea"), ("qwen2.5-vl", "coffee")):
        stats = aptviz.analyze(SAMPLES / f"{photo}.png", ["budget:0.3", "v2:1.0"], model=model)
        w, h = stats["image"]["resized_size"]
        assert f"→ {w}×{h}" in doc, (model, w, h)
        budget = stats["selections"][0]
        t = list(budget["tokens_by_scale"].values())
        small = f"{t[0]}/4 + {t[1]} + {t[2]} = {budget['llm_tokens']}"
        if photo == "chelsea":
            assert f"| budget 0.3 | {t[0]}/{t[1]}/{t[2]} | {budget['vit_tokens']} | {small} |" in doc, model
            v2 = stats["selections"][1]
            assert f"| v2 1.0 | {'/'.join(map(str, v2['tokens_by_scale'].values()))} | {v2['vit_tokens']} |" in doc
        else:
            assert f"keeps {t[0]}/{t[1]}/{t[2]} patches: {budget['vit_tokens']} ViT tokens" in doc
            assert f"{small} LLM tokens" in doc


def test_show_windows_with_a_merge_unit_larger_than_the_window_is_a_usage_error(tmp_path):
    args = [str(PHOTOS[0]), "--model", "qwen2.5-vl", "--patch-size", "64", "--num-scales", "2", "--show-windows"]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path)])
    assert r.exit_code == 2 and "a 128 px merge unit is larger than the 112 px attention window" in r.output
