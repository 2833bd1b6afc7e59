"""Start-up costs: what ``aptviz stats`` and ``aptviz --help`` import, and the pandas-free Arrow tables.

pyarrow imports pandas (half a second) whenever ``pa.array``, ``Table.from_pylist``,
``to_numpy`` or ``pyarrow.dataset`` is used while pandas is installed (Ray Data
installs it); ``aptviz stats`` builds its columns from NumPy buffers instead.
The import checks run the command in a fresh interpreter.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.parquet import (
    ROW_FIELDS,
    arrow_column,
    existing_row_ids,
    int64_values,
    part_files,
    row_schema,
    rows_to_table,
)
from aptviz.datasets.rows import InputRef, failed_rows, image_rows

from conftest import ROOT, SAMPLES

RUNS = expand_runs(["v1", "v2", "budget"], [0.3, 1.0])
HEAVY = ("pandas", "ray", "torch", "matplotlib", "transformers", "aptviz.render", "aptviz.pipeline", "pyarrow.compute")


def _ref(path: Path, member: str | None = None) -> InputRef:
    st_ = path.stat()
    source = "file" if member is None else "tar"
    return InputRef(source, str(path), member, str(path.resolve()), st_.st_size, st_.st_mtime_ns)


def _real_rows(fidelity: bool = False) -> list[dict]:
    """Rows of the sample photos (ok), of a corrupt file and a non-UTF-8 name (failed), as aptviz makes them."""
    rows = []
    for p in sorted(SAMPLES.glob("*.png"))[:2]:
        rows += image_rows(p, _ref(p), Params().resolved(), RUNS, fidelity=fidelity)
    bad = SAMPLES / "README.md"
    rows += image_rows(bad, _ref(bad, member="caf\\xe9 \u00e9\u4e2d.jpg"), Params().resolved(), RUNS, fidelity=fidelity)
    rows += failed_rows(_ref(bad), Params().resolved(), RUNS[:1], "unreadable: \u00e9", fidelity)
    return rows


@pytest.mark.parametrize("fidelity", [False, True])
def test_rows_to_table_equals_from_pylist(fidelity):
    """The buffer-built table is the table ``Table.from_pylist`` makes, value for value and type for type."""
    rows = _real_rows(fidelity)
    assert {r["status"] for r in rows} == {"ok", "failed"}
    got = rows_to_table(rows, fidelity)
    expected = pa.Table.from_pylist(rows, schema=row_schema(fidelity))
    got.validate(full=True)
    assert got.schema == expected.schema
    assert got.equals(expected)
    assert got.to_pylist() == expected.to_pylist()


def test_rows_to_table_of_no_rows_and_of_nulls_everywhere():
    assert rows_to_table([]).equals(pa.Table.from_pylist([], schema=row_schema()))
    sparse = [{"path": "a"}, {}, {"scales": [], "importance_p5": [None, 1.5], "alpha": float("inf")}]
    got = rows_to_table(sparse)
    got.validate(full=True)
    assert got.equals(pa.Table.from_pylist(sparse, schema=row_schema()))


@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "path": st.none() | st.text(),
                "row_id": st.none() | st.integers(-(2**63), 2**63 - 1),
                "alpha": st.none() | st.floats(allow_nan=False) | st.integers(-(2**40), 2**40),
                "scales": st.none() | st.lists(st.none() | st.integers(0, 10**6), max_size=5),
                "importance_mean": st.none() | st.lists(st.none() | st.floats(allow_nan=False), max_size=5),
            },
        ),
        max_size=30,
    )
)
def test_any_rows_give_the_from_pylist_table(rows):
    got = rows_to_table(rows)
    got.validate(full=True)
    assert got.equals(pa.Table.from_pylist(rows, schema=row_schema()))


def test_wrong_value_types_are_refused():
    with pytest.raises(TypeError, match="column x"):
        arrow_column([1, 2.5], "int64", "x")
    with pytest.raises(TypeError, match="column y"):
        arrow_column(["a", 3], "string", "y")
    with pytest.raises(TypeError):
        arrow_column(["a"], "float64")
    assert set(ROW_FIELDS.values()) == {"int64", "float64", "string", "list<int64>", "list<float64>"}


def test_int64_values_reads_slices_and_chunks(tmp_path):
    ids = np.array([7, -3, 2**62, 0, 5], dtype=np.int64)
    col = arrow_column(ids.tolist(), "int64")
    assert int64_values(col).tolist() == ids.tolist()
    assert int64_values(col.slice(2, 2)).tolist() == ids[2:4].tolist()
    with pytest.raises(ValueError):
        int64_values(arrow_column([1, None], "int64"))
    # two parts with several row groups each: existing_row_ids reads them all, sorted and unique
    for i, chunk in enumerate((ids[:3], ids[2:])):
        table = pa.Table.from_arrays([arrow_column(chunk.tolist(), "int64")], names=["row_id"])
        pq.write_table(table, tmp_path / f"part-{i}.parquet", row_group_size=2)
    assert existing_row_ids(tmp_path).tolist() == sorted(set(ids.tolist()))


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def _stats_imports(argv: list[str]) -> dict:
    """Run ``aptviz`` (the console entry point) in a fresh interpreter; its exit code and what it imported."""
    code = (
        "import json, sys\nfrom aptviz.cli import main\ncode = 0\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
        f"print(json.dumps({{'code': code, 'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules),"
        " 'pyarrow': 'pyarrow' in sys.modules}))"
    )
    r = _fresh(code)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_stats_imports_no_pandas(tmp_path, workers):
    """``aptviz stats`` (local engine): a run, then a resume that reads the row ids back; neither imports pandas.

    Nor the drawing code or pyarrow.compute (0.1 s each): stats computes and writes rows only.
    """
    inputs = [str(p) for p in sorted(SAMPLES.glob("*.png"))[:2]]
    argv = ["stats", *inputs, "-o", str(tmp_path / "o"), "-m", "v2", "-m", "budget", "-a", "0.3", "--workers", workers]
    first = _stats_imports(argv)
    assert first == {"code": 0, "heavy": [], "pyarrow": True}
    table = pq.ParquetFile(part_files(tmp_path / "o")[0]).read()
    assert table.num_rows == 4 and set(table.column("status").to_pylist()) == {"ok"}
    again = _stats_imports(argv + ["-m", "v1"])  # resume: 4 rows there, 2 to add
    assert again == {"code": 0, "heavy": [], "pyarrow": True}
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(tmp_path / "o")) == 6


def test_stats_with_a_failed_image_imports_no_pandas(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    result = _stats_imports(["stats", str(bad), str(SAMPLES / "chelsea.png"), "-o", str(tmp_path / "o")])
    assert result == {"code": 1, "heavy": [], "pyarrow": True}


HELPS = [["--help"], ["stats", "--help"], ["calibrate", "--help"], ["stats-summary", "--help"]]


@pytest.mark.parametrize("argv", HELPS)
def test_help_imports_no_numpy_pillow_or_loguru(argv):
    """``--help`` loads typer and a few small aptviz modules: nothing of the pipeline (``aptviz --help``: no Rich)."""
    heavy = ("numpy", "PIL", "loguru", "pyarrow", "pandas", "torch") + (("rich.console",) if len(argv) == 1 else ())
    code = (
        "import sys\nfrom aptviz.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    r = _fresh(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "Usage: aptviz" in r.stdout


def test_smart_resize_alone_does_not_import_pillow():
    r = _fresh(
        "import sys\nfrom aptviz.compute.resize import smart_resize\n"
        "print(smart_resize(300, 451), 'PIL' in sys.modules)"
    )
    assert r.stdout.split() == ["(308,", "448)", "False"], r.stderr
    assert math.prod((308, 448)) <= Params().max_pixels


def test_stats_summary_imports_no_pandas(tmp_path):
    """``aptviz stats-summary`` and ``aptviz stats --summary`` read and group without pyarrow.dataset/group_by."""
    inputs = [str(p) for p in sorted(SAMPLES.glob("*.png"))[:2]]
    out = str(tmp_path / "o")
    summary_run = _stats_imports(["stats", *inputs, "-o", out, "-m", "v2", "-m", "budget", "-a", "0.3", "--summary"])
    summary_only = _stats_imports(["stats-summary", out])
    for result in (summary_run, summary_only):  # the summary computes with pyarrow.compute: that one is expected
        assert result == {"code": 0, "heavy": ["pyarrow.compute"], "pyarrow": True}
    assert len(json.loads((tmp_path / "o" / "summary.json").read_text())["selections"]) == 2


def test_latest_rows_equal_arrow_group_by_and_join():
    """The NumPy grouping of the summary keeps exactly the rows Arrow's group_by + join kept."""
    import pyarrow.compute as pc

    from aptviz.datasets.summary import _latest

    rng = np.random.default_rng(3)
    n = 400
    mtimes = rng.integers(0, 5, n)
    keys = [f'["file", "/d/{i % 23}.png", null, {rng.integers(1, 9)}, {m}]' for i, m in enumerate(mtimes)]
    table = pa.table(
        {
            "input_key": pa.array(keys, pa.string()),
            "run_key": pa.array([f"k{i % 3}" for i in range(n)], pa.string()),
            "input_mtime_ns": pa.array([None if i % 50 == 7 else int(m) for i, m in enumerate(rng.integers(0, 5, n))]),
            "row": pa.array(np.arange(n)),
        }
    )
    identity = pc.replace_substring_regex(table["input_key"], pattern=r",\s*-?\d+,\s*-?\d+\]$", replacement="]")
    ref = table.append_column("_input", identity)
    latest = ref.group_by(["_input", "run_key"], use_threads=False).aggregate([("input_mtime_ns", "max")])
    joined = ref.join(latest, ["_input", "run_key"], use_threads=False)
    expected = joined.filter(pc.equal(joined["input_mtime_ns"], joined["input_mtime_ns_max"]))
    got = _latest(pc, pa.concat_tables([table.slice(0, 150), table.slice(150)]))
    assert sorted(got.column("row").to_pylist()) == sorted(expected.column("row").to_pylist())
    assert 0 < got.num_rows < n
