"""The Parquet side of ``aptviz stats``: row schema, atomic part files, resume ids.

pyarrow is an extra (``pip install aptviz[stats]``); :func:`require_pyarrow`
turns its absence into one clear line.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from aptviz._log import logger
from aptviz.datasets.rows import PERCENTILES, PSNR_COLUMNS
from aptviz.errors import MissingExtraError
from aptviz.output.atomic import write_stream_atomic

__all__ = [
    "PSNR_FIELDS",
    "ROW_FIELDS",
    "MissingExtraError",
    "PartWriter",
    "existing_row_ids",
    "part_files",
    "require_pyarrow",
    "row_fields",
    "row_schema",
]

PART_GLOB = "part-*.parquet"

_I, _F, _S, _LI, _LF = "int64", "float64", "string", "list<int64>", "list<float64>"
#: Column name -> Arrow type, in file order.
ROW_FIELDS: dict[str, str] = {
    "path": _S,
    "status": _S,
    "error": _S,
    "selection": _S,
    "method": _S,
    "alpha": _F,
    "thresholds": _LF,
    "original_width": _I,
    "original_height": _I,
    "resized_width": _I,
    "resized_height": _I,
    "frames": _I,
    "scales": _LI,
    "tokens_by_scale": _LI,
    "vit_tokens": _I,
    "base_small_tokens": _I,
    "retention": _F,
    "target_retention": _F,
    "llm_tokens": _I,
    "llm_tokens_uniform": _I,
    "llm_retention": _F,
    "budget": _I,
    "budget_base_tokens": _I,
    "budget_k": _I,
    "importance": _S,
    "aggregate": _S,
    "importance_mean": _LF,
    "importance_min": _LF,
    "importance_max": _LF,
    **{f"importance_p{q}": _LF for q in PERCENTILES},
    "pad_cells": _LI,
    "source": _S,
    "shard": _S,
    "member": _S,
    "input_size": _I,
    "input_mtime_ns": _I,
    "input_key": _S,
    "run_key": _S,
    "row_id": _I,
}
#: The columns ``--psnr`` adds, placed after ``llm_retention``.
PSNR_FIELDS: dict[str, str] = dict(zip(PSNR_COLUMNS, (_F, _I, _F)))


def row_fields(psnr: bool = False) -> dict[str, str]:
    """Column name -> Arrow type, in file order: :data:`ROW_FIELDS`, plus :data:`PSNR_FIELDS` with ``psnr``.

    Examples
    --------
    >>> row_fields() == ROW_FIELDS
    True
    >>> names = list(row_fields(psnr=True)); names[names.index("llm_retention") + 1]
    'psnr_apt'
    """
    if not psnr:
        return ROW_FIELDS
    out: dict[str, str] = {}
    for name, t in ROW_FIELDS.items():
        out[name] = t
        if name == "llm_retention":
            out.update(PSNR_FIELDS)
    return out


def require_pyarrow():
    """Import pyarrow, or raise one line naming the extra that installs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("aptviz stats needs pyarrow: pip install 'aptviz[stats]'") from exc
    return pyarrow


def row_schema(psnr: bool = False):
    """The Arrow schema of the rows (stable whatever the number of scales; ``psnr`` adds its columns)."""
    pa = require_pyarrow()
    types = {
        _I: pa.int64(),
        _F: pa.float64(),
        _S: pa.string(),
        _LI: pa.list_(pa.int64()),
        _LF: pa.list_(pa.float64()),
    }
    return pa.schema([(name, types[t]) for name, t in row_fields(psnr).items()])


def rows_to_table(rows: list[dict], psnr: bool = False):
    """Rows (dicts from :mod:`aptviz.datasets.rows`) as an Arrow table with :func:`row_schema`."""
    pa = require_pyarrow()
    return pa.Table.from_pylist(rows, schema=row_schema(psnr))


def part_files(out: str | Path) -> list[Path]:
    """Complete part files of a stats dataset, sorted (temporary files are hidden and left out)."""
    return sorted(Path(out).glob(PART_GLOB))


def existing_row_ids(out: str | Path) -> np.ndarray:
    """Sorted ``row_id`` values already in OUT (8 bytes per row; no Python object per row).

    A part that cannot be read is skipped with a warning: its images are redone.
    """
    pq = require_pyarrow().parquet
    chunks = [np.empty(0, dtype=np.int64)]
    for f in part_files(out):
        try:
            col = pq.read_table(f, columns=["row_id"]).column("row_id")
        except Exception as exc:
            logger.warning("{}: unreadable part, its images are redone ({})", f, exc)
            continue
        chunks.append(col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
    return np.unique(np.concatenate(chunks))


def contains(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """Element-wise membership of ``ids`` in a sorted id array.

    Examples
    --------
    >>> contains(np.array([2, 5, 9]), [5, 6]).tolist()
    [True, False]
    """
    ids = np.asarray(ids, dtype=np.int64)
    if sorted_ids.size == 0:
        return np.zeros(ids.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
    return sorted_ids[pos] == ids


class PartWriter:
    """Collects rows and writes ``part-*.parquet`` files atomically (temp + rename).

    A part is written when ``rows_per_part`` rows are waiting, when
    ``seconds_per_part`` have passed since the last one, and on :meth:`close`;
    an interrupted run therefore leaves only complete parts, and loses at most
    the rows not yet flushed (their images are redone on the next run).
    """

    def __init__(
        self, out: str | Path, rows_per_part: int = 20000, seconds_per_part: float = 60.0, psnr: bool = False
    ):
        self.out = Path(out)  # created with the first part: a run that writes nothing leaves nothing
        self.psnr = psnr  # the PSNR columns in the schema
        self.rows_per_part = rows_per_part
        self.seconds_per_part = seconds_per_part
        self._tables: list = []
        self._waiting = 0
        self._last = time.monotonic()
        # unique per writer: runs of one process, or of several machines, never share a name
        self._stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self.parts: list[Path] = []
        self.rows_written = 0

    def add(self, rows) -> None:
        """Queue rows: a list of dicts or an Arrow table with :func:`row_schema`."""
        table = rows_to_table(rows, self.psnr) if isinstance(rows, list) else rows
        if table.num_rows == 0:
            return
        self._tables.append(table)
        self._waiting += table.num_rows
        if self._waiting >= self.rows_per_part or time.monotonic() - self._last >= self.seconds_per_part:
            self.flush()

    def flush(self) -> Path | None:
        """Write the waiting rows as one part file; returns its path (None when nothing waited)."""
        if not self._waiting:
            return None
        pa = require_pyarrow()
        table = pa.concat_tables(self._tables).cast(row_schema(self.psnr))
        name = f"part-{self._stamp}-{self._seq:05d}.parquet"
        final = write_stream_atomic(self.out / name, lambda fh: pa.parquet.write_table(table, fh, compression="zstd"))
        self._seq += 1
        self._tables, self._waiting, self._last = [], 0, time.monotonic()
        self.parts.append(final)
        self.rows_written += table.num_rows
        logger.debug("wrote {} ({} rows)", final, table.num_rows)
        return final

    def close(self) -> None:
        """Flush what is waiting."""
        self.flush()
