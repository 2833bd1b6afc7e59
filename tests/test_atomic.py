"""Atomic writes and temporary-file cleanup (aptviz.output.atomic)."""

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
