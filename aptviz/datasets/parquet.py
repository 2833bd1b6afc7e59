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
from aptviz.datasets.rows import FIDELITY_COLUMNS, PERCENTILES
from aptviz.errors import MissingExtraError
from aptviz.output.atomic import write_stream_atomic

__all__ = [
    "FIDELITY_FIELDS",
    "ROW_FIELDS",
    "MissingExtraError",
    "PartWriter",
    "arrow_column",
    "existing_row_ids",
    "int64_values",
    "part_files",
    "require_pyarrow",
    "row_fields",
    "row_schema",
    "rows_to_table",
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
    "model": _S,
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
#: The columns ``--fidelity`` adds, placed after ``llm_retention``.
FIDELITY_FIELDS: dict[str, str] = dict(zip(FIDELITY_COLUMNS, (_F, _I, _F, _F, _F, _I, _F, _F)))


def row_fields(fidelity: bool = False) -> dict[str, str]:
    """Column name -> Arrow type, in file order: :data:`ROW_FIELDS`, plus :data:`FIDELITY_FIELDS` with ``fidelity``.

    Examples
    --------
    >>> row_fields() == ROW_FIELDS
    True
    >>> names = list(row_fields(fidelity=True)); names[names.index("llm_retention") + 1]
    'psnr_apt'
    """
    if not fidelity:
        return ROW_FIELDS
    out: dict[str, str] = {}
    for name, t in ROW_FIELDS.items():
        out[name] = t
        if name == "llm_retention":
            out.update(FIDELITY_FIELDS)
    return out


def require_pyarrow():
    """Import pyarrow, or raise one line naming the extra that installs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("aptviz stats needs pyarrow: pip install 'aptviz[stats]'") from exc
    return pyarrow


def row_schema(fidelity: bool = False):
    """The Arrow schema of the rows (stable whatever the number of scales; ``fidelity`` adds its columns)."""
    pa = require_pyarrow()
    types = {
        _I: pa.int64(),
        _F: pa.float64(),
        _S: pa.string(),
        _LI: pa.list_(pa.int64()),
        _LF: pa.list_(pa.float64()),
    }
    return pa.schema([(name, types[t]) for name, t in row_fields(fidelity).items()])


def rows_to_table(rows: list[dict], fidelity: bool = False):
    """Rows (dicts from :mod:`aptviz.datasets.rows`) as an Arrow table with :func:`row_schema`.

    The columns are built from NumPy buffers (:func:`arrow_column`), not with
    ``pa.array`` or ``Table.from_pylist``: those import pandas when it is
    installed (Ray Data installs it), half a second of every ``aptviz stats``.
    A key missing from a row is a null, as with ``from_pylist``.

    Examples
    --------
    >>> t = rows_to_table([{"path": "a.png", "scales": [14, 28], "alpha": 0.5}, {"path": None}])
    >>> t.num_rows, t.column("path").to_pylist(), t.column("scales").to_pylist(), t.column("alpha").to_pylist()
    (2, ['a.png', None], [[14, 28], None], [0.5, None])
    """
    pa = require_pyarrow()
    schema = row_schema(fidelity)
    columns = [arrow_column([r.get(name) for r in rows], kind, name) for name, kind in row_fields(fidelity).items()]
    return pa.Table.from_arrays(columns, schema=schema)


def arrow_column(values: list, kind: str, name: str = "column"):
    """An Arrow array of ``kind`` (a :data:`ROW_FIELDS` type) from Python values (None: null), without pandas.

    Examples
    --------
    >>> arrow_column([1, None, 3], "int64").to_pylist()
    [1, None, 3]
    >>> arrow_column([[1.5], None, []], "list<float64>").to_pylist()
    [[1.5], None, []]
    >>> arrow_column(["é", None], "string").to_pylist()
    ['é', None]
    """
    pa = require_pyarrow()
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    validity, nulls = _validity(pa, present)
    if kind == _S:
        try:
            encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
        except AttributeError:
            raise TypeError(f"column {name}: expected strings") from None
        offsets = _offsets(map(len, encoded), len(values), name)
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(pa.string(), len(values), buffers, nulls)
    if kind in (_LI, _LF):
        offsets = _offsets((0 if v is None else len(v) for v in values), len(values), name)
        child = arrow_column([x for v in values if v is not None for x in v], kind[5:-1], name)
        return pa.Array.from_buffers(
            pa.list_(child.type), len(values), [validity, pa.py_buffer(offsets)], nulls, children=[child]
        )
    data = np.array([0 if v is None else v for v in values] or np.empty(0, np.int64))
    if data.dtype.kind not in ("iub" if kind == _I else "iubf"):
        raise TypeError(f"column {name}: expected {'integers' if kind == _I else 'numbers'}, got {data.dtype}")
    data = data.astype(np.int64 if kind == _I else np.float64, copy=False)
    arrow_type = pa.int64() if kind == _I else pa.float64()
    return pa.Array.from_buffers(arrow_type, len(values), [validity, pa.py_buffer(data)], nulls)


def _validity(pa, present: np.ndarray):
    """(Arrow validity bitmap, null count) of a presence mask; no bitmap when nothing is null."""
    nulls = int(present.size - np.count_nonzero(present))
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(present, bitorder="little")), nulls


def _offsets(lengths, count: int, name: str) -> np.ndarray:
    """int32 Arrow offsets (``count + 1`` of them) of values of these lengths."""
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.fromiter(lengths, dtype=np.int64, count=count), out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"column {name}: more than 2 GB in one part")
    return offsets.astype(np.int32)


def part_files(out: str | Path) -> list[Path]:
    """Complete part files of a stats dataset, sorted (temporary files are hidden and left out)."""
    return sorted(Path(out).glob(PART_GLOB))


def existing_row_ids(out: str | Path) -> np.ndarray:
    """Sorted ``row_id`` values already in OUT (8 bytes per row; no Python object per row).

    A part that cannot be read is skipped with a warning: its images are redone.
    Read with ``ParquetFile`` and the column's buffers (``pyarrow.dataset`` and
    ``to_numpy`` import pandas).
    """
    pq = require_pyarrow().parquet
    chunks = [np.empty(0, dtype=np.int64)]
    for f in part_files(out):
        try:
            col = pq.ParquetFile(f).read(columns=["row_id"]).column("row_id")
            chunks += [int64_values(chunk) for chunk in col.chunks]
        except Exception as exc:
            logger.warning("{}: unreadable part, its images are redone ({})", f, exc)
            continue
    return np.unique(np.concatenate(chunks))


def int64_values(array) -> np.ndarray:
    """The values of an Arrow int64 array without nulls as NumPy (a view of its buffer; no pandas).

    Examples
    --------
    >>> int64_values(arrow_column([4, 5, 6], "int64").slice(1)).tolist()
    [5, 6]
    """
    if array.null_count:
        raise ValueError("null values in an int64 column")
    data = np.frombuffer(array.buffers()[1], dtype=np.int64)
    return data[array.offset : array.offset + len(array)]


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
        self, out: str | Path, rows_per_part: int = 20000, seconds_per_part: float = 60.0, fidelity: bool = False
    ):
        self.out = Path(out)  # created with the first part: a run that writes nothing leaves nothing
        self.fidelity = fidelity  # the PSNR and SSIM columns in the schema
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
        table = rows_to_table(rows, self.fidelity) if isinstance(rows, list) else rows
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
        schema = row_schema(self.fidelity)
        table = pa.concat_tables(self._tables)
        if table.schema != schema:  # Ray's tables; a cast imports pyarrow.compute (0.1 s), so only when needed
            table = table.cast(schema)
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
