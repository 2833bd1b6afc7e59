"""Trust (docs/pipeline.md, trust): special files, decode limits, memory estimates, resume identity,
concurrency, signals, odd names and failing writes -- as real processes where it matters."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from aptviz.compute import loading
from aptviz.compute.loading import open_image
from aptviz.errors import InputError

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
@pytest.mark.timing
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


# -- helpers for real processes (the shared ones are in conftest) ---------------------------------------
import errno  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

from conftest import (  # noqa: E402
    DEADLINE,
    PYTHON,
    ROOT,
    SAMPLES,
    aptviz,
    children,
    gone_within,
    needs_proc,
    small_images,
    start,
    wait_for,
    workers_of,
)
from conftest import summary_rows as rows_of  # noqa: E402


def _read(path: Path) -> str:
    """A file's text, or "" when a running writer has just removed it."""
    try:
        return path.read_text()
    except OSError:
        return ""


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
@pytest.mark.timing
def test_kill_9_during_a_run_with_other_parameters_then_resume(tmp_path):
    src = small_images(tmp_path / "in", 16, size=(280, 336))
    out, clean = tmp_path / "out", tmp_path / "clean"
    original = ["-m", "v1", "-m", "budget:0.3", "-j", "2", "-q"]
    assert aptviz(src, "-o", out, *original).returncode == 0
    assert aptviz(src, "-o", clean, *original).returncode == 0
    proc = start(src, "-o", out, "--bins", "64", "-m", "v2:0.9", "-j", "2", "-q")
    # until the other run has rewritten a few folders
    wait_for(lambda: len([p for p in out.glob("*/stats.json") if '"bins": 64' in _read(p)]) >= 3)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(DEADLINE)
    assert gone_within(workers), "workers outlived the main process"
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
    assert len(rows_of(out)) == 32 and all(r["status"] == "ok" for r in rows_of(out))


# -- 3. a full disk ---------------------------------------------------------------------------------
def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system (tmpfs) for the output, or None where mounting is not allowed."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "4m"):
        yield None
        return
    try:
        yield where
    finally:
        _umount(where)


def test_full_disk_fails_in_one_line_and_never_leaves_a_mixed_folder(tmp_path, small_disk, monkeypatch):
    """A complete output, then a run with other parameters that fills the disk half-way."""
    src = small_images(tmp_path / "in", 3, size=(280, 336))
    original = ["-m", "v1", "-j", "1", "-q"]
    other = ["--bins", "64", "-m", "v1", "-m", "budget:0.3", "-j", "1"]
    out = (small_disk or tmp_path) / "out"
    assert aptviz(src, "-o", out, *original).returncode == 0
    if small_disk is not None:  # leave ~60 KB: the next run runs out of space inside an image folder
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        (small_disk / "filler").write_bytes(b"\0" * max(0, free - 60_000))
        r = aptviz(src, "-o", out, *other)
        code, err = r.returncode, r.stderr
    else:  # no tmpfs here: inject ENOSPC into the renames after the first few
        from typer.testing import CliRunner

        import aptviz.output.atomic as output_module
        from aptviz.cli.command import app

        real, calls = output_module.os.replace, []

        def replace(a, b):
            calls.append(b)
            if len(calls) > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(a, b)

        monkeypatch.setattr(output_module.os, "replace", replace)
        r = CliRunner().invoke(app, [str(src), "-o", str(out), *other])
        monkeypatch.undo()
        code, err = r.exit_code, r.stderr
    assert code == 1, err
    assert "Traceback" not in err and "No space left on device" in err
    for line in err.splitlines():  # one line per problem
        assert line.startswith(("aptviz: error:", " ", "WARNING")) or "input(s) failed" in line, line
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert_no_torn_folder(out)
    if (out / "summary.json").exists():
        rows_of(out)  # whole, valid JSON
    if small_disk is not None:
        (small_disk / "filler").unlink()
    again = aptviz(src, "-o", out, *original)  # resume: what the disk cut short is redone
    assert again.returncode == 0, again.stderr
    for stats in out.glob("*/stats.json"):
        assert json.loads(stats.read_text())["params"]["bins"] == 512
    assert len(list(out.glob("*/stats.json"))) == 3


# -- 4. file names that are not UTF-8 -----------------------------------------------------------------
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


