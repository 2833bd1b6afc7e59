"""The plain install has no matplotlib (it is the ``plots`` extra): the real command runs
with matplotlib made unimportable, in this process's interpreter and in its workers."""

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from aptviz.render.pictures import _font, _unicode_font, legible

from conftest import SAMPLES

NOTICE = "batch figures skipped: install aptviz[plots] (matplotlib)"
FIGURES = ("retention_vs_alpha.png", "psnr_vs_retention.png", "importance_histogram.png")

# imported at start-up by every Python process that has this folder on PYTHONPATH (workers included)
BLOCKER = '''
import sys

class _NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _NoMatplotlib())
sys.modules["matplotlib"] = None
'''


def aptviz_without_matplotlib(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "aptviz", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_the_blocker_blocks(tmp_path):
    r = aptviz_without_matplotlib(tmp_path, "--help")
    assert r.returncode == 0
    site = tmp_path / "site"
    probe = subprocess.run(
        [sys.executable, "-c", "import matplotlib"], capture_output=True, text=True, env={"PYTHONPATH": str(site)}
    )
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr and "matplotlib" in probe.stderr


def test_batch_without_matplotlib_writes_everything_but_the_batch_figures(tmp_path):
    out = tmp_path / "out"
    images = [SAMPLES / "chelsea.png", SAMPLES / "coffee.png"]
    r = aptviz_without_matplotlib(tmp_path, *images, "-m", "budget:0.3", "-m", "v1", "-o", out, "-j", "2")
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count(NOTICE) == 1
    assert [line for line in r.stderr.splitlines() if NOTICE in line] == [f"aptviz: {NOTICE}"]
    assert "Traceback" not in r.stderr
    for name in ("chelsea", "coffee"):
        folder = out / name
        stats = json.loads((folder / "stats.json").read_text())
        assert [s["method"] for s in stats["selections"]] == ["budget", "v1"]
        expected = [
            *(f"01_heatmaps/importance_map_scale_{ps}.png" for ps in (14, 28, 56)),
            "01_heatmaps/importance_blend_scale_14.jpg",
            "02_patches_grid/patches_budget_alpha0.3.jpg",
            "02_patches_grid/patches_v1.jpg",
            "03_original_resized/original_image.jpg",
            "03_original_resized/resized_image.jpg",
            "04_model_view/model_view_budget_alpha0.3.jpg",
            "04_model_view/uniform_v1.jpg",
            "compare.png",
        ]
        for rel in expected:
            assert (folder / rel).stat().st_size > 1000, rel
    for name in ("summary.csv", "summary.json", "dataset.json", "report.html"):
        assert (out / name).is_file(), name
    for fig in FIGURES:
        assert not (out / fig).exists(), fig
    page = (out / "report.html").read_text()
    for fig in FIGURES:
        assert fig not in page
    data = json.loads(re.search(r'id="aptviz-data">(.*?)</script>', page, re.S).group(1))  # the cards' data
    strings = data["strings"]
    linked = set()
    for card in data["cards"]:
        rels = [h[1] for h in card["heat"]] + [card["blend"]] + [f for sel in card["sels"] for f in sel["files"]]
        linked |= {unquote(card["base"] + strings[i]) for i in rels if i is not None}
    assert len(linked) >= 2 * 7  # heatmaps, blend, overlays and model views of both images
    assert all((out / rel).is_file() for rel in linked), sorted(r for r in linked if not (out / r).is_file())


def test_single_image_without_matplotlib_has_no_notice(tmp_path):
    """One image, one selection: no batch figure is due, so nothing is said about them."""
    out = tmp_path / "one"
    r = aptviz_without_matplotlib(tmp_path, SAMPLES / "chelsea.png", "-m", "budget", "-a", "0.3", "-o", out)
    assert r.returncode == 0, r.stderr
    assert NOTICE not in r.stdout + r.stderr
    assert (out / "chelsea" / "02_patches_grid" / "patches_visualization.jpg").is_file()
    assert (out / "chelsea" / "compare.png").is_file()
    assert json.loads((out / "chelsea" / "stats.json").read_text())["selections"][0]["tokens"] > 0


def test_laplacian_heatmaps_without_matplotlib(tmp_path):
    """The colorbar title of a measure with ∇² falls back to plain text in Pillow's default font."""
    out = tmp_path / "lap"
    r = aptviz_without_matplotlib(
        tmp_path, SAMPLES / "chelsea.png", "-m", "budget", "-a", "0.3", "--importance", "laplacian", "-o", out
    )
    assert r.returncode == 0, r.stderr
    assert (out / "chelsea" / "01_heatmaps" / "importance_map_scale_14.png").stat().st_size > 1000


def test_legible_keeps_what_the_font_draws_and_spells_out_the_rest():
    default = _font(14)
    assert legible("mean |∇²|", default) == "mean |laplacian|"
    assert legible("std |∇²|", default) == "std |laplacian|"
    assert legible("MSE", default) == "MSE"
    assert legible("chelsea.png 451x300", default) == "chelsea.png 451x300"
    dejavu = _unicode_font(14)
    if dejavu is default:
        pytest.skip("matplotlib's DejaVu Sans is not installed")
    assert legible("mean |∇²|", dejavu) == "mean |∇²|"


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_a_vector_figure_format_without_matplotlib_is_one_clear_line(tmp_path, fmt):
    out = tmp_path / "out"
    r = aptviz_without_matplotlib(tmp_path, SAMPLES / "chelsea.png", "--figure-format", fmt, "-o", out)
    assert r.returncode == 2
    assert f"--figure-format {fmt} needs matplotlib" in r.stderr and "aptviz[plots]" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_a_video_without_matplotlib_writes_all_its_pictures(tmp_path):
    """A video's timeline, contact sheet, animation and card are drawn with Pillow (docs/video.md)."""
    import cv2
    import numpy as np

    from conftest import textured

    clip = tmp_path / "c.mkv"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 4.0, (112, 84))
    for k in range(8):
        writer.write(np.ascontiguousarray(textured(84, 112, seed=k)[..., ::-1]))
    writer.release()
    out = tmp_path / "out"
    r = aptviz_without_matplotlib(tmp_path, clip, "-m", "budget:0.3", "--static-threshold", "1", "-o", out, "-j", "1")
    assert r.returncode == 0, r.stderr
    stats = json.loads((out / "c" / "stats.json").read_text())
    files = [*stats["files"].values(), *stats["selections"][0]["files"].values()]
    assert "token_timeline.png" in files
    for rel in files:
        assert (out / "c" / rel).stat().st_size > 500, rel
