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
