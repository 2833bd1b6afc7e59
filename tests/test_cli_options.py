"""Command-line options (aptviz.cli.options): values checked up front, usage errors in one line."""

from __future__ import annotations

import json

import pytest

from conftest import SAMPLES, small_images
from conftest import command as aptviz  # in this process: the lines and files are the point


@pytest.mark.parametrize(
    "args,message",
    [
        (["--thresholds", "inf,inf"], "thresholds must be finite numbers"),
        (["--thresholds", "nan,2"], "thresholds must be numbers"),
        (["--thresholds", "3,-inf"], "thresholds must be finite numbers"),
        (["--max-memory", "lots"], "--max-memory: expected a size"),
    ],
)
def test_non_finite_thresholds_are_usage_errors(tmp_path, args, message):
    r = aptviz(SAMPLES / "chelsea.png", "-o", tmp_path / "out", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "chelsea").exists()


@pytest.mark.slow
def test_num_scales_without_thresholds_uses_the_documented_default(tmp_path):
    for n, expected in ((1, []), (2, [3.0]), (4, [3.0, 2.0, 2.0])):
        r = aptviz(SAMPLES / "chelsea.png", "-o", tmp_path / f"out{n}", "--num-scales", str(n), "-q")
        assert r.returncode == 0, r.stderr
        stats = json.loads((tmp_path / f"out{n}" / "chelsea" / "stats.json").read_text())
        assert stats["selections"][0]["thresholds"] == expected
    r = aptviz(SAMPLES / "chelsea.png", "-o", tmp_path / "x", "--num-scales", "4", "--thresholds", "3")
    assert r.returncode == 2 and "--thresholds needs 3 value(s)" in r.stderr


def test_output_equal_to_an_input_folder_is_a_clear_error(tmp_path):
    src = small_images(tmp_path / "in", 2)
    r = aptviz(src, "-o", src)
    assert r.returncode == 2 and "is also an input folder" in r.stderr, r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["img00.png", "img01.png"]


import subprocess  # noqa: E402
import sys  # noqa: E402

from conftest import invoke  # noqa: E402


def test_method_names_any_case_and_a_suggestion(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(SAMPLES / "chelsea.png"), "-m", "budgte", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr == "aptviz: error: unknown method 'budgte' (did you mean 'budget'?); choose v1, v2 or budget\n"
    ok = invoke(SAMPLES / "chelsea.png", "-m", "BUDGET", "-a", "0.3", "-m", "V1", "-o", tmp_path, "--json")
    assert ok.exit_code == 0
    assert [s["method"] for s in json.loads(ok.stdout)["selections"]] == ["budget", "v1"]
