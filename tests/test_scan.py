"""The one folder scanner (aptviz.runs.scan): the main command and aptviz stats see the same files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aptviz.datasets.sources import iter_units
from aptviz.runs.batch import discover
from aptviz.runs.scan import IMAGE_EXTENSIONS, scan_folder

from conftest import SAMPLES, aptviz, small_images


def _tree(root: Path) -> Path:
    """photos with a sub-folder, the output folder inside, a link into it and a FIFO named like a photo."""
    src = small_images(root / "photos", 2)
    small_images(src / "sub", 1, seed=5)
    small_images(src / "out" / "img00", 1, seed=9)  # an earlier run's pictures
    (src / "notes.txt").write_text("x")
    os.symlink(src / "out" / "img00" / "img00.png", src / "link.png")
    os.mkfifo(src / "pipe.png")
    return src


def test_both_commands_scan_a_folder_alike(tmp_path):
    src = _tree(tmp_path)
    found = [p.relative_to(src).as_posix() for p in scan_folder(src, True, IMAGE_EXTENSIONS, src / "out")]
    assert found == ["img00.png", "img01.png", "pipe.png", "sub/img00.png"]
    jobs, failures = discover([src], recursive=True, exclude=src / "out")
    assert [j.path for j in jobs] == [src / f for f in found] and not failures
    units = list(iter_units([src], recursive=True, exclude=src / "out"))
    assert [u.ref.path for u in units] == [str(src / f) for f in found]
    assert [u.error for u in units] == [None, None, "not a regular file (a named pipe)", None]
    flat = [p.relative_to(src).as_posix() for p in scan_folder(src, False, IMAGE_EXTENSIONS, src / "out")]
    assert flat == ["img00.png", "img01.png", "pipe.png"]


def test_an_input_folder_inside_the_output_is_scanned(tmp_path):
    out = tmp_path / "out"
    inner = small_images(out / "again", 2)
    assert len(scan_folder(inner, False, IMAGE_EXTENSIONS, out)) == 2
    assert len(list(iter_units([inner], exclude=out))) == 2


@pytest.mark.timing
def test_a_fifo_in_a_folder_is_one_clear_line_for_the_main_command(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src / "good.png")
    os.mkfifo(src / "pipe.png")
    r = aptviz(src, "-o", tmp_path / "out", "-m", "budget:0.3", "-q")  # never opened: no hang
    assert r.returncode == 1, r.stderr
    assert "pipe.png: not a regular file (a named pipe)" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "out" / "good" / "stats.json").exists()
