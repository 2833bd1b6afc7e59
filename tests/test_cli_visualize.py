"""What the main command prints (aptviz.cli.visualize): the progress bar, per-image lines and tables, errors once."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, copies, invoke


def run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run ``python -m aptviz ARGS`` with stdout and stderr on a pseudo-terminal; return all it wrote."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aptviz", *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_is_cleared_before_each_image(tmp_path):
    src = copies(tmp_path / "in", 3)
    text = run_in_terminal([str(src), "-o", str(tmp_path / "out"), "-j", "2"], ROOT)
    plain = re.sub(r"\x1b\[[0-9;?]*[mlh]", "", text)  # colours and cursor visibility only
    assert "images" in plain and "━" in plain  # the bar was drawn
    titles = [m.start() for m in re.finditer(re.escape(str(src)) + r"/img\d\.png  451x300", plain)]
    assert len(titles) == 3
    for start in titles:  # each heading starts a fresh line: after a newline or a cleared line
        before = plain[:start]
        assert before.endswith(("\n", "\x1b[2K")), repr(before[-80:])


@pytest.mark.slow
def test_large_batches_print_one_line_per_image_and_verbose_shows_tables(tmp_path):
    src = copies(tmp_path / "in", 6)
    r = invoke(src, "-o", tmp_path / "out", "-m", "budget:0.3", "-j", "2")
    assert r.exit_code == 0
    lines = [line for line in r.stdout.splitlines() if "451x300 -> 448x308" in line]
    assert len(lines) == 6 and all("budget 0.3: 209 (0.2969)" in line for line in lines)
    assert "┏" not in r.stdout.split("Summary per method")[0]  # no per-image tables
    assert "Summary per method and alpha" in r.stdout
    few = invoke(SAMPLES / "chelsea.png", "-o", tmp_path / "few", "-m", "budget:0.3")
    assert "┏" in few.stdout  # a small batch keeps its table
    verbose = invoke(src, "-o", tmp_path / "out", "-m", "budget:0.3", "-v", "--overwrite", "-j", "1")
    assert verbose.stdout.count("retention against plain Qwen2-VL") == 6  # one table (and caption) per image


def test_no_outputs_line_when_everything_failed(tmp_path):
    r = invoke(tmp_path / "missing.png", tmp_path / "also-missing.jpg", "-o", tmp_path / "out")
    assert r.exit_code == 1 and "Outputs in" not in r.output
    ok = invoke(SAMPLES / "chelsea.png", tmp_path / "missing.png", "-o", tmp_path / "out")
    # a long path goes to the next line whole (the test's folder is longer under pytest-xdist)
    assert ok.exit_code == 1 and f"Outputs in {tmp_path / 'out'}/" in " ".join(ok.stdout.split())


def test_each_error_is_printed_once(tmp_path):
    src = copies(tmp_path / "in", 2)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(src), "-o", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert (r.stdout + r.stderr).count("bad.png") == 1
    assert "1 of 3 input(s) failed" in r.stderr


def test_alphas_are_printed_as_given(tmp_path):
    r = invoke(SAMPLES / "chelsea.png", "-m", "v2", "-a", "1.0", "-a", "0.85", "-o", tmp_path)
    assert r.exit_code == 0
    rows = [line for line in r.stdout.splitlines() if line.startswith("│ v2")]
    assert [line.split("│")[2].strip() for line in rows] == ["1.0", "0.85"]
    bad = invoke(SAMPLES / "chelsea.png", "-m", "budget", "-a", "1.0000001", "-o", tmp_path)
    assert bad.exit_code == 2 and "got 1.0000001" in bad.output
