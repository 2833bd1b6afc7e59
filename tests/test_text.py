"""File names and other untrusted text (aptviz._text): names that are not UTF-8 among good files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import aptviz, small_images
from conftest import summary_rows as rows_of


def test_non_utf8_name_among_good_files(tmp_path):
    src = small_images(tmp_path / "in", 3)
    odd = os.path.join(os.fsencode(src), b"caf\xe9.png")
    try:
        shutil.copy(src / "img00.png", odd)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    out = tmp_path / "out"
    r = aptviz(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = rows_of(out)
    assert len(rows) == 8 and all(row["status"] == "ok" for row in rows)
    odd_rows = [row for row in rows if "caf" in row["image"]]
    assert len(odd_rows) == 2 and odd_rows[0]["image"].endswith("caf\\xe9.png")  # the byte, as \xNN
    assert "caf\\xe9" in (out / "summary.csv").read_text(encoding="utf-8")
    stats = json.loads((Path(os.fsdecode(os.path.join(os.fsencode(out), b"caf\xe9"))) / "stats.json").read_text())
    assert stats["image"]["path"].endswith("caf\\xe9.png")
    again = aptviz(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-j", "2")
    assert again.returncode == 0 and again.stdout.count("skipped") >= 1
