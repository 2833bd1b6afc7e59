"""``aptviz stats-summary``: aggregates of a stats dataset, per selection, with pyarrow compute.

Only the needed columns are read, and every statistic is an Arrow kernel:
millions of rows never become Python objects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz._text import text_path
from aptviz.datasets.parquet import arrow_column, part_files, require_pyarrow, row_schema
from aptviz.datasets.rows import FIDELITY_COLUMNS
from aptviz.errors import ROW_OK, InputError
from aptviz.output.atomic import write_json_atomic

__all__ = ["SelectionSummary", "summarize", "write_summary_json"]

COLUMNS = [
    "path",
    "input_mtime_ns",
    "input_key",
    "selection",
    "method",
    "alpha",
    "run_key",
    "status",
    "retention",
    "llm_retention",
    "vit_tokens",
    "base_small_tokens",
    "llm_tokens",
    "llm_tokens_uniform",
]
#: Means reported per selection when the rows have them (``aptviz stats --fidelity``).
FIDELITY_MEANS = FIDELITY_COLUMNS


@dataclass(frozen=True)
class SelectionSummary:
    """Aggregates over the images of one selection (``ok`` rows; ``failed`` counted apart)."""

    selection: str
    method: str
    alpha: float | None
    params: dict
    images: int
    failed: int
    retention_mean: float | None
    retention_median: float | None
    retention_p5: float | None
    retention_p95: float | None
    llm_retention_mean: float | None
    llm_retention_median: float | None
    llm_retention_p5: float | None
    llm_retention_p95: float | None
    vit_tokens: int
    vit_tokens_uniform: int
    vit_tokens_saved: int
    llm_tokens: int
    llm_tokens_uniform: int
    llm_tokens_saved: int
    # means over the ok rows that have the value (--fidelity; None without it). PSNR is null for a
    # lossless view and such rows are left out of the PSNR means (an infinite dB would swamp them)
    psnr_apt_mean: float | None = None
    uniform_vit_tokens_mean: float | None = None
    psnr_uniform_mean: float | None = None
    ssim_apt_mean: float | None = None
    ssim_uniform_mean: float | None = None
    llm_uniform_tokens_mean: float | None = None  # the baseline at equal LLM tokens
    psnr_uniform_llm_mean: float | None = None
    ssim_uniform_llm_mean: float | None = None


def _latest(pc, table):
    """Only the rows of each input's latest version (a file changed and re-run leaves its old rows in OUT).

    An input is its identity without its version: the ``input_key`` (source,
    resolved path, member, size, mtime) less its size and mtime. Two inputs
    shown with the same relative ``path`` (runs from different folders) stay
    two images. Grouped with NumPy on dictionary codes (Arrow's ``group_by``
    and ``join`` import pandas).
    """
    identity = pc.replace_substring_regex(table["input_key"], pattern=r",\s*-?\d+,\s*-?\d+\]$", replacement="]")
    group = _codes(pc, identity) * (len(table) + 1) + _codes(pc, table["run_key"])
    _, group = np.unique(group, return_inverse=True)
    mtime = table["input_mtime_ns"].combine_chunks()
    valid = ~_null_mask(mtime)
    values = np.where(valid, _numbers(mtime), np.iinfo(np.int64).min)
    latest = np.full(group.max(initial=-1) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, group, values)
    keep = valid & (values == latest[group])  # a null mtime never counts, as the former join's equality
    pa = require_pyarrow()
    mask = pa.Array.from_buffers(pa.bool_(), len(keep), [None, pa.py_buffer(np.packbits(keep, bitorder="little"))])
    return table.filter(mask)


def _codes(pc, column) -> np.ndarray:
    """int64 code of every value (equal values, equal codes; null its own code)."""
    encoded = pc.dictionary_encode(column.combine_chunks() if hasattr(column, "combine_chunks") else column)
    indices = encoded.indices
    codes = np.frombuffer(indices.buffers()[1], dtype=np.int32)[indices.offset : indices.offset + len(indices)]
    return np.where(_null_mask(indices), -1, codes).astype(np.int64) + 1


def _null_mask(array) -> np.ndarray:
    """True where an Arrow array is null (from its validity bitmap; no pandas)."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    return ~bits[array.offset : array.offset + len(array)].astype(bool)


def _numbers(array) -> np.ndarray:
    """The int64 values of an Arrow int64 array, nulls as 0."""
    data = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array)]
    return np.where(_null_mask(array), 0, data)


