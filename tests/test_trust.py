"""Trust (SPEC 9): special files, decode limits, memory estimates, resume identity,
concurrency, signals, odd names and failing writes -- as real processes where it matters."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from aptviz import loading
from aptviz.errors import InputError
from aptviz.loading import open_image

from conftest import textured


# -- special files ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda tmp: Path("/dev/zero"), r"not a regular file \(a character device\)"),
        (lambda tmp: (os.mkfifo(tmp / "pipe.png"), tmp / "pipe.png")[1], r"not a regular file \(a named pipe\)"),
        (lambda tmp: Path("/proc/self/status"), r"not a regular file \(reports 0 bytes but has content"),
        (lambda tmp: (tmp / "dir.png").mkdir() or tmp / "dir.png", r"not a regular file \(a folder\)"),
        (lambda tmp: (tmp / "empty.png").write_bytes(b"") or tmp / "empty.png", r"empty file \(0 bytes\)"),
    ],
    ids=["dev-zero", "fifo", "proc", "folder", "empty"],
)
def test_special_files_are_not_regular_files(tmp_path, make, reason):
    path = make(tmp_path)
    if not path.exists():
        pytest.skip(f"{path} does not exist here")
    outcome: list = []

    def load():  # a FIFO without a writer must not block the open
        try:
            open_image(path)
        except InputError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "opening blocked"
    assert len(outcome) == 1
    import re

    assert re.match(reason, outcome[0]), outcome[0]


def test_decode_limit_rises_with_max_pixels(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(textured(60, 60)).save(path)  # 3600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000
    with pytest.raises(InputError, match=r"decompression bomb \(3,600 pixels, limit 2,000"):
        open_image(path)
    assert loading.decode_limit(5000) == 5000
    assert open_image(path, loading.decode_limit(5000)).image.size == (60, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


# -- helpers for real processes ---------------------------------------------------------------------
import errno  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]  # -S: as this interpreter was started


def aptviz(*args, **kw) -> subprocess.CompletedProcess:
    """The real command in a fresh process."""
    return subprocess.run([*PYTHON, "-m", "aptviz", *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [*PYTHON, "-m", "aptviz", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def small_images(folder: Path, count: int, size=(112, 140), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(textured(*size, seed=seed + i)).save(folder / f"img{i:02d}.png")
    return folder


def rows_of(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_no_torn_folder(out: Path) -> None:
    """Every folder with a stats.json holds exactly what it lists, nothing written after it."""
    for stats_path in out.rglob("stats.json"):
        folder = stats_path.parent
        stats = json.loads(stats_path.read_text())
        written = stats_path.stat().st_mtime_ns
        files = stats["files"]
        listed = list(files["heatmaps"].values()) + [files["original"], files["resized"]]
        listed += [s["files"]["overlay"] for s in stats["selections"]]
        for rel in listed:
            assert (folder / rel).stat().st_mtime_ns <= written, f"{folder / rel} is newer than its stats.json"
        overlays = {Path(s["files"]["overlay"]).name for s in stats["selections"]}
        assert {p.name for p in (folder / "02_patches_grid").iterdir()} == overlays


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


# -- 1. resume checks which input made a folder ------------------------------------------------------
def test_two_different_files_under_one_output_name(tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2").mkdir()
    shutil.copy(SAMPLES / "chelsea.png", tmp_path / "cam1" / "IMG_0001.png")
    shutil.copy(SAMPLES / "coffee.png", tmp_path / "cam2" / "IMG_0001.png")
    out = tmp_path / "out"
    first = aptviz(tmp_path / "cam1" / "IMG_0001.png", "-o", out, "-m", "budget:0.3", "-q")
    assert first.returncode == 0, first.stderr
    second = aptviz(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert second.returncode == 0, second.stderr
    assert "skipped" not in second.stdout
    stats = json.loads((out / "IMG_0001" / "stats.json").read_text())
    assert stats["image"]["resolved_path"] == str((tmp_path / "cam2" / "IMG_0001.png").resolve())
    assert stats["image"]["size_bytes"] == (SAMPLES / "coffee.png").stat().st_size
    assert stats["image"]["original_size"] == [600, 400]  # coffee, not chelsea (451x300)
    [row] = rows_of(out)
    assert row["image"].endswith("cam2/IMG_0001.png") and row["resized_width"] == 588
    # the same path, replaced in place by another photo: redone; unchanged: skipped
    shutil.copy(SAMPLES / "astronaut.png", tmp_path / "cam2" / "IMG_0001.png")
    third = aptviz(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert "skipped" not in third.stdout
    assert json.loads((out / "IMG_0001" / "stats.json").read_text())["image"]["original_size"] == [512, 512]
    fourth = aptviz(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert "skipped" in fourth.stdout


# -- 2. kill -9 during a run with other parameters, then resume ---------------------------------------
@needs_proc
def test_kill_9_during_a_run_with_other_parameters_then_resume(tmp_path):
    src = small_images(tmp_path / "in", 24, size=(280, 336))
    out, clean = tmp_path / "out", tmp_path / "clean"
    original = ["-m", "v1", "-m", "budget:0.3", "-j", "2", "-q"]
    assert aptviz(src, "-o", out, *original).returncode == 0
    assert aptviz(src, "-o", clean, *original).returncode == 0
    proc = start(src, "-o", out, "--bins", "64", "-m", "v2:0.9", "-j", "2", "-q")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the other run has rewritten a few folders
        redone = [p for p in out.glob("*/stats.json") if '"bins": 64' in p.read_text()]
        if len(redone) >= 3:
            break
        time.sleep(0.02)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.5)
    assert not [w for w in workers if alive(w)], "workers outlived the main process"
    assert_no_torn_folder(out)
    # resume with the original parameters: every folder ends as a clean run makes it
    r = aptviz(src, "-o", out, *original)
    assert r.returncode == 0, r.stderr
    for folder in sorted(clean.iterdir()):
        if folder.is_dir():
            for f in folder.rglob("*"):
                if f.is_file() and f.name != "stats.json":
                    assert f.read_bytes() == (out / f.relative_to(clean)).read_bytes(), f.relative_to(clean)
            a = json.loads((folder / "stats.json").read_text())
            b = json.loads((out / folder.name / "stats.json").read_text())
            assert a["selections"] == b["selections"] and a["params"] == b["params"]
    assert not list(out.rglob("*.tmp"))
    assert len(rows_of(out)) == 48 and all(r["status"] == "ok" for r in rows_of(out))
