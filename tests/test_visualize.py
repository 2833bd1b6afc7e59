"""How the aptviz command shows a run (cli/visualize.py): tables that fit an 80-column terminal."""

from __future__ import annotations

import pytest
from conftest import SAMPLES
from rich.console import Console

import aptviz
from aptviz.cli.visualize import aggregate_table, image_table
from aptviz.compute.stats import ImageStats
from aptviz.runs.results import JobResult, Status
from aptviz.runs.summary import aggregate, rows_for


def _text(table, width: int = 80) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


RUNS = [
    (["entropy", "laplacian"], 3),
    (["entropy", "laplacian", "upsample-mse"], 3),
    (["entropy", "upsample-mse"], 4),
]


@pytest.mark.parametrize("measures,scales", RUNS)
def test_tables_of_several_measures_fit_80_columns_without_cutting(tmp_path, measures, scales):
    methods, thresholds = ["budget:0.3,1", "v1", "v2:1.3"], [3.0, 2.0, 1.0][: scales - 1]
    results = []
    for photo in ("astronaut.png", "chelsea.png"):
        data = aptviz.analyze(SAMPLES / photo, methods, thresholds=thresholds, importance=measures, num_scales=scales)
        results.append(JobResult(SAMPLES / photo, photo[:-4], Status.done, stats=ImageStats.from_dict(data)))
    groups = aggregate([row for r in results for row in rows_for(r, tmp_path, r.stats.scales)])
    for table in (image_table(results[0].stats), aggregate_table(groups)):
        text = _text(table)
        assert "…" not in text and "..." not in text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
        for measure in measures:
            assert f"│ {measure} " in text  # each measure named whole, on its own row
        assert "budget 0.3" in text and "v2 1.3" in text


def test_one_measure_keeps_its_method_and_alpha_columns():
    data = aptviz.analyze(SAMPLES / "chelsea.png", ["budget:0.3"])
    text = _text(image_table(ImageStats.from_dict(data)))
    assert "method" in text and "alpha" in text and "selection" not in text
    assert "│ budget │   0.3 │" in text


_QUIET_RUN = """
import sys
from aptviz.cli import main
sys.argv = ["aptviz", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("RICH", sorted(m for m in sys.modules if m == "rich" or m.startswith("rich.")), "CODE", code)
"""


def test_a_quiet_run_imports_rich_only_to_print(tmp_path):
    """rich (~20 ms of a command's start) is imported when something is printed: not by a quiet run that
    succeeds; a quiet run that fails still prints its one error line."""
    import subprocess
    import sys

    from conftest import ROOT, small_images

    folder = small_images(tmp_path / "in", 2)
    ok = subprocess.run([sys.executable, "-c", _QUIET_RUN, str(folder), "-q", "-o", str(tmp_path / "out")],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "RICH [] CODE 0" in ok.stdout, ok.stdout + ok.stderr
    assert ok.stderr == "" and (tmp_path / "out" / "summary.csv").is_file()
    (folder / "broken.png").write_bytes(b"not a picture")
    bad = subprocess.run([sys.executable, "-c", _QUIET_RUN, str(folder), "-q", "-o", str(tmp_path / "out2")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "aptviz: error: " in bad.stderr and "broken.png" in bad.stderr, bad.stderr
    assert "'rich.console'" in bad.stdout and "CODE 0" not in bad.stdout