def _read_parts(pa, files: list[Path]):
    """The summary's columns of every readable part, concatenated, and the ``--fidelity`` columns among them.

    Parts written with and without ``--fidelity`` differ in columns: they are
    read under their union (a missing column is null). A part that is not a
    file, cannot be read (truncated) or is not an aptviz stats part (missing
    columns, other types) is left out with one warning line naming it and the
    reason. ``(None, [])`` when no part is readable.
    """
    full = row_schema(fidelity=True)
    tables = []
    for f in files:
        try:
            if not f.is_file():
                raise ValueError("not a file")
            names = set(pa.parquet.read_schema(f).names)
            columns = COLUMNS + [c for c in FIDELITY_MEANS if c in names]
            want = pa.schema([full.field(c) for c in columns])
            table = pa.parquet.ParquetFile(f).read(columns=columns).select(columns)  # read_table imports pandas
            tables.append(_finite(table if table.schema.equals(want) else table.cast(want), f))
        except Exception as exc:  # any unreadable or foreign part: one line, the others still count
            reason = " ".join(str(exc).split())
            reason = reason if len(reason) <= 200 else reason[:200] + "..."
            logger.warning("{}: not a readable aptviz stats part, left out ({}: {})", text_path(f),
                           type(exc).__name__, reason)  # fmt: skip
    if not tables:
        return None, []
    table = pa.concat_tables(tables, promote_options="default")
    return table, [c for c in FIDELITY_MEANS if c in table.schema.names]


def _finite(table, path: Path):
    """``table`` with NaN and infinite numbers as nulls (missing), and one warning line naming the part.

    aptviz writes no such value; a part edited by another program may hold
    one, and a NaN would make every mean and percentile NaN (stats-summary
    then failed writing JSON).
    """
    import pyarrow.compute as pc
    import pyarrow.types as types

    for i, field in enumerate(table.schema):
        if not types.is_floating(field.type):
            continue
        column = table.column(i)
        bad = column.null_count < len(column) and pc.sum(pc.invert(pc.is_finite(column))).as_py()
        if bad:
            logger.warning("{}: {} non-finite {} value(s) read as missing", text_path(path), bad, field.name)
            table = table.set_column(i, field, pc.if_else(pc.is_finite(column), column, None))
    return table


def _stats(pc, column) -> dict:
    """mean, median (exact), p5 and p95 (linear interpolation, as NumPy's default)."""
    if len(column) == 0:
        return {"mean": None, "median": None, "p5": None, "p95": None}
    q = pc.quantile(column, q=[0.5, 0.05, 0.95], interpolation="linear").to_pylist()
    return {"mean": pc.mean(column).as_py(), "median": q[0], "p5": q[1], "p95": q[2]}


def _total(pc, column) -> int:
    return int(pc.sum(column).as_py() or 0)


def summarize(out: str | Path) -> list[SelectionSummary]:
    """Per selection (and parameter set): retention statistics, tokens saved, failed count.

    An image whose file changed between runs has rows of both versions in
    OUT; only the latest version's rows count.

    Parameters
    ----------
    out : str or Path
        A dataset written by ``aptviz stats``.

    Returns
    -------
    list of SelectionSummary
        In the order selections first appear in the files.

    Raises
    ------
    InputError
        When ``out`` holds no part file.
    """
    pa = require_pyarrow()
    import pyarrow.compute as pc

    files = part_files(out)
    if not files:
        raise InputError(f"{out}: no part-*.parquet files (not an aptviz stats output?)")
    table, fidelity = _read_parts(pa, files)
    if table is None:
        raise InputError(f"{out}: no readable part-*.parquet files (not an aptviz stats output?)")
    groups = pc.unique(table["run_key"])  # in order of first appearance
    table = _latest(pc, table)
    ok_status = arrow_column([ROW_OK], "string")[0]  # Arrow scalars: a Python value would be converted through pandas
    result = []
    for key in groups:
        sub = table.filter(pc.equal(table.column("run_key"), key))
        ok = sub.filter(pc.equal(sub.column("status"), ok_status))
        meta = json.loads(key.as_py())
        r, lr = _stats(pc, ok.column("retention")), _stats(pc, ok.column("llm_retention"))
        vit, vit_u = _total(pc, ok.column("vit_tokens")), _total(pc, ok.column("base_small_tokens"))
        llm, llm_u = _total(pc, ok.column("llm_tokens")), _total(pc, ok.column("llm_tokens_uniform"))
        result.append(
            SelectionSummary(
                selection=sub.column("selection")[0].as_py(),
                method=sub.column("method")[0].as_py(),
                alpha=sub.column("alpha")[0].as_py(),
                params=meta["params"],
                images=ok.num_rows,
                failed=sub.num_rows - ok.num_rows,
                **{f"retention_{k}": v for k, v in r.items()},
                **{f"llm_retention_{k}": v for k, v in lr.items()},
                vit_tokens=vit,
                vit_tokens_uniform=vit_u,
                vit_tokens_saved=vit_u - vit,
                llm_tokens=llm,
                llm_tokens_uniform=llm_u,
                llm_tokens_saved=llm_u - llm,
                **{f"{c}_mean": pc.mean(ok.column(c)).as_py() for c in fidelity},
            )
        )
    return result


def write_summary_json(summaries: list[SelectionSummary], path: str | Path) -> None:
    """Write the summaries as JSON (atomically)."""
    write_json_atomic(Path(path), {"selections": [asdict(s) for s in summaries]})
