"""Faults found by driving the stats and summary commands adversarially (issue 21), one test each."""

from __future__ import annotations

import shutil

import pyarrow.dataset as pds

from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats
from aptviz.datasets.parquet import part_files
from aptviz.datasets.summary import summarize

from conftest import SAMPLES

RUNS = expand_runs(["v2", "budget:0.3"])


def _table(out):
    return pds.dataset([str(f) for f in part_files(out)], format="parquet").to_table()


def test_summary_keeps_inputs_that_share_a_displayed_path(tmp_path, monkeypatch):
    """Two runs from different folders over x/p.png: three inputs, three images (not two)."""
    out = tmp_path / "out"
    samples = sorted(SAMPLES.glob("*.png"))
    for i, folder in enumerate(("a", "b")):
        (tmp_path / folder / "x").mkdir(parents=True)
        shutil.copy(samples[i], tmp_path / folder / "x" / "p.png")
    shutil.copy(samples[2], tmp_path / "a" / "x" / "q.png")
    monkeypatch.chdir(tmp_path / "a")
    run_stats(["x/p.png", "x/q.png"], out, RUNS, Params(), workers=1)
    monkeypatch.chdir(tmp_path / "b")
    run_stats(["x/p.png"], out, RUNS, Params(), workers=1)
    assert sorted(set(_table(out)["path"].to_pylist())) == ["x/p.png", "x/q.png"]
    assert [(s.images, s.failed) for s in summarize(out)] == [(3, 0)] * len(RUNS)
