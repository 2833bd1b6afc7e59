"""Atomic writes and temporary-file cleanup (aptviz.output.atomic): a folder is never torn by a kill, a full
disk or a read-only file system; resume checks which input made a folder and cleans what a killed writer
left -- as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aptviz.output.atomic import clean_stale_temp_files, write_stream_atomic

from conftest import needs_proc


def _start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@needs_proc
def test_a_temp_file_whose_pid_was_reused_is_cleaned(tmp_path):
    """Issue 27: a temporary file named after a dead writer's pid, now the pid of another live process,
    was never cleaned. The name carries the writer's start time too: a live process that started at
    another time is not its writer."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _start(live.pid)
        reused = tmp_path / f".heat.png.{live.pid}-{start - 1}.abcd1234.tmp"  # an earlier process with this pid
        writing = tmp_path / f".heat.png.{live.pid}-{start}.efgh5678.tmp"  # the live process's own
        for path in (reused, writing):
            path.write_bytes(b"x")
        assert clean_stale_temp_files(tmp_path) == 1
        assert writing.exists() and not reused.exists()
    finally:
        live.kill()
        live.wait()
    assert clean_stale_temp_files(tmp_path) == 1 and not writing.exists()


@needs_proc
def test_temp_files_are_named_after_their_writer_and_its_start_time(tmp_path):
    seen = []
    write_stream_atomic(tmp_path / "x.bin", lambda fh: seen.extend(p.name for p in tmp_path.iterdir()))
    (name,) = seen
    assert name.startswith(f".x.bin.{os.getpid()}-{_start(os.getpid())}.") and name.endswith(".tmp")
    assert clean_stale_temp_files(tmp_path) == 0  # the finished file is no temporary


@needs_proc
def test_the_start_time_is_read_once_per_process_and_a_forked_child_reads_its_own(tmp_path, monkeypatch):
    """/proc is read for the writer's start time once per process (a batch writes a dozen files per image),
    and a worker forked after that names its files after its own pid and start time."""
    import multiprocessing

    from aptviz.output import atomic

    calls = []
    real = atomic._start_time
    monkeypatch.setattr(atomic, "_OWN_START", {})
    monkeypatch.setattr(atomic, "_start_time", lambda pid: calls.append(pid) or real(pid))
    for i in range(3):
        atomic.write_bytes_atomic(tmp_path / f"{i}.bin", b"x")
    assert calls == [os.getpid()]

    def child(queue):
        seen = []
        write_stream_atomic(tmp_path / "c.bin", lambda fh: seen.extend(p.name for p in tmp_path.glob(".c.bin.*")))
        queue.put((os.getpid(), _start(os.getpid()), seen[0]))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    pid, start, name = queue.get(timeout=30)
    proc.join(30)
    assert pid != os.getpid() and name.startswith(f".c.bin.{pid}-{start}.")


import errno  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402

from conftest import (  # noqa: E402
    DEADLINE,
    SAMPLES,
    _read,
    assert_no_torn_folder,
    children,
    command,
    gone_within,
    invoke,
    small_images,
    start,
    wait_for,
)
from conftest import summary_rows as rows_of  # noqa: E402


