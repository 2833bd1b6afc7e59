"""--importance / --aggregate through the real command, stats.json, summary, resume and heatmaps."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

import aptviz
from aptviz.compute.importance import compute_importance
from aptviz.compute.params import Params, build_runs
from aptviz.pipeline import compute, write_outputs
from aptviz.render.pictures import render_heatmap

from conftest import SAMPLES
from conftest import invoke as _invoke

CHELSEA = SAMPLES / "chelsea.png"


def invoke(*args):
    return _invoke(*args, catch_exceptions=False)


@pytest.mark.parametrize(
    "photo,selections,options,render",
    [
        ("chelsea.png", ["v1", "v2:0.8,1", "budget:0.3"], [], {}),
        ("astronaut.png", ["v1", "budget:0.2,0.5"], ["--importance", "laplacian", "--thresholds", "0.05,0.03"], {}),
        ("coffee.png", ["v2:1", "budget:0.4"], ["--importance", "upsample-mse", "--color-by-scale"],
         {"color_by_scale": True}),
        ("coffee.png", ["budget:0.3"], ["--importance", "laplacian", "--aggregate", "max", "--caption",
                                        "--overlay-format", "png"], {"caption": True, "overlay_format": "png"}),
    ],
)
def test_json_equals_analyze_on_sample_photos(tmp_path, photo, selections, options, render):
    """Acceptance (issue 16): ``aptviz IMG --json`` equals ``aptviz.analyze(IMG, ...)``, files aside."""
    from aptviz.render.image_pictures import RenderOptions

    path = SAMPLES / photo
    args = [a for sel in selections for a in ("-m", sel)] + options
    r = invoke(path, *args, "--json", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats == json.loads((tmp_path / path.stem / "stats.json").read_text())
    params = dict(zip(options[::2], options[1::2]))
    kw = {k: params[f"--{k}"] for k in ("importance", "aggregate") if f"--{k}" in params}
    thresholds = [float(t) for t in params["--thresholds"].split(",")] if "--thresholds" in params else None
    expected = aptviz.analyze(path, methods=selections, thresholds=thresholds, render=RenderOptions(**render), **kw)
    written = stats.pop("files")
    assert set(written) >= {"heatmaps", "original", "resized", "blend", "compare"}
    for sel in stats["selections"]:
        assert set(sel.pop("files")) == {"overlay", "model_view", "uniform"}
    for sel in expected["selections"]:
        assert sel.pop("files") == {}
    assert "files" not in expected and stats == expected
    assert stats["importance_histogram"] and stats["render"] == RenderOptions(**render).to_dict()


@pytest.mark.parametrize("measure,aggregate", [("laplacian", None), ("upsample-mse", "std")])
def test_json_equals_analyze(tmp_path, measure, aggregate):
    """The command's stats (--json) are analyze()'s, files aside: importance_histogram and render included."""
    extra = [] if aggregate is None else ["--aggregate", aggregate]
    r = invoke(CHELSEA, "-m", "budget:0.3", "-m", "v2:1", "--importance", measure, *extra, "--json", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    kw = {} if aggregate is None else {"aggregate": aggregate}
    expected = aptviz.analyze(CHELSEA, methods=["budget:0.3", "v2:1"], importance=measure, **kw)
    stats.pop("files")  # the only block written with the files
    for sel in stats["selections"]:
        sel["files"] = {}
    assert stats == expected
    assert stats["params"]["importance"] == measure
    assert stats["params"]["aggregate"] == (aggregate or "mean")
    assert "entropy" not in stats and set(stats["importance"]) == {"14", "28", "56"}
    if measure == "upsample-mse":  # nothing lost at the finest size
        assert stats["importance"]["14"]["max"] == 0.0


def test_entropy_stats_keep_the_alias(tmp_path):
    r = invoke(CHELSEA, "-m", "budget", "-a", "0.3", "--json", "-o", tmp_path)
    stats = json.loads(r.stdout)
    assert stats["entropy"] == stats["importance"]
    assert list(stats).index("entropy") + 1 == list(stats).index("importance")
    assert stats["params"]["importance"] == "entropy" and stats["params"]["aggregate"] is None


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--importance", "laplacian"], "no default thresholds for laplacian"),
        (["--importance", "upsample-mse", "-m", "v1"], "no default thresholds for upsample-mse"),
        (["--aggregate", "max"], "--aggregate max applies to laplacian and upsample-mse, not to entropy"),
        (["--importance", "sobel"], "sobel"),
        (["--importance", "laplacian", "--aggregate", "median", "-m", "v2"], "median"),
    ],
)
def test_usage_errors(tmp_path, args, needle):
    r = _invoke(CHELSEA, "-o", tmp_path / "o", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert not (tmp_path / "o" / "chelsea").exists()


def test_v1_with_thresholds_on_laplacian(tmp_path):
    r = invoke(CHELSEA, "--importance", "laplacian", "--thresholds", "0.05,0.03", "--json", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    sel = json.loads(r.stdout)["selections"][0]
    assert sel["method"] == "v1" and sel["thresholds"] == [0.05, 0.03]


def test_resume_redoes_another_measure_and_summary_records_it(tmp_path):
    args = [CHELSEA, "-m", "budget", "-a", "0.3", "-o", tmp_path]
    assert invoke(*args).exit_code == 0
    first = json.loads((tmp_path / "chelsea" / "stats.json").read_text())
    r = invoke(*args, "--importance", "upsample-mse")
    assert r.exit_code == 0 and "skipped" not in r.stdout
    second = json.loads((tmp_path / "chelsea" / "stats.json").read_text())
    assert second["params"]["importance"] == "upsample-mse"
    assert second["selections"][0]["tokens"] != first["selections"][0]["tokens"] or first != second
    r = invoke(*args, "--importance", "upsample-mse")
    assert "skipped" in r.stdout  # same measure again: complete
    r = invoke(*args, "--importance", "upsample-mse", "--aggregate", "max")
    assert "skipped" not in r.stdout  # another aggregate: redone
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(row["importance"], row["aggregate"]) for row in rows] == [("upsample-mse", "max")]


def test_entropy_heatmap_is_the_plain_entropy_picture(tmp_path):
    """The entropy colorbar is exactly the first milestone's: the measure name only appears for the others."""
    runs = build_runs(["v1"])
    result = compute(CHELSEA, runs, Params())
    stats = write_outputs(result, tmp_path)
    e = stats.importance
    vmin, vmax = min(s.min for s in e.values()), max(s.max for s in e.values())
    h, w = result.resized.shape[:2]
    for ps, m in result.maps.items():
        got = np.asarray(Image.open(tmp_path / "01_heatmaps" / f"importance_map_scale_{ps}.png"))
        assert np.array_equal(got, render_heatmap(m, ps, (w, h), vmin=vmin, vmax=vmax))


