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
