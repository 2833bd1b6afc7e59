import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aptviz import __version__

from conftest import ROOT, command, invoke


def aptviz_cmd(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "aptviz", *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw
    )


def test_single_image_budget(tmp_path):
    r = invoke(
        ROOT / "sample_images/chelsea.png", "--patch-selection-method", "budget", "--alpha", "0.3", "-o", tmp_path
    )
    assert r.exit_code == 0, r.output
    assert "budget" in r.stdout and "0.2969" in r.stdout and "0.3000" in r.stdout  # actual beside target
    out = tmp_path / "chelsea"
    for rel in [
        "01_heatmaps/importance_map_scale_14.png",
        "01_heatmaps/importance_map_scale_28.png",
        "01_heatmaps/importance_map_scale_56.png",
        "02_patches_grid/patches_visualization.jpg",
        "03_original_resized/original_image.jpg",
        "03_original_resized/resized_image.jpg",
        "stats.json",
    ]:
        assert (out / rel).is_file(), rel
    stats = json.loads((out / "stats.json").read_text())
    assert stats["selections"][0]["budget_info"]["tokens"] == 209


def test_json_prints_only_json(tmp_path):
    r = aptviz_cmd("sample_images/coffee.png", "-m", "v2", "-a", "1", "--json", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["image"]["resized_size"] == [588, 392]
    assert stats["selections"][0]["method"] == "v2"
    assert stats == json.loads((tmp_path / "coffee" / "stats.json").read_text())


def test_help_lists_every_option():
    r = invoke("--help")
    for opt in [
        "--output",
        "--patch-selection-method",
        "--alpha",
        "--thresholds",
        "--patch-size",
        "--merge-size",
        "--temporal-patch-size",
        "--num-scales",
        "--min-pixels",
        "--max-pixels",
        "--device",
        "--recursive",
        "--workers",
        "--save-maps",
        "--json",
        "--quiet",
        "--verbose",
        "--version",
        "--overwrite",
        "--bins",
    ]:
        assert opt in r.stdout, opt


def test_version():
    r = aptviz_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"aptviz {__version__}"


def test_missing_file_is_one_line_no_traceback(tmp_path):
    r = aptviz_cmd(tmp_path / "nope.jpg", "-o", tmp_path / "o")
    assert r.returncode == 1
    assert "nope.jpg" in r.stderr and "file not found" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-m", "budget", "-a", "1.5"], "budget alpha must be in [0, 1]"),
        (["-m", "budget", "-a", "-0.1"], "budget alpha must be in [0, 1]"),
        (["-m", "v2", "-a", "-1"], "v2 alpha must be >= 0"),
        (["--thresholds", "3,2,1"], "--thresholds needs 2 value(s)"),
        (["--num-scales", "2", "--thresholds", "3,1,1"], "--thresholds needs 1 value(s)"),
        (["--thresholds", "inf,inf"], "thresholds must be finite numbers"),
        (["--thresholds", "a,b"], "comma-separated numbers"),
        (["--patch-size", "0"], "patch-size must be an integer >= 1"),
        (["--merge-size", "0"], "merge-size must be an integer >= 1"),
        (["--bins", "0"], "bins must be an integer >= 1"),
        (["--num-scales", "0", "--thresholds", ""], "num-scales must be an integer >= 1"),
        (["--min-pixels", "5000", "--max-pixels", "4000"], "min-pixels (5000) must not exceed max-pixels (4000)"),
        (["-m", "v9"], "v9"),
        (["--bins", "100000"], "bins must be <= 4096"),
        (["--patch-size", "300", "--thresholds", "1,1"], "coarsest patch"),
        (["--workers", "0"], "workers"),
    ],
)
def test_usage_errors_exit_2_before_any_work(tmp_path, args, needle):
    out = tmp_path / "o"
    r = command(ROOT / "sample_images/chelsea.png", "-o", out, *args)  # in this process: the message is the point
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "chelsea").exists()


def test_output_below_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = command(ROOT / "sample_images/chelsea.png", "-o", blocker / "sub")  # in this process
    assert r.returncode == 2 and "output folder" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_usage_error(tmp_path):
    r = command(ROOT / "sample_images/chelsea.png", "--device", "cuda", "-o", tmp_path)  # in this process
    assert r.returncode == 2 and "no CUDA GPU" in r.stderr


