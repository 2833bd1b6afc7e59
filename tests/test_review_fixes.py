"""Defects found by the milestone-3 new-user review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urljoin

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.sep == "\\", reason="a backslash is a path separator on Windows")
def test_report_links_keep_a_backslash_in_a_file_name(tmp_path):
    """A browser reads a raw backslash in a relative URL as '/': report.html must send it as %5C."""
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(ROOT / "sample_images" / "chelsea.png", src / "caf\u00e9 a\\b.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(src), "-m", "budget:0.3", "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href|data-src)="([^"]+)"', page)
    local = [u for u in links if not u.startswith(("#", "data:", "http"))]
    assert any("explorer.js" in u for u in local), local
    for u in local:
        assert "\\" not in u, u
        # resolve as a browser does (WHATWG: '\' is '/' in file URLs), then map back to a path
        resolved = urljoin((out / "report.html").as_uri(), u.replace("\\", "/"))
        path = Path(unquote(resolved[len("file://"):]))
        assert path.exists(), (u, path)


def test_explorer_load_rejects_when_the_data_file_is_missing(tmp_path):
    """aptviz.load(name) settles (rejects) when the card's explorer.js cannot be loaded; it used to hang."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = os.environ.get("APTVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium}")
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(ROOT / "sample_images" / name, src / name)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(src), "-m", "budget:0.3", "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (out / "coffee" / "explorer.js").unlink()
    settle = """n => Promise.race([
        window.aptviz.load(n).then(() => 'loaded', e => 'rejected: ' + e.message),
        new Promise(r => setTimeout(() => r('pending'), 3000))])"""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page()
        pg.goto((out / "report.html").as_uri(), wait_until="load")
        assert pg.evaluate(settle, "chelsea") == "loaded"
        got = pg.evaluate(settle, "coffee")
        browser.close()
    assert got.startswith("rejected: ") and "explorer.js" in got, got


def test_fidelity_lossless_marks_stay_inside_the_psnr_panel(tmp_path):
    """v1 is lossless on chelsea (infinite dB): its PSNR mark sat outside the axes.

    A point is marked lossless only when every image of it is (a lossless image among others is left
    out of the mean), so the batch here is chelsea alone."""
    import json
    import subprocess
    import sys

    from aptviz.compute.fidelity import fidelity_points
    from aptviz.render.fidelity import fidelity_figure

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aptviz", str(ROOT / "sample_images" / "chelsea.png"), "-m", "v1", "-m", "v2:1.0",
         "-m", "budget:0.3",
         "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = fidelity_points(json.loads((out / "summary.json").read_text()))
    lossless = [p for p in summary.panels[0].points if p.psnr is None]
    assert lossless, "chelsea's v1 selection is expected to reproduce the image exactly"
    fig = fidelity_figure(summary)
    fig.tight_layout()
    fig.canvas.draw()
    ax = fig.axes[2]  # PSNR against LLM tokens
    box = ax.get_window_extent()
    marks = [t for t in ax.texts if t.get_text() == "lossless"]
    assert len(marks) == len(lossless)
    for t in marks:
        e = t.get_window_extent()
        assert box.x0 <= e.x0 and e.x1 <= box.x1, (e, box)
