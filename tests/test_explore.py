"""``aptviz explore -o FILE``: the page never replaces an input, a special file, or a running batch's files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from conftest import PYTHON, ROOT, SAMPLES


def _explore(*args):
    """``aptviz explore ARGS`` in this process: ``exit_code``, ``stdout``, ``stderr``."""
    from typer.testing import CliRunner

    from aptviz.cli.explore import app

    return CliRunner().invoke(app, [str(a) for a in (*args, "--bins", "64")])


def test_output_that_is_an_input_is_refused_and_the_image_kept(tmp_path):
    image = tmp_path / "v.png"
    shutil.copy(SAMPLES / "chelsea.png", image)
    before = image.read_bytes()
    for out in (image, tmp_path / "." / "v.png"):
        r = _explore(image, "-o", out)
        assert r.exit_code == 2, r.output
        assert r.stderr.count("\n") == 1 and "is also an input" in r.stderr, r.stderr
        assert image.read_bytes() == before


def test_output_that_is_an_image_of_an_input_folder_or_a_link_to_it_is_refused(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(SAMPLES / "coffee.png", folder / "a.png")
    before = (folder / "a.png").read_bytes()
    os.link(folder / "a.png", tmp_path / "hard.png")
    (tmp_path / "soft.html").symlink_to(folder / "a.png")
    for out in (folder / "a.png", tmp_path / "hard.png", tmp_path / "soft.html"):
        r = _explore(folder, "-o", out)
        assert r.exit_code == 2 and "is also an input" in r.stderr, (out, r.output)
    assert (folder / "a.png").read_bytes() == before and (tmp_path / "soft.html").is_symlink()


def test_output_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    null = tmp_path / "null.html"
    null.symlink_to(os.devnull)  # the device behind a link: never replaced (as root, a rename would)
    folder = tmp_path / "dir.html"
    folder.mkdir()
    for out in (fifo, null, folder):
        r = _explore(SAMPLES / "chelsea.png", "-o", out)
        assert r.exit_code == 2, (out, r.output)
        assert r.stderr.count("\n") == 1 and "not a regular file" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and null.is_symlink() and folder.is_dir()
    assert not list(tmp_path.glob(".*tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == [
        "dir.html", "null.html", "pipe"]


def test_a_running_batch_s_output_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the batch's report")
    holder = subprocess.Popen(  # a batch on `out`: it holds the folder's lock
        [*PYTHON, "-c", "import sys; from aptviz.output.lock import lock_output; lock_output(sys.argv[1]); "
         "print('locked', flush=True); sys.stdin.read()", str(out)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = _explore(SAMPLES / "chelsea.png", "-o", out / "report.html")
        assert r.exit_code == 2, r.output
        assert "output folder is in use" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert (out / "report.html").read_text() == "the batch's report"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    r = _explore(SAMPLES / "chelsea.png", "-o", out / "report.html", "-q")  # the batch is over: written
    assert r.exit_code == 0, r.output
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_an_ordinary_folder_gets_no_lock_file(tmp_path):
    r = _explore(SAMPLES / "chelsea.png", "-o", tmp_path / "page.html", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_explorer_save_refuses_a_special_file(tmp_path):
    from aptviz.errors import ParameterError
    from aptviz.runs.explore import Explorer

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ParameterError, match="not a regular file"):
        Explorer([]).save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


from aptviz.cli.command import main  # noqa: E402


def test_explore_reports_a_bad_file_as_an_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    try:
        main(["explore", str(SAMPLES / "chelsea.png"), str(bad), "-o", str(tmp_path / "explore.html"), "--bins", "64"])
    except SystemExit as exc:
        assert exc.code == 1  # one input failed, as in the other commands
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "bad.png" in line]
    assert len(lines) == 1 and lines[0].startswith(f"aptviz: error: {bad}: "), err
    assert (tmp_path / "explore.html").is_file()
