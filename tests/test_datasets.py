"""``aptviz stats`` inputs and summaries (aptviz.datasets): odd tars and Parquet files, bad parts, shared
displayed paths, bounded reads, hostile names escaped on the terminal."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats
from aptviz.datasets.parquet import part_files
from aptviz.datasets.summary import summarize

from conftest import SAMPLES, command

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


def _rows(out):
    return {r["member"]: r for r in _table(out).to_pylist() if r["selection"] == RUNS[0].label}


def _tar(path, entries):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png(i: int) -> bytes:
    return sorted(SAMPLES.glob("*.png"))[i].read_bytes()


def test_tar_duplicate_member_gets_its_own_row(tmp_path):
    shard = _tar(tmp_path / "dup.tar", [("a.png", _png(0)), ("a.png", _png(1)), ("b.png", _png(2))])
    run_stats([shard], tmp_path / "o", RUNS, Params(), workers=1)
    rows = _rows(tmp_path / "o")
    assert sorted(rows) == ["a.png", "a.png#2", "b.png"]
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert rows["a.png"]["base_small_tokens"] != rows["a.png#2"]["base_small_tokens"]  # two different images


@pytest.mark.parametrize("cut", ["data", "header"])
def test_truncated_tar_keeps_the_members_before_the_cut(tmp_path, cut):
    whole = _tar(tmp_path / "whole.tar", [("a.png", _png(0)), ("b.png", _png(1)), ("c.png", _png(2))])
    with tarfile.open(whole) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + 1000 if cut == "data" else last.offset + 100  # inside c.png, or inside its header
    shard = tmp_path / "cut.tar"
    shard.write_bytes(whole.read_bytes()[:end])
    run_stats([shard], tmp_path / "o", RUNS, Params(), workers=1)
    rows = _rows(tmp_path / "o")
    assert rows["a.png"]["status"] == rows["b.png"]["status"] == "ok"
    if cut == "data":
        assert sorted(rows) == ["a.png", "b.png", "c.png"] and rows["c.png"]["error"] == "truncated tar member"
    else:
        assert sorted(rows, key=str) == [None, "a.png", "b.png"]
        assert rows[None]["error"].startswith("cannot read the rest of the tar file after 'b.png'")


@pytest.mark.skipif(b"GNU tar" not in subprocess.run(["tar", "--version"], capture_output=True).stdout,
                    reason="needs GNU tar to write a sparse member")  # fmt: skip
def test_gnu_sparse_tar_member_reads_as_tar_x_does(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    holed = src / "a.png"
    holed.write_bytes(_png(0))
    os.truncate(holed, 3 << 20)  # a PNG followed by a 3 MB hole: GNU tar stores it sparse
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", str(tmp_path / "s.tar"), "a.png"], cwd=src, check=True)
    with tarfile.open(tmp_path / "s.tar") as tar:
        assert tar.getmembers()[0].type == tarfile.GNUTYPE_SPARSE
    run_stats([tmp_path / "s.tar"], tmp_path / "o", RUNS, Params(), workers=1)
    run_stats([holed], tmp_path / "ref", RUNS, Params(), workers=1)
    got, want = _rows(tmp_path / "o")["a.png"], _rows(tmp_path / "ref")[None]
    assert got["status"] == "ok"
    assert {k: got[k] for k in NUMBERS} == {k: want[k] for k in NUMBERS}


NUMBERS = ("retention", "llm_retention", "vit_tokens", "llm_tokens", "base_small_tokens", "importance_p50")


def _struct_parquet(path, cells, value_type):
    table = pa.table({"image": pa.array(cells, pa.struct([("bytes", value_type), ("path", pa.string())]))})
    pq.write_table(table, path)
    return path


def test_parquet_struct_with_int_bytes_is_a_clear_failed_row(tmp_path):
    shard = _struct_parquet(tmp_path / "ints.parquet", [{"bytes": 7, "path": "a.jpg"}], pa.int64())
    report = run_stats([shard], tmp_path / "o", RUNS, Params(), workers=1)
    (row,) = _rows(tmp_path / "o").values()
    assert report.failed == 1
    assert row["error"] == "image struct field 'bytes' holds int, not bytes"


def test_parquet_text_in_an_error_is_capped(tmp_path):
    """A {bytes: <35 KB string>} cell and a 35 KB path give short error texts, not the cell."""
    big = "A" * 35_000
    shard = _struct_parquet(
        tmp_path / "text.parquet", [{"bytes": big, "path": "a.jpg"}, {"bytes": None, "path": big}], pa.string()
    )
    run_stats([shard], tmp_path / "o", RUNS, Params(), workers=1)
    rows = _rows(tmp_path / "o")
    assert rows["0"]["error"] == "image struct field 'bytes' holds str, not bytes"
    assert rows["1"]["error"].startswith("no image bytes in this row (only a path: AAA")
    assert len(rows["1"]["error"]) < 400 and "35000 characters" in rows["1"]["error"]


READ_TASK = """
import sys
import pyarrow as pa
from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.sources import chunk_tasks, iter_units, run_task
tasks = list(chunk_tasks(iter_units([sys.argv[1]]), size=2))
rows = run_task(tasks[-1], Params(), expand_runs(["v2"]))
print(len(rows), pa.default_memory_pool().max_memory())
"""


def test_a_task_reads_only_its_rows_of_a_big_row_group(tmp_path):
    """40 rows of 1 MB in one row group: the last 2-row task holds a few MB of Arrow memory, not 40 MB."""
    rng = np.random.default_rng(0)
    cells = [rng.bytes(1 << 20) for _ in range(40)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary())}), path, row_group_size=40,
                   use_dictionary=False, write_batch_size=1)  # fmt: skip
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    out = subprocess.run([sys.executable, "-c", READ_TASK, str(path)], capture_output=True, text=True, check=True)
    rows, peak = map(int, out.stdout.split())
    assert rows == 2 and peak < 12 << 20


def _bad_parts(out):
    """A truncated part, a foreign Parquet file named like a part and a folder named like one."""
    parts = part_files(out)
    data = parts[0].read_bytes()
    (out / "part-trunc.parquet").write_bytes(data[: len(data) // 2])
    pq.write_table(pa.table({"path": [1, 2], "other": ["a", "b"]}), out / "part-foreign.parquet")
    pq.write_table(pa.table({c: pa.array([1], pa.int64()) for c in ["path", "status", "run_key"]}),
                   out / "part-types.parquet")  # fmt: skip
    (out / "part-x.parquet").mkdir()
    return ["part-trunc.parquet", "part-foreign.parquet", "part-types.parquet", "part-x.parquet"]


def test_stats_summary_leaves_out_bad_parts_with_one_line_each(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(SAMPLES.glob("*.png"))[:2]:
        shutil.copy(p, src / p.name)
    out = tmp_path / "out"
    run_stats([src], out, RUNS, Params(), workers=1)
    want = [(s.selection, s.images, s.retention_mean) for s in summarize(out)]
    bad = _bad_parts(out)
    assert [(s.selection, s.images, s.retention_mean) for s in summarize(out)] == want
    for args in (["stats-summary", str(out)], ["stats", str(src), "-o", str(out), "-m", "v2", "-m", "budget:0.3",
                                                "-j", "1", "--summary"]):  # fmt: skip
        from conftest import command  # in this process: -j 1 (or no workers), its lines are the point

        r = command(*args)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and "retention mean" in r.stdout
        lines = [line for line in r.stderr.splitlines() if "left out" in line]
        assert len(lines) == len(bad) and all(any(b in line for line in lines) for b in bad), r.stderr


HOSTILE = "a\x1b]0;pwned\x07b\x1b[2J\nFORGED: c\x9b"  # set the title, clear the screen, forge a line, C1 CSI


def _clean_terminal(text: str) -> None:
    assert not any(ch in text for ch in "\x1b\x07\x9b"), repr(text)
    assert not any(line.startswith("FORGED") for line in text.splitlines()), text


@pytest.mark.slow
def test_control_characters_in_names_and_parquet_text_reach_the_terminal_escaped(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sorted(SAMPLES.glob("*.png"))[0], src / f"{HOSTILE}.png")
    (src / f"{HOSTILE}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    _tar(tmp_path / "s.tar", [(f"{HOSTILE}.jpg", b"\xff\xd8 not a jpeg")])
    _struct_parquet(tmp_path / "t.parquet", [{"bytes": None, "path": HOSTILE}], pa.binary())
    runs = [  # (arguments, how many times the name shows)
        ([str(src), "-o", str(tmp_path / "o1"), "-m", "v2", "-j", "1"], 2),  # the error line and a table title
        ([str(src / f"{HOSTILE}.png"), "-o", str(tmp_path / "o2"), "-m", "v2", "-j", "1"], 1),  # the image table
        (["stats", str(src), str(tmp_path / "s.tar"), str(tmp_path / "t.parquet"), "-o", str(tmp_path / "o3"),
          "-j", "1"], 3),  # a file, a tar member and a Parquet path in error lines
        (["calibrate", str(src / f"{HOSTILE}.jpg"), "-o", str(tmp_path / "o4")], 1),
        (["calibrate", str(src), "-o", str(tmp_path / "o5"), "-j", "1"], 2),  # a reason and the retention table
    ]  # fmt: skip
    monkeypatch.setenv("COLUMNS", "1000")
    for args, times in runs:  # in this process: what the command writes is the point, -j 1 keeps it here
        r = command(*args)
        assert "Traceback" not in r.stderr
        _clean_terminal(r.stdout)
        _clean_terminal(r.stderr)
        shown = "".join((r.stdout + r.stderr).split())  # a table title may wrap (escaped, it cannot forge a line)
        assert shown.count("\\x1b]0;pwned\\x07b\\x1b[2J\\x0aFORGED:c\\x9b") == times, (args, r.stdout, r.stderr)
