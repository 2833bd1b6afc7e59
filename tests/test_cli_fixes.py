"""The command-line fixes found by trying the tool as a new user would: one test each."""

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from aptviz.cli.command import SUBCOMMANDS, main

from conftest import ROOT, SAMPLES, copies, invoke

README = (ROOT / "README.md").read_text(encoding="utf-8")


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


def test_readme_is_user_documentation():
    lines = README.splitlines()
    assert len(lines) <= 300
    assert "open `visualizations/report.html`" in "\n".join(lines[:60])
    # no before/now table: history is in CHANGELOG.md
    assert not re.search(r"\|\s*before\b|\bused to\b|\bnow\s*\|", README, re.I)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert all(f"## Milestone {n}" in changelog for n in (1, 2, 3))
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|jpg|png))\)", README):
        assert (ROOT / link).is_file(), link


def test_readme_quick_start_says_how_to_reach_aptviz():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    assert first_block.split("\n")[:2] == ["./run_visualize.sh", "./run_tests.sh"]
    quick = README.split("## Quick start")[1].split("\n## ")[0]
    assert ".venv/bin/aptviz" in quick and "source .venv/bin/activate" in quick


def test_default_demo_shows_all_three_methods(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "run_visualize.sh")], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "visualizations" / "chelsea" / "stats.json").read_text())
    assert [s["method"] for s in stats["selections"]] == ["v1", "v2", "budget"]
    assert stats["selections"][2]["alpha"] == 0.3
    assert (tmp_path / "visualizations" / "retention_vs_alpha.png").is_file()


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
    assert ok.exit_code == 1 and f"Outputs in {tmp_path / 'out'}/" in ok.stdout


def test_each_error_is_printed_once(tmp_path):
    src = copies(tmp_path / "in", 2)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(src), "-o", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert (r.stdout + r.stderr).count("bad.png") == 1
    assert "1 of 3 input(s) failed" in r.stderr


def test_method_names_any_case_and_a_suggestion(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(SAMPLES / "chelsea.png"), "-m", "budgte", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr == "aptviz: error: unknown method 'budgte' (did you mean 'budget'?); choose v1, v2 or budget\n"
    ok = invoke(SAMPLES / "chelsea.png", "-m", "BUDGET", "-a", "0.3", "-m", "V1", "-o", tmp_path, "--json")
    assert ok.exit_code == 0
    assert [s["method"] for s in json.loads(ok.stdout)["selections"]] == ["budget", "v1"]


def test_alphas_are_printed_as_given(tmp_path):
    r = invoke(SAMPLES / "chelsea.png", "-m", "v2", "-a", "1.0", "-a", "0.85", "-o", tmp_path)
    assert r.exit_code == 0
    rows = [line for line in r.stdout.splitlines() if line.startswith("│ v2")]
    assert [line.split("│")[2].strip() for line in rows] == ["1.0", "0.85"]
    bad = invoke(SAMPLES / "chelsea.png", "-m", "budget", "-a", "1.0000001", "-o", tmp_path)
    assert bad.exit_code == 2 and "got 1.0000001" in bad.output


def test_readme_api_snippet_gives_the_command_line_numbers(tmp_path, monkeypatch):
    snippet = re.search(r"## Python API\n\n```python\n(.*?)```", README, re.S).group(1)
    shutil.copy(SAMPLES / "chelsea.png", tmp_path / "photo.jpg")  # the snippet's file name (PNG data)
    copies(tmp_path / "photos", 2)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    r = invoke(tmp_path / "photo.jpg", "-m", "budget", "-a", "0.3", "--json", "-o", tmp_path / "cli")
    cli = json.loads(r.stdout)["selections"][0]
    assert scope["sel"].tokens == cli["tokens"] == 209
    assert scope["sel"].budget_info.k == cli["budget_info"]["k"]
    assert scope["stats"]["selections"][1]["tokens"] == 209
    assert scope["report"].return_code == 0 and len(scope["report"].images) == 2


def test_maps_npz_pad_cells_hold_1e6_as_documented(tmp_path):
    assert "PAD cells hold 1e6" in (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
    assert invoke(SAMPLES / "chelsea.png", "--save-maps", "-q", "-o", tmp_path).exit_code == 0
    npz = np.load(tmp_path / "chelsea" / "maps.npz")
    ent = npz["entropy_56"]  # 308 rows / 56 px = 5.5: the last row overhangs
    assert (ent[-1] == 1e6).all() and (ent[:-1] < 1e6).all()
    stats = json.loads((tmp_path / "chelsea" / "stats.json").read_text())
    assert stats["entropy"]["56"]["pad_cells"] == int((ent == 1e6).sum())


def test_retention_plot_counts_legend_and_bars(tmp_path):
    from aptviz.runs.summary import retention_figure

    src = copies(tmp_path / "in", 3, "coffee.png")
    shutil.copy(SAMPLES / "chelsea.png", src / "other.png")
    assert invoke(src, "-o", tmp_path / "out", "-m", "v1", "-m", "v2:0.8,1.2", "-q").exit_code == 0
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    fig = retention_figure(rows)
    ax1, ax2 = fig.axes[:2]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax2.get_yticks())
    legend = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert {"v1 ViT (min-max)", "v1 LLM (mean)", "v2 ViT (mean)", "v2 LLM (mean)"} <= set(legend)
    # three groups (v1, v2 0.8, v2 1.2): their bars never overlap, so none hides another
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax2.patches if p.get_height() > 0]
    spans.sort()
    assert len(spans) >= 3 and all(a_end <= b_start + 1e-12 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


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
