"""aptviz stats inputs (aptviz.datasets.sources): damaged tar headers and large Parquet row groups."""

from __future__ import annotations

import io
import os
import tarfile

import pyarrow.dataset as pds
import pytest

from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats
from aptviz.datasets.parquet import part_files

from conftest import SAMPLES, aptviz

RUNS = expand_runs(["budget:0.3"])


def _rows(out) -> dict:
    table = pds.dataset([str(f) for f in part_files(out)], format="parquet").to_table()
    return {(os.path.basename(r["path"].split("::")[0]), r["member"]): r for r in table.to_pylist()}


def _tar_with_a_base256_size(path, size: int) -> None:
    """A GNU tar of three PNGs whose second header's size field says ``size`` in base-256 (GNU's large-number
    form: 0x80, then the value in big-endian bytes)."""
    png = (SAMPLES / "chelsea.png").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("000.png", "001.png", "002.png"):
            info = tarfile.TarInfo(name)
            info.size = len(png)
            tar.addfile(info, io.BytesIO(png))
    data = bytearray(buf.getvalue())
    at = data.index(b"001.png")  # the header starts with the name
    data[at + 124 : at + 136] = b"\x80" + size.to_bytes(11, "big")
    data[at + 148 : at + 156] = b" " * 8
    data[at + 148 : at + 156] = b"%06o\0 " % sum(data[at : at + 512])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("size", [2**70, 2**62, 2**40])
def test_a_tar_with_a_base256_size_is_one_failed_row_and_the_rest_go_on(tmp_path, size):
    """Issue 27: a size field past 2**63 made tarfile raise ValueError ("cannot fit 'int' into an
    offset-sized integer"), which aborted the whole ``stats`` run; a size past the file's end was read
    whole (memory). The member is one failed row; the tar's other member and the other inputs go on."""
    src = tmp_path / "in"
    src.mkdir()
    _tar_with_a_base256_size(src / "bad.tar", size)
    (src / "coffee.png").write_bytes((SAMPLES / "coffee.png").read_bytes())
    report = run_stats([src], tmp_path / "o", RUNS, Params(), workers=1)
    rows = _rows(tmp_path / "o")
    assert report.failed == 1 and rows[("bad.tar", "001.png")]["error"] == "truncated tar member"
    assert rows[("bad.tar", "000.png")]["status"] == rows[("coffee.png", None)]["status"] == "ok"


def test_the_command_on_a_tar_with_a_base256_size_says_one_line(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _tar_with_a_base256_size(src / "bad.tar", 2**70)
    r = aptviz("stats", src, "-o", tmp_path / "o", "-q")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"aptviz: error: {src / 'bad.tar'}::001.png: truncated tar member"]


# -- Parquet row groups larger than the memory budget ------------------------------------------------
MAX_MEMORY = 400 << 20

PEAK = """
import os, resource, subprocess, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: one entropy thread, a plan known in advance
r = subprocess.run([sys.executable, "-m", "aptviz", *sys.argv[1:]], capture_output=True, text=True)
sys.stderr.write(r.stderr)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss << 10)
"""


def _peak(*args) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, stderr) of the command run alone on one core."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, "-c", PEAK, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)  # fmt: skip
    code, peak = map(int, r.stdout.split())
    return code, peak, r.stderr


def _images_parquet(path, rows: int, row_bytes: int, one_page: bool) -> None:
    """One row group of ``rows`` PNGs, each followed by ``row_bytes`` random bytes (decoders stop at IEND),
    as one page (what Arrow writes for up to 1024 values) or one page per row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    png = (SAMPLES / "chelsea.png").read_bytes()
    cells = [png + rng.bytes(row_bytes) for _ in range(rows)]
    small = {} if one_page else {"write_batch_size": 1, "data_page_size": 1 << 20}
    table = pa.table({"image": pa.array(cells, pa.binary())})
    pq.write_table(table, path, row_group_size=rows, use_dictionary=False, compression="none", **small)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_a_parquet_page_larger_than_the_memory_budget_is_refused_not_read(tmp_path):
    """Issue 27: a row group written as one page (Arrow's default for up to 1024 images) was read whole:
    twice its size in memory, past ``--max-memory``. Its rows now fail with one line each, the peak stays
    within the budget; a row group as large with small pages is read batch by batch within it."""
    from aptviz.runs.memory import DECODE_BYTES_PER_PIXEL, plan

    # what a worker may hold to read pages: the plan's decode room (aptviz.datasets.sources.read_limit)
    limit = DECODE_BYTES_PER_PIXEL * plan(Params(), workers=1, max_memory=MAX_MEMORY, threads=1).decode_pixels
    rows = 20
    big = tmp_path / "one_page.parquet"
    _images_parquet(big, rows, (limit - (10 << 20)) // rows, one_page=True)  # twice this is more than the limit
    code, peak, err = _peak("stats", big, "-o", tmp_path / "o1", "--max-memory", MAX_MEMORY, "-j", 1, "-q")
    assert peak <= MAX_MEMORY, f"peak {peak >> 20} MB"
    assert code == 1 and "Traceback" not in err, err
    table = pds.dataset([str(f) for f in part_files(tmp_path / "o1")], format="parquet").to_table()
    errors = set(table["error"].to_pylist())
    assert table.num_rows == rows and len(errors) == 1
    assert errors.pop().startswith("Parquet row group 0: its pages need ")
    paged = tmp_path / "small_pages.parquet"
    _images_parquet(paged, rows, (limit - (10 << 20)) // rows, one_page=False)
    code, peak, err = _peak("stats", paged, "-o", tmp_path / "o2", "--max-memory", MAX_MEMORY, "-j", 1, "-q")
    assert code == 0 and peak <= MAX_MEMORY, (err, peak >> 20)
    table = pds.dataset([str(f) for f in part_files(tmp_path / "o2")], format="parquet").to_table()
    assert table["status"].to_pylist() == ["ok"] * rows


def test_page_sizes_are_read_from_the_page_headers(tmp_path):
    """read_bytes: what the page headers say -- one page twice its size, small pages their largest, a
    dictionary page beside the data pages; a struct column counts all its leaves; junk is unknown (None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aptviz.datasets.pages import read_bytes

    cells = [bytes([i]) * 100_000 for i in range(10)]
    plain = {"use_dictionary": False, "compression": "none"}
    pq.write_table(pa.table({"image": cells}), tmp_path / "one.parquet", **plain)
    pq.write_table(pa.table({"image": cells}), tmp_path / "many.parquet", write_batch_size=1, data_page_size=1, **plain)
    pq.write_table(pa.table({"image": cells}), tmp_path / "dict.parquet", compression="none")
    struct = pa.array([{"bytes": c, "path": "x.png"} for c in cells])
    pq.write_table(pa.table({"image": struct}), tmp_path / "struct.parquet", **plain)
    one = read_bytes(str(tmp_path / "one.parquet"), 0, "image")
    assert 2 * 1_000_000 <= one < 2 * 1_001_000
    assert 2 * 100_000 <= read_bytes(str(tmp_path / "many.parquet"), 0, "image") < 2 * 101_000
    dictionary = read_bytes(str(tmp_path / "dict.parquet"), 0, "image")  # every value in the dictionary page
    assert 2 * 1_000_000 <= dictionary < 2 * 1_001_000
    assert one < read_bytes(str(tmp_path / "struct.parquet"), 0, "image") < one + 1000
    (tmp_path / "junk.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    assert read_bytes(str(tmp_path / "junk.parquet"), 0, "image") is None
