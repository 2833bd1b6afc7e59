"""aptviz stats' run (aptviz.datasets.engines) when its output cannot be written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from conftest import SAMPLES, command


def _no_space(path, fill):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_stats_on_a_full_disk_says_one_line(tmp_path, monkeypatch, capsys):
    """Issue 27: ``aptviz stats`` on a full disk ended in a traceback; now one line naming OUT, exit 1."""
    from aptviz.cli.command import main
    from aptviz.datasets import parquet

    monkeypatch.setattr(parquet, "write_stream_atomic", _no_space)
    with pytest.raises(SystemExit) as info:
        main(["stats", str(SAMPLES), "-o", str(tmp_path / "o"), "-m", "budget:0.3", "-j", "1", "-q"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"aptviz: error: cannot write the rows in {tmp_path / 'o'}: No space left on device\n"


def test_a_part_that_cannot_be_written_mid_run_stops_the_run(tmp_path, monkeypatch):
    """The first part fails: the run stops there (OutputError), nothing more is computed."""
    from aptviz.compute.params import Params, expand_runs
    from aptviz.datasets import engines, parquet
    from aptviz.errors import OutputError

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(SAMPLES / "chelsea.png", src / f"{i}.png")
    monkeypatch.setattr(parquet, "write_stream_atomic", _no_space)
    seen = []
    with pytest.raises(OutputError, match="No space left on device"):
        engines.run_stats([src], tmp_path / "o", expand_runs(["budget:0.3"]), Params(), workers=1, task_size=1,
                          rows_per_part=1, on_progress=lambda p: seen.append(p.done))  # fmt: skip
    assert seen == []  # stopped at the first part, before the second task


def _tmpfs(path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0  # fmt: skip


def test_stats_on_a_real_full_file_system(tmp_path):
    """The same on a real full file system (a 64 KB tmpfs, where the test may mount one)."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "o").mkdir()
        with open(disk / "fill", "wb") as f:  # leave a little room: the lock is taken, the part does not fit
            f.write(b"\0" * (60 << 10))
        r = command("stats", SAMPLES, "-o", disk / "o", "-m", "budget:0.3", "-j", "1", "-q")  # in this process
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr == f"aptviz: error: cannot write the rows in {disk / 'o'}: No space left on device\n"
        assert not [p for p in (disk / "o").iterdir() if p.name != ".aptviz.lock"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
