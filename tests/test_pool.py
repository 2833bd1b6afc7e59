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
