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