def test_other_measures_name_measure_and_unit_on_the_colorbar(tmp_path):
    img = np.asarray(Image.open(CHELSEA).convert("RGB").resize((448, 308)))
    m = compute_importance(img, "laplacian")[28]
    plain = render_heatmap(m, 28, (448, 308))
    named = render_heatmap(m, 28, (448, 308), unit="mean |∇²|", measure="laplacian")
    assert np.array_equal(plain[:, :448], named[:, :448])  # same cells
    assert named.shape[1] > plain.shape[1] or not np.array_equal(plain[:, 448:], named[:, 448:])


def test_help_lists_the_options():
    r = invoke("--help")
    assert "--importance" in r.stdout and "--aggregate" in r.stdout and "upsample-mse" in r.stdout


def test_save_maps_names_the_measure(tmp_path):
    r = invoke(CHELSEA, "-m", "budget", "-a", "0.3", "--importance", "upsample-mse", "--save-maps", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "chelsea" / "maps.npz") as npz:
        assert {k for k in npz.files if not k.startswith("mask_")} == {f"upsample-mse_{s}" for s in (14, 28, 56)}
        img = np.asarray(aptviz.resize_image(aptviz.load_image(CHELSEA)))
        assert np.array_equal(npz["upsample-mse_28"], compute_importance(img, "upsample-mse")[28])


def test_run_api_takes_the_measure(tmp_path):
    params = Params(importance="laplacian", aggregate="max")
    with pytest.raises(aptviz.errors.ParameterError, match="no default thresholds for laplacian"):
        aptviz.run([CHELSEA], tmp_path / "a", ["v1"], params, workers=1)
    report = aptviz.run([CHELSEA], tmp_path / "b", ["budget:0.3"], params, workers=1)
    stats = report.images[0].stats
    assert report.return_code == 0 and stats.params.importance == "laplacian" and stats.params.aggregate == "max"
    expected = aptviz.analyze(CHELSEA, methods=["budget:0.3"], importance="laplacian", aggregate="max")
    assert stats.selections[0].tokens_by_scale == {
        int(k): v for k, v in expected["selections"][0]["tokens_by_scale"].items()
    }


def test_single_scale_pictures_show_a_scale_with_data(tmp_path):
    """upsample-mse's finest map is all zeros: the blend and compare.png show its 28 px map instead."""
    for measure, shown in (("entropy", 14), ("upsample-mse", 28)):
        r = invoke(CHELSEA, "-m", "budget", "-a", "0.3", "--importance", measure, "-q", "-o", tmp_path / measure)
        assert r.exit_code == 0, r.output
        files = json.loads((tmp_path / measure / "chelsea" / "stats.json").read_text())["files"]
        assert files["blend"] == f"01_heatmaps/importance_blend_scale_{shown}.jpg"
        assert (tmp_path / measure / "chelsea" / files["blend"]).is_file()
