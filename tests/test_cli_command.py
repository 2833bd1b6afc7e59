"""The command's entry point (aptviz.cli.command): hints for slips (a space instead of ``:`` after ``-m``, a
subcommand typo), subcommands loaded lazily, the command line without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aptviz.cli.command import main
from aptviz.errors import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]


def _main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


def test_a_number_after_method_is_taken_for_an_alpha(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _main([str(ROOT / "sample_images" / "chelsea.png"), "-m", "budget", "0.3", "-o", "out"], capsys)
    assert code == EXIT_USAGE
    assert "did you mean -m budget:0.3?" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_real_file_named_like_a_number_runs(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.open(ROOT / "sample_images" / "chelsea.png").save(tmp_path / "0.3", format="PNG")
    code, err = _main(["0.3", "-m", "budget", "0.3", "-q", "-o", "out"], capsys)
    assert "did you mean" not in err and code == 0
    assert len(list((tmp_path / "out").glob("*/stats.json"))) == 1


def test_a_subcommand_typo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    code, err = _main(["stat", "folder/"], capsys)
    assert code == EXIT_USAGE and "did you mean `aptviz stats`?" in err
    assert not (tmp_path / "visualizations").exists()


from aptviz.cli.command import SUBCOMMANDS  # noqa: E402

from conftest import SAMPLES  # noqa: E402


def test_subcommands_are_dispatched_lazily(tmp_path, monkeypatch, capsys):
    import pytest

    monkeypatch.setitem(SUBCOMMANDS, "again", "aptviz.cli:app")  # a real Typer app, under another name
    monkeypatch.setitem(SUBCOMMANDS, "missing", "aptviz.cli_not_written_yet:app")
    with pytest.raises(SystemExit) as done:
        main(["again", str(SAMPLES / "chelsea.png"), "-q", "-o", str(tmp_path / "again")])
    assert done.value.code == 0 and (tmp_path / "again" / "chelsea" / "stats.json").is_file()
    with pytest.raises(SystemExit) as broken:
        main(["missing", "x"])
    assert broken.value.code == 2 and "the 'missing' command is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as still:  # the main command is not affected
        main([str(SAMPLES / "chelsea.png"), "-q", "-o", str(tmp_path / "main")])
    assert still.value.code == 0


def test_without_torch_the_cli_works_and_tensor_api_names_the_extra(tmp_path):
    block = "import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
    code = block + (
        "from typer.testing import CliRunner\nfrom aptviz.cli import app\nimport aptviz, numpy as np\n"
        f"r = CliRunner().invoke(app, ['sample_images/chelsea.png', '-m', 'budget', '-a', '0.3', '-q',"
        f" '-o', {str(tmp_path / 'a')!r}, '--device', 'auto'])\n"
        "print(r.exit_code)\n"
        f"r = CliRunner().invoke(app, ['sample_images/chelsea.png', '--device', 'cuda', '-o', {str(tmp_path)!r}])\n"
        "print(r.exit_code, r.stderr.strip())\n"
        "try:\n    aptviz.entropy_maps(np.zeros((28, 28, 3), np.uint8))\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    lines = out.stdout.splitlines()
    assert lines[0] == "0", out.stderr
    assert lines[1] == "2 aptviz: error: --device cuda needs torch, which is not installed: pip install 'aptviz[torch]'"
    assert "aptviz.entropy_maps" in lines[2] and "pip install 'aptviz[torch]'" in lines[2]
