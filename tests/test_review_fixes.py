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