# -- 5. two runs on one output folder at once ---------------------------------------------------------
@pytest.mark.timing
def test_two_concurrent_runs_over_48_images(tmp_path):
    src = small_images(tmp_path / "in", 48, size=(56, 84))
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        a = start(src, "-o", out, "-m", "budget:0.3", "-j", "2", "-q")
        b = start(src, "-o", out, "-m", "budget:0.3", "-j", "2", "-q")
        results = [(p.wait(DEADLINE), p.communicate()[1]) for p in (a, b)]
        for code, err in results:
            assert code in (0, 2), err
            if code == 2:
                assert "output folder is in use" in err, err
            assert "Traceback" not in err and "cannot write" not in err, err
        if any(code == 2 for code, _ in results):
            assert aptviz(src, "-o", out, "-m", "budget:0.3", "-q").returncode == 0
        rows = rows_of(out)
        assert len(rows) == 48 and all(row["status"] == "ok" for row in rows), rows
        assert len(list(out.glob("*/stats.json"))) == 48
        assert not list(out.rglob("*.tmp"))
        assert_no_torn_folder(out)


def test_second_run_refuses_at_once_while_the_first_holds_the_folder(tmp_path):
    src = small_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    from aptviz.output.lock import OutputLock

    with OutputLock(out):
        r = aptviz(src, "-o", out, "-q")  # at once: it never waits for the lock
    assert r.returncode == 2 and "output folder is in use" in r.stderr, r.stderr
    assert not list(out.glob("*/stats.json"))


@pytest.mark.timing
def test_a_run_never_deletes_another_runs_live_temp_files(tmp_path):
    from aptviz.output.atomic import clean_stale_temp_files

    folder = tmp_path / "img"
    folder.mkdir()
    live = subprocess.Popen([*PYTHON, "-c", "import time; time.sleep(30)"])
    try:
        mine = folder / f".heat.png.{live.pid}.abcd1234.tmp"
        dead = folder / ".heat.png.999999999.abcd1234.tmp"
        mine.write_bytes(b"x")
        dead.write_bytes(b"x")
        assert clean_stale_temp_files(folder) == 1
        assert mine.exists() and not dead.exists()
    finally:
        live.kill()
        live.wait()


# -- 6. signals and the death of the main process -----------------------------------------------------
def _start_with_workers(tmp_path, count=24):
    src = small_images(tmp_path / "in", count, size=(448, 560))
    out = tmp_path / "out"
    proc = start(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-j", "2", "-q")
    assert wait_for(lambda: list(out.glob("*/stats.json")) or proc.poll() is not None), "nothing written"
    workers = workers_of(proc)
    assert len(workers) >= 2, "no workers started"
    return proc, workers, out


@needs_proc
@pytest.mark.timing
def test_sigterm_with_workers_running_stops_cleanly(tmp_path):
    proc, workers, out = _start_with_workers(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)  # to the main process only, as `kill PID` does
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err  # 128 + SIGTERM; Ctrl-C gives 130
    assert "interrupted" in err and "Traceback" not in err
    assert gone_within(workers), "orphaned workers"
    rows = rows_of(out)  # written on the way out
    assert rows and all(r["status"] == "ok" for r in rows)
    assert len(rows) == 2 * len(list(out.glob("*/stats.json")))
    assert_no_torn_folder(out)


@needs_proc
@pytest.mark.timing
def test_kill_9_of_the_main_process_takes_the_workers_along(tmp_path):
    proc, workers, out = _start_with_workers(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=DEADLINE)  # returns only once nobody holds stdout/stderr open: workers gone
    assert gone_within(workers), "orphaned workers"


@needs_proc
@pytest.mark.timing
def test_kill_9_of_aptviz_stats_takes_its_workers_along(tmp_path):
    pytest.importorskip("pyarrow")
    src = small_images(tmp_path / "in", 60, size=(448, 560))
    proc = start("stats", src, "-o", tmp_path / "rows", "-m", "budget:0.3", "-j", "2", "-q")
    workers = workers_of(proc)
    assert len(workers) >= 2, "no workers started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert gone_within(workers), "orphaned workers"


# -- 7-9. options and messages ------------------------------------------------------------------------
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


@pytest.mark.parametrize(
    "args",
    [
        ["--min-pixels", "400000000", "--max-pixels", "400000000"],
        ["--min-pixels", "10000000000", "--max-pixels", "10000000000"],
        ["--max-pixels", "200000000", "--workers", "8"],
    ],
)
def test_memory_heavy_options_are_refused_naming_the_estimate(tmp_path, args):
    r = aptviz(SAMPLES / "chelsea.png", "-o", tmp_path / "out", "--max-memory", "3G", *args)
    assert r.returncode == 2, r.stderr
    assert "need more memory than --max-memory 3.00 GB" in r.stderr and "estimated peak" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "chelsea").exists()


