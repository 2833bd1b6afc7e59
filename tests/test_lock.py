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
