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


import json  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from aptviz.cli.command import app  # noqa: E402

from conftest import png_bomb, textured, truncated_jpeg  # noqa: E402


def _write_awkward(folder: Path) -> dict[str, str]:
    """Valid but awkward inputs -> the expected resized size as 'WxH'."""
    folder.mkdir(parents=True, exist_ok=True)
    exp = {}
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(folder / "deep16.png")
    exp["deep16.png"] = "56x56"
    Image.fromarray(textured(120, 90)).convert("CMYK").save(folder / "cmyk.jpg")
    exp["cmyk.jpg"] = "84x112"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(textured(90, 120)).save(folder / "rotated.jpg", exif=exif)
    exp["rotated.jpg"] = "84x112"  # rotated by EXIF: portrait
    pal = Image.fromarray(textured(60, 80)).convert("P")
    pal.save(folder / "palette.png", transparency=0)
    exp["palette.png"] = "84x56"
    Image.fromarray(np.dstack([textured(60, 60)[..., 0], np.full((60, 60), 128, np.uint8)]), mode="LA").save(
        folder / "gray_alpha.png"
    )
    exp["gray_alpha.png"] = "56x56"
    frames = [Image.fromarray(textured(70, 70, seed=i)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    exp["anim.gif"] = "56x56"  # 70 / 28 = 2.5 rounds to 2 (Python round)
    frames[0].save(folder / "pages.tiff", save_all=True, append_images=frames[1:2])
    exp["pages.tiff"] = "56x56"
    Image.fromarray(textured(100, 150)).save(folder / "pic.webp")
    exp["pic.webp"] = "140x112"
    Image.fromarray(textured(100, 150)).save(folder / "pic.bmp")
    exp["pic.bmp"] = "140x112"
    Image.fromarray(textured(10, 10)).save(folder / "ten.png")
    exp["ten.png"] = "56x56"
    Image.fromarray(textured(1, 150)).save(folder / "line.png")
    exp["line.png"] = "700x28"
    Image.fromarray(textured(70, 90)).save(folder / "with space ü 猫.png")
    exp["with space ü 猫.png"] = "84x56"
    Image.new("RGB", (200, 100), (30, 60, 90)).save(folder / "flat.png")
    exp["flat.png"] = "196x112"
    return exp


def _write_broken(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.png").write_bytes(b"")
    truncated_jpeg(folder / "cut.jpg")
    (folder / "text.jpg").write_text("definitely not a jpeg")
    png_bomb(folder / "bomb.png")
    Image.new("RGB", (900, 4)).save(folder / "strip.png")
    return {
        "zero.png": "empty file",
        "cut.jpg": "truncated",
        "text.jpg": "not a recognised image format",
        "bomb.png": "decompression bomb",
        "strip.png": "aspect ratio",
    }


@pytest.mark.slow
def test_mixed_folder_run(tmp_path):
    src = tmp_path / "in"
    ok = _write_awkward(src)
    bad = _write_broken(src)
    (src / "readme.txt").write_text("skipped quietly")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [str(src), str(tmp_path / "missing.png"), "-o", str(out), "-m", "v1", "-m", "v2", "-m", "budget", "-a", "0.3"],
    )
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    rows = json.loads((out / "summary.json").read_text())
    by_name = {}
    for row in rows:
        by_name.setdefault(Path(row["image"]).name, []).append(row)
    for name, size in ok.items():
        got = by_name[name]
        assert [g["status"] for g in got] == ["ok"] * 3, (name, got)
        assert f"{got[0]['resized_width']}x{got[0]['resized_height']}" == size, name
    for name, reason in bad.items():
        (row,) = by_name[name]
        assert row["status"] == "failed" and reason in row["error"], (name, row)
        assert sum(name in line for line in r.stderr.splitlines() if line.startswith("aptviz: error")) == 1
    assert by_name["missing.png"][0]["error"] == "file not found"
    assert "readme.txt" not in by_name
    anim = json.loads((out / "anim" / "stats.json").read_text())
    assert anim["image"]["frames"] == 3 and anim["image"]["first_frame_only"] is True
    assert json.loads((out / "pages" / "stats.json").read_text())["image"]["frames"] == 2
    assert (out / "with space ü 猫" / "stats.json").is_file()


def test_folder_without_images_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, [str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no images found in folder" in r.stderr
