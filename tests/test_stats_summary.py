"""aptviz stats-summary (aptviz.datasets.summary) over part files another program touched."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats
from aptviz.datasets.parquet import part_files

from conftest import SAMPLES
from conftest import command as aptviz  # in this process: the summary and lines are the point


def test_a_part_with_nan_and_infinite_numbers_is_summarized_without_them(tmp_path):
    """Issue 27: a part file with a NaN retention crashed stats-summary (JSON cannot hold NaN). Non-finite
    numbers now count as missing, with one warning line; the other rows give the statistics."""
    out = tmp_path / "o"
    run_stats([SAMPLES], out, expand_runs(["budget:0.3"]), Params(), workers=1)
    (part,) = part_files(out)
    table = pq.read_table(part)
    retention, llm = table["retention"].to_pylist(), table["llm_retention"].to_pylist()
    assert len(retention) == 3
    want = float(np.mean(retention[1:])), float(np.mean(llm[:2]))
    retention[0], llm[2] = math.nan, -math.inf
    for name, values in (("retention", retention), ("llm_retention", llm)):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.array(values, pa.float64()))
    pq.write_table(table, part)
    r = aptviz("stats-summary", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{part}: 1 non-finite retention value(s) read as missing" in r.stderr
    assert f"{part}: 1 non-finite llm_retention value(s) read as missing" in r.stderr
    (summary,) = json.loads((out / "summary.json").read_text())["selections"]
    assert summary["images"] == 3 and summary["failed"] == 0
    assert math.isclose(summary["retention_mean"], want[0]) and math.isclose(summary["llm_retention_mean"], want[1])


def test_a_summary_json_that_cannot_be_written_exits_1(tmp_path):
    """The table is still shown, but a summary.json that could not be written is an error (exit 1), for
    stats-summary and for stats --summary alike; the part files are kept."""
    out = tmp_path / "o"
    run_stats([SAMPLES], out, expand_runs(["budget:0.3"]), Params(), workers=1)
    (out / "summary.json").mkdir()  # a folder in its place: the rename fails
    r = aptviz("stats-summary", out)
    assert r.returncode == 1 and f"cannot write {out / 'summary.json'}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Summary written" not in r.stdout and "retention" in r.stdout
    again = aptviz("stats", SAMPLES, "-o", out, "-m", "budget:0.3", "--summary")
    assert again.returncode == 1 and f"cannot write {out / 'summary.json'}" in again.stderr, again.stderr
    assert len(part_files(out)) == 1 and (out / "summary.json").is_dir()
    (out / "summary.json").rmdir()
    assert aptviz("stats-summary", out).returncode == 0 and (out / "summary.json").is_file()
