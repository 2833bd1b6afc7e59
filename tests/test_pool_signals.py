"""Signals and the death of the main process: workers never outlive it, finished rows are written (real processes)."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import (
    DEADLINE,
    assert_no_torn_folder,
    gone_within,
    needs_proc,
    small_images,
    start,
    wait_for,
    workers_of,
)
from conftest import summary_rows as rows_of


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
@pytest.mark.slow
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
@pytest.mark.slow
def test_kill_9_of_the_main_process_takes_the_workers_along(tmp_path):
    proc, workers, out = _start_with_workers(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=DEADLINE)  # returns only once nobody holds stdout/stderr open: workers gone
    assert gone_within(workers), "orphaned workers"


@needs_proc
@pytest.mark.timing
@pytest.mark.slow
def test_kill_9_of_aptviz_stats_takes_its_workers_along(tmp_path):
    pytest.importorskip("pyarrow")
    src = small_images(tmp_path / "in", 60, size=(448, 560))
    proc = start("stats", src, "-o", tmp_path / "rows", "-m", "budget:0.3", "-j", "2", "-q")
    workers = workers_of(proc)
    assert len(workers) >= 2, "no workers started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert gone_within(workers), "orphaned workers"
