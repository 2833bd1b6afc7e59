"""The documentation holds: README as user documentation, its quick start and API snippet, the demo script,
documented file contents."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SAMPLES, copies, invoke


README = (ROOT / "README.md").read_text(encoding="utf-8")


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


@pytest.mark.slow
def test_default_demo_shows_all_three_methods(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "run_visualize.sh")], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "visualizations" / "chelsea" / "stats.json").read_text())
    assert [s["method"] for s in stats["selections"]] == ["v1", "v2", "budget"]
    assert stats["selections"][2]["alpha"] == 0.3
    assert (tmp_path / "visualizations" / "retention_vs_alpha.png").is_file()


@pytest.mark.slow
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