def test_auto_device_is_recorded(tmp_path):
    r = invoke(ROOT / "sample_images/chelsea.png", "-o", tmp_path, "--device", "auto", "-q")
    assert r.exit_code == 0
    stats = json.loads((tmp_path / "chelsea" / "stats.json").read_text())
    assert stats["params"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_quiet_prints_nothing_on_success(tmp_path):
    r = aptviz_cmd("sample_images/chelsea.png", "-q", "-o", tmp_path)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_verbose_shows_traceback_for_failures(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    r = aptviz_cmd(bad, "-v", "-o", tmp_path / "o")
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = aptviz_cmd(bad, "-o", tmp_path / "o")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert sum("bad.png" in line for line in r.stderr.splitlines() if line.startswith("aptviz: error")) == 1


def test_save_maps_flag(tmp_path):
    r = invoke(ROOT / "sample_images/chelsea.png", "--save-maps", "-o", tmp_path, "-q")
    assert r.exit_code == 0
    import numpy as np

    npz = np.load(tmp_path / "chelsea" / "maps.npz")
    assert set(npz.files) == {"entropy_14", "entropy_28", "entropy_56", "mask_v1_14", "mask_v1_28", "mask_v1_56"}


def test_run_visualize_script_uses_aptviz_on_path(tmp_path):
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    r = subprocess.run(
        ["bash", str(ROOT / "run_visualize.sh"), str(ROOT / "sample_images/chelsea.png"), "-o", str(tmp_path), "-q"],
        capture_output=True,
        text=True,
        env={"PATH": env_path, "HOME": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "chelsea" / "stats.json").is_file()


def test_alpha_without_an_alpha_method_warns(tmp_path):
    r = command(ROOT / "sample_images/chelsea.png", "-a", "0.3", "-o", tmp_path)  # in this process
    assert r.returncode == 0 and "--alpha is ignored by v1" in r.stderr


def test_unwritable_summary_is_one_line_and_images_go_on(tmp_path, monkeypatch):
    import aptviz.runs.summary as summary

    real_write = summary.write_bytes_atomic

    def refuse(path, data):  # summary.csv/json only (the retention plot goes through the same writer)
        if Path(path).name.startswith("summary."):
            raise PermissionError(13, "Permission denied")
        return real_write(path, data)

    monkeypatch.setattr(summary, "write_bytes_atomic", refuse)
    r = invoke(ROOT / "sample_images", "-o", tmp_path, "-q", "--workers", "1")
    assert r.exit_code == 1
    assert r.stderr.count("cannot write the summary") == 1 and "Traceback" not in r.stderr
    assert len(list(tmp_path.glob("*/stats.json"))) == 3


def test_bidi_controls_and_line_separators_in_names_are_escaped_on_the_terminal(tmp_path, monkeypatch):
    """Issue 27: U+202E (right-to-left override: ``a\\u202egnp.png`` shows as ``apng.png``) and U+2028/U+2029
    (line and paragraph separators) in file names reached the terminal raw; now as ``\\uNNNN``."""
    import shutil

    from conftest import SAMPLES, command

    src = tmp_path / "in\u2066"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src / "a\u202egnp.png")
    shutil.copy(SAMPLES / "coffee.png", src / "d\u2029e.png")
    (src / "b\u2028c.png").write_bytes(b"junk")
    out = tmp_path / "out\u200f"
    monkeypatch.setenv("COLUMNS", "400")  # no wrapped lines
    # in this process (-j 1 keeps every line here): what the commands print is the point, not the process
    runs = [command(src, "-o", out, "-j", "1"), command("stats", src, "-o", tmp_path / "rows", "-j", "1", "--summary")]
    for r in runs:
        assert r.returncode == 1, r.stderr
        printed = r.stdout + r.stderr
        assert not set(printed) & {"\u202e", "\u2028", "\u2029", "\u2066", "\u200f"}, printed
        assert "b\\u2028c.png: not a recognised image format" in r.stderr
    joined = runs[0].stdout.replace("\n", "")  # Rich wraps a long table title
    assert "in\\u2066/a\\u202egnp.png" in joined and "d\\u2029e.png" in joined
    assert "Outputs in " + str(tmp_path) + "/out\\u200f/" in runs[0].stdout
