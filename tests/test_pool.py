"""The one worker pool (aptviz.runs.pool): recovery from dying workers, for batch, stats and calibrate alike."""

from __future__ import annotations

import os
import shutil

import pytest

from aptviz.compute.params import Params
from aptviz.runs import calibrate as run_calibrate
from aptviz.runs.pool import WORKER_DIED, WorkerPool

from conftest import SAMPLES

_REAL_MAPS_OF = run_calibrate._maps_of


def _square_or_die(item: int) -> int:
    """Module level (pickled by name): dies on 13, as a worker killed for memory would."""
    if item == 13:
        os._exit(9)
    return item * item


def _pair_or_die(item: tuple) -> list[int]:
    if 13 in item:
        os._exit(9)
    return [i * i for i in item]


@pytest.mark.timing
def test_only_the_item_that_kills_its_worker_fails():
    pool = WorkerPool(_square_or_die, workers=2, on_failure=lambda item, message: message)
    results = dict(pool.map(range(20)))
    assert results.pop(13) == WORKER_DIED
    assert results == {i: i * i for i in range(20) if i != 13}


@pytest.mark.timing
def test_a_dying_group_is_split_and_rerun_item_by_item():
    groups = [(0, 1), (12, 13), (14, 15), (2, 3)]
    pool = WorkerPool(
        _pair_or_die,
        workers=2,
        on_failure=lambda item, message: message,
        split=lambda group: [(i,) for i in group],
    )
    results = dict(pool.map(groups))
    assert results.pop((13,)) == WORKER_DIED
    assert results == {g: [i * i for i in g] for g in [(0, 1), (12,), (14, 15), (2, 3)]}


def test_one_worker_runs_in_this_process():
    pool = WorkerPool(_square_or_die, workers=1)
    assert list(pool.map([2, 3])) == [(2, 4), (3, 9)]


def _maps_or_die(job):
    if os.path.basename(job[0]).startswith("killer"):
        os._exit(9)
    return _REAL_MAPS_OF(job)


@pytest.mark.timing
def test_a_dying_calibrate_worker_fails_its_image_in_one_line(tmp_path, monkeypatch):
    """Calibrate's maps run on the same pool: a worker that dies fails its image, named, and the rest go on."""
    from typer.testing import CliRunner

    from aptviz.cli.calibrate import app as calibrate_app

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "killer.png", "b.png"):
        shutil.copy(SAMPLES / "chelsea.png", src / name)
    monkeypatch.setattr(run_calibrate, "_maps_of", _maps_or_die)
    ok, failed = run_calibrate.image_maps(sorted(map(str, src.iterdir())), Params(), workers=2)
    assert [os.path.basename(p) for p, _ in ok] == ["a.png", "b.png"]
    assert failed == [(str(src / "killer.png"), WORKER_DIED)]

    r = CliRunner().invoke(calibrate_app, [str(src), "-o", str(tmp_path / "out"), "-j", "2", "--device", "cpu"])
    assert r.exit_code == 1, r.output
    lines = [line for line in r.stderr.splitlines() if "killer.png" in line]
    assert lines == [f"aptviz: {src / 'killer.png'}: {WORKER_DIED}"] and "Traceback" not in r.stderr
    assert "calibration over 2 image(s)" in r.stdout


# -- SIGHUP (the terminal closed): a clean stop, as SIGTERM -------------------------------------------
def _hang_up_when_working(proc, out, pattern):
    """Once ``proc`` runs two workers and has written something matching ``pattern`` in ``out``, send
    SIGHUP to its whole process group (what a closed terminal does); its stderr and the workers."""
    import signal

    from conftest import gone_within, wait_for, workers_of

    assert wait_for(lambda: list(out.glob(pattern)) or proc.poll() is not None), "nothing written"
    workers = workers_of(proc)
    assert len(workers) >= 2, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert gone_within(workers), "orphaned workers"
    return err


HANG_UP_AFTER_TWO = """
import os, signal, sys
from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats

def stop(progress):
    if progress.done >= 2:
        os.killpg(0, signal.SIGHUP)  # the whole process group, workers included, as a closed terminal does

report = run_stats([sys.argv[1]], sys.argv[2], expand_runs(["budget"], [0.3]), Params(), workers=2,
                   engine="local", task_size=1, on_progress=stop)
print(report.images, report.rows, report.interrupted)
sys.exit(report.return_code)
"""


@pytest.mark.timing
def test_sighup_on_stats_keeps_the_finished_rows(tmp_path):
    """Issue 27: SIGHUP killed ``aptviz stats`` and its workers, every row lost (SIGINT and SIGTERM kept
    them). Now it stops cleanly: the rows finished are written, exit 128 + 1."""
    import subprocess
    import sys

    import pyarrow.dataset as pds

    from conftest import small_images

    src = small_images(tmp_path / "in", 12)
    out = tmp_path / "rows"
    r = subprocess.run([sys.executable, "-c", HANG_UP_AFTER_TWO, str(src), str(out)], capture_output=True, text=True,
                       timeout=240, start_new_session=True)  # fmt: skip
    assert r.returncode == 129, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    images, rows, interrupted = r.stdout.split()
    assert interrupted == "True" and 2 <= int(images) < 12 and int(rows) == int(images)
    assert pds.dataset(out, format="parquet").count_rows() == int(rows)


@pytest.mark.timing
def test_sighup_on_the_batch_writes_the_summary_and_the_report(tmp_path):
    """Issue 27: SIGHUP on ``aptviz`` killed it: a short summary. Now as SIGTERM: every finished folder
    has its rows, exit 128 + 1 (an interrupted run writes no report.html, as with Ctrl-C and SIGTERM)."""
    import json

    from conftest import small_images, start

    src = small_images(tmp_path / "in", 24, size=(448, 560))
    out = tmp_path / "out"
    proc = start(src, "-o", out, "-m", "v1", "-m", "budget:0.3", "-j", "2", "-q")
    err = _hang_up_when_working(proc, out, "*/stats.json")
    assert proc.returncode == 129, err
    assert "interrupted" in err and "Traceback" not in err
    rows = json.loads((out / "summary.json").read_text())
    assert rows and all(r["status"] == "ok" for r in rows)
    assert len(rows) == 2 * len(list(out.glob("*/stats.json")))


@pytest.mark.timing
def test_sighup_ignored_by_nohup_lets_the_run_finish(tmp_path):
    """``nohup aptviz stats ...`` starts it with SIGHUP ignored: a closed terminal must not stop it."""
    import signal
    import subprocess
    import sys

    import pyarrow.dataset as pds

    from conftest import small_images

    src = small_images(tmp_path / "in", 6)
    out = tmp_path / "rows"
    r = subprocess.run([sys.executable, "-c", HANG_UP_AFTER_TWO, str(src), str(out)], capture_output=True, text=True,
                       timeout=240, start_new_session=True,
                       preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # fmt: skip
    assert r.returncode == 0, r.stderr
    images, rows, interrupted = r.stdout.split()
    assert interrupted == "False" and int(images) == 6 == int(rows)
    assert pds.dataset(out, format="parquet").count_rows() == 6