@pytest.mark.slow
def test_two_different_files_under_one_output_name(tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2").mkdir()
    shutil.copy(SAMPLES / "chelsea.png", tmp_path / "cam1" / "IMG_0001.png")
    shutil.copy(SAMPLES / "coffee.png", tmp_path / "cam2" / "IMG_0001.png")
    out = tmp_path / "out"
    first = invoke(tmp_path / "cam1" / "IMG_0001.png", "-o", out, "-m", "budget:0.3", "-q")
    assert first.exit_code == 0, first.stderr
    second = invoke(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert second.exit_code == 0, second.stderr
    assert "skipped" not in second.stdout
    stats = json.loads((out / "IMG_0001" / "stats.json").read_text())
    assert stats["image"]["resolved_path"] == str((tmp_path / "cam2" / "IMG_0001.png").resolve())
    assert stats["image"]["size_bytes"] == (SAMPLES / "coffee.png").stat().st_size
    assert stats["image"]["original_size"] == [600, 400]  # coffee, not chelsea (451x300)
    [row] = rows_of(out)
    assert row["image"].endswith("cam2/IMG_0001.png") and row["resized_width"] == 588
    # the same path, replaced in place by another photo: redone; unchanged: skipped
    shutil.copy(SAMPLES / "astronaut.png", tmp_path / "cam2" / "IMG_0001.png")
    third = invoke(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert "skipped" not in third.stdout
    assert json.loads((out / "IMG_0001" / "stats.json").read_text())["image"]["original_size"] == [512, 512]
    fourth = invoke(tmp_path / "cam2" / "IMG_0001.png", "-o", out, "-m", "budget:0.3")
    assert "skipped" in fourth.stdout


@needs_proc
@pytest.mark.timing
@pytest.mark.slow
def test_kill_9_during_a_run_with_other_parameters_then_resume(tmp_path):
    count = 12
    src = small_images(tmp_path / "in", count, size=(280, 336))
    out, clean = tmp_path / "out", tmp_path / "clean"
    original = ["-m", "v1", "-m", "budget:0.3", "-j", "2", "-q"]
    assert command(src, "-o", out, *original).returncode == 0  # in this process: only the killed run needs its own
    shutil.copytree(out, clean)  # a clean run's output, kept before the other run and the kill touch it
    proc = start(src, "-o", out, "--bins", "64", "-m", "v2:0.9", "-j", "2", "-q")
    # until the other run has rewritten a few folders
    wait_for(lambda: len([p for p in out.glob("*/stats.json") if '"bins": 64' in _read(p)]) >= 3)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(DEADLINE)
    assert gone_within(workers), "workers outlived the main process"
    assert_no_torn_folder(out)
    # resume with the original parameters: every folder ends as a clean run makes it
    r = command(src, "-o", out, *original)  # in this process (the killed run's lock died with it)
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
    assert len(rows_of(out)) == 2 * count and all(r["status"] == "ok" for r in rows_of(out))


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


@pytest.mark.slow
def test_full_disk_fails_in_one_line_and_never_leaves_a_mixed_folder(tmp_path, small_disk, monkeypatch):
    """A complete output, then a run with other parameters that fills the disk half-way."""
    src = small_images(tmp_path / "in", 3, size=(280, 336))
    original = ["-m", "v1", "-j", "1", "-q"]
    other = ["--bins", "64", "-m", "v1", "-m", "budget:0.3", "-j", "1"]
    out = (small_disk or tmp_path) / "out"
    assert invoke(src, "-o", out, *original).exit_code == 0
    if small_disk is not None:  # leave ~60 KB: the next run runs out of space inside an image folder
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        (small_disk / "filler").write_bytes(b"\0" * max(0, free - 60_000))
        r = invoke(src, "-o", out, *other)
        code, err = r.exit_code, r.stderr
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
    again = invoke(src, "-o", out, *original)  # resume: what the disk cut short is redone
    assert again.exit_code == 0, again.stderr
    for stats in out.glob("*/stats.json"):
        assert json.loads(stats.read_text())["params"]["bins"] == 512
    assert len(list(out.glob("*/stats.json"))) == 3


@pytest.fixture
def read_only_disk(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "20m"):
        pytest.skip("cannot mount a file system here")
    try:
        yield where
    finally:
        _umount(where)


@pytest.mark.slow
def test_read_only_file_system(tmp_path, read_only_disk):
    src = small_images(tmp_path / "in", 3)
    out = read_only_disk / "out"
    assert invoke(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-q").exit_code == 0
    drawn = read_only_disk / "drawn"  # non-default overlay options count as complete too
    assert invoke(src, "-o", drawn, "-m", "v1", "--line-width", "1", "--overlay-format", "png", "-q").exit_code == 0
    summary = (out / "summary.csv").read_bytes()
    assert subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)]).returncode == 0
    again = invoke(src, "-o", out, "-m", "v1", "-m", "budget:0.3")  # complete: nothing to write
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("skipped") == 3 and (out / "summary.csv").read_bytes() == summary
    redrawn = invoke(src, "-o", drawn, "-m", "v1", "--line-width", "1", "--overlay-format", "png")
    assert redrawn.exit_code == 0 and redrawn.stdout.count("skipped") == 3, redrawn.stderr
    other = invoke(src, "-o", out, "-m", "v2")  # work to do
    assert other.exit_code == 2 and "read-only file system" in other.stderr, other.stderr
    new = invoke(src, "-o", read_only_disk / "new")
    assert new.exit_code == 2 and "read-only file system" in new.stderr, new.stderr


def test_killed_workers_temp_file_is_cleaned_when_its_folder_is_complete(tmp_path):
    src = small_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert invoke(src, "-o", out, "--save-maps", "-q").exit_code == 0
    stale = out / "img00" / ".maps.npz.999999999.k1ll3d00.tmp"  # its writer (pid) is dead
    stale.write_bytes(b"partial")
    r = invoke(src, "-o", out, "--save-maps")
    assert r.exit_code == 0 and r.stdout.count("skipped") == 2
    assert not stale.exists()
