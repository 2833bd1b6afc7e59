"""The output folder's lock (aptviz/output/lock.py): a planted lock file never harms what it points at."""

from __future__ import annotations

import pytest

from aptviz.errors import ParameterError
from aptviz.output.lock import OutputLock, lock_output


def test_a_link_planted_as_the_lock_file_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / OutputLock.NAME).symlink_to(victim)
    with pytest.raises(ParameterError, match="cannot lock the output folder"):
        lock_output(out).release()
    assert victim.read_text() == "keep me\n"


def test_the_lock_is_taken_and_released(tmp_path):
    lock = lock_output(tmp_path)
    assert (tmp_path / OutputLock.NAME).read_text().strip().isdigit()
    lock.release()
    lock_output(tmp_path).release()


import subprocess  # noqa: E402

from conftest import DEADLINE, PYTHON, aptviz, assert_no_torn_folder, command, small_images, start  # noqa: E402
from conftest import summary_rows as rows_of  # noqa: E402


@pytest.mark.timing
@pytest.mark.slow
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
        if any(code == 2 for code, _ in results):  # the refused run, again once the other is done (in this process)
            assert command(src, "-o", out, "-m", "budget:0.3", "-q").returncode == 0
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
