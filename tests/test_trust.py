"""Trust (SPEC 9): special files, decode limits, memory estimates, resume identity,
concurrency, signals, odd names and failing writes -- as real processes where it matters."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from aptviz.errors import InputError
from aptviz.loading import decode_limit, open_image

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
    assert decode_limit(5000) == 5000
    assert open_image(path, decode_limit(5000)).image.size == (60, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