def test_memory_heavy_options_that_fit_stay_under_3gb(tmp_path):
    """Small patches with many bins on a 12 MP photo: allowed within 3 GB, and measured below it."""
    photo = tmp_path / "photo.jpg"
    big = Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((4000, 3000))
    big.save(photo, quality=85)
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    sets = (["--patch-size", "1"], ["--patch-size", "2", "--bins", "4096", "--num-scales", "9"])
    for extra in sets:
        cmd = [*PYTHON, "-m", "aptviz", str(photo), "-o", str(tmp_path / "out"), "-j", "1", "--max-memory", "3G"]
        out = subprocess.run([*PYTHON, "-c", code, *cmd, *extra], capture_output=True, text=True, cwd=ROOT)
        rc, kib = out.stdout.split()
        assert rc == "0"
        assert int(kib) * 1024 < 3 << 30


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


@pytest.fixture
def read_only_disk(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "20m"):
        pytest.skip("cannot mount a file system here")
    try:
        yield where
    finally:
        _umount(where)


def test_read_only_file_system(tmp_path, read_only_disk):
    src = small_images(tmp_path / "in", 3)
    out = read_only_disk / "out"
    assert aptviz(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-q").returncode == 0
    drawn = read_only_disk / "drawn"  # non-default overlay options count as complete too
    assert aptviz(src, "-o", drawn, "-m", "v1", "--line-width", "1", "--overlay-format", "png", "-q").returncode == 0
    summary = (out / "summary.csv").read_bytes()
    assert subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)]).returncode == 0
    again = aptviz(src, "-o", out, "-m", "v1", "-m", "budget:0.3")  # complete: nothing to write
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped") == 3 and (out / "summary.csv").read_bytes() == summary
    redrawn = aptviz(src, "-o", drawn, "-m", "v1", "--line-width", "1", "--overlay-format", "png")
    assert redrawn.returncode == 0 and redrawn.stdout.count("skipped") == 3, redrawn.stderr
    other = aptviz(src, "-o", out, "-m", "v2")  # work to do
    assert other.returncode == 2 and "read-only file system" in other.stderr, other.stderr
    new = aptviz(src, "-o", read_only_disk / "new")
    assert new.returncode == 2 and "read-only file system" in new.stderr, new.stderr


def test_killed_workers_temp_file_is_cleaned_when_its_folder_is_complete(tmp_path):
    src = small_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert aptviz(src, "-o", out, "--save-maps", "-q").returncode == 0
    stale = out / "img00" / ".maps.npz.999999999.k1ll3d00.tmp"  # its writer (pid) is dead
    stale.write_bytes(b"partial")
    r = aptviz(src, "-o", out, "--save-maps")
    assert r.returncode == 0 and r.stdout.count("skipped") == 2
    assert not stale.exists()


# -- 10. summaries describe every image folder ----------------------------------------------------------
def test_summary_accumulates_over_runs(tmp_path):
    a = small_images(tmp_path / "a", 2, seed=0)
    b = small_images(tmp_path / "b", 2, seed=5)
    out = tmp_path / "out"
    assert aptviz(a / "img00.png", a / "img01.png", "-o", out, "-m", "budget:0.3", "-q").returncode == 0
    shutil.copy(b / "img00.png", tmp_path / "other.png")
    assert aptviz(tmp_path / "other.png", "-o", out, "-m", "budget:0.3", "-q").returncode == 0
    rows = rows_of(out)
    assert sorted(Path(r["output"]).name for r in rows) == ["img00", "img01", "other"]
    # redoing one replaces its row, keeps the others
    assert aptviz(a / "img01.png", "-o", out, "-m", "budget:0.5", "-q").returncode == 0
    rows = {Path(r["output"]).name: r for r in rows_of(out)}
    assert sorted(rows) == ["img00", "img01", "other"]
    assert rows["img01"]["alpha"] == 0.5 and rows["img00"]["alpha"] == 0.3
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 4
