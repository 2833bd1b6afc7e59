"""Dataset inputs for ``aptviz stats``: image files, Parquet shards, WebDataset tars.

The driver only lists what is there (:func:`iter_units`: file stats, Parquet
footers, tar headers) and groups it into small :class:`Task` objects; a worker
reads the bytes of a task's images itself (:func:`run_task`), so image bytes
never pass through the driver and memory stays bounded by one task per worker.
Tasks are plain JSON-able tuples, cheap to send to a process pool or a Ray
cluster.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from aptviz._log import logger
from aptviz.compute.params import Params, RunSpec
from aptviz.datasets.rows import InputRef, failed_rows, image_rows
from aptviz.compute.loading import check_regular
from aptviz.errors import InputError
from aptviz.runs.scan import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, scan_inputs

__all__ = ["TAR_IMAGE_EXTENSIONS", "Task", "Unit", "chunk_tasks", "iter_units", "run_task"]

TAR_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
PARQUET_EXTENSIONS = frozenset({".parquet"})
TAR_EXTENSIONS = frozenset({".tar"})
INPUT_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | PARQUET_EXTENSIONS | TAR_EXTENSIONS


@dataclass(frozen=True)
class Unit:
    """One image of the input and where its bytes are.

    ``locator`` is ``()`` for a file, ``(row_group, index_in_group)`` for a
    Parquet row and ``(offset, size)`` of the member's data for a tar member.
    A unit with ``error`` set stands for an input that could not be listed
    (an unreadable shard): it becomes failed rows.
    """

    ref: InputRef
    locator: tuple = ()
    error: str | None = None


@dataclass(frozen=True)
class Task:
    """Units of one file or shard (one Parquet row group at most), processed together by a worker."""

    source: str
    shard: str | None
    image_column: str
    units: tuple[Unit, ...]

    def to_json(self) -> str:
        """Serialize (for Ray Data rows)."""
        return json.dumps(
            {
                "source": self.source,
                "shard": self.shard,
                "image_column": self.image_column,
                "units": [[list(_ref_fields(u.ref)), list(u.locator), u.error] for u in self.units],
            },
            ensure_ascii=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Task:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        units = tuple(Unit(InputRef(*ref), tuple(loc), err) for ref, loc, err in d["units"])
        return cls(d["source"], d["shard"], d["image_column"], units)


def _ref_fields(ref: InputRef) -> tuple:
    # file names that are not UTF-8 survive JSON as surrogate escapes
    return (ref.source, ref.path, ref.member, ref.key_path, ref.size, ref.mtime_ns)


def _file_ref(source: str, path: Path, member: str | None = None) -> InputRef:
    st = path.stat()
    return InputRef(source, os.fsdecode(path), member, os.fsdecode(path.resolve()), st.st_size, st.st_mtime_ns)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in PARQUET_EXTENSIONS:
        return "parquet"
    if suffix in TAR_EXTENSIONS:
        return "tar"
    if suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
        return "file"
    return None


def _unreadable(source: str, path: Path, error: str) -> Unit:
    try:
        ref = _file_ref(source, path)
    except OSError:
        ref = InputRef(source, os.fsdecode(path), None, os.fsdecode(path.absolute()), -1, -1)
    return Unit(ref, (), error)


def _parquet_units(path: Path, image_column: str) -> Iterator[Unit]:
    from aptviz.datasets.parquet import require_pyarrow

    pq = require_pyarrow().parquet
    try:
        meta = pq.ParquetFile(path).metadata
        names = meta.schema.to_arrow_schema().names
    except Exception as exc:
        yield _unreadable("parquet", path, f"cannot read Parquet file: {exc}")
        return
    if image_column not in names:
        yield _unreadable("parquet", path, f"no column {image_column!r} (columns: {', '.join(names)})")
        return
    shard = _file_ref("parquet", path)
    row = 0
    for rg in range(meta.num_row_groups):
        for i in range(meta.row_group(rg).num_rows):
            yield Unit(replace(shard, member=str(row)), (rg, i))
            row += 1


#: What reading a damaged tar raises: a base-256 size or offset field past 2**63 makes tarfile's seek raise
#: ValueError ("cannot fit 'int' into an offset-sized integer") or OverflowError, not TarError.
TAR_ERRORS = (tarfile.TarError, OSError, ValueError, OverflowError)


def _tar_members(path: Path) -> tuple[list[tarfile.TarInfo], str | None]:
    """The file members of a tar, and why the listing stopped early (a truncated or damaged tar), if it did."""
    members: list[tarfile.TarInfo] = []
    with tarfile.open(path, "r:") as tar:
        try:
            for m in tar:
                if m.isfile():
                    members.append(m)
        except TAR_ERRORS as exc:
            if not members:
                raise
            last = members[-1]
            stored = sum(k for _, k in last.sparse) if last.sparse else last.size
            if last.offset_data + stored > path.stat().st_size:  # cut inside the last member: its own row says so
                return members, None
            return members, f"cannot read the rest of the tar file after {last.name!r}: {exc}"
        end = tar.offset  # where the listing stopped: the end-of-archive zeros, or a header tarfile gave up on
    with open(path, "rb") as f:
        f.seek(end)
        rest = f.read(1 << 20)
    if rest.strip(b"\0"):
        after = repr(members[-1].name) if members else "its start"
        return members, f"cannot read the rest of the tar file after {after}: truncated or damaged header at byte {end}"
    return members, None


def _tar_units(path: Path) -> Iterator[Unit]:
    """One unit per image member; a member name seen before becomes ``name#2``, ``name#3``... (its own row)."""
    try:
        members, stopped = _tar_members(path)
    except TAR_ERRORS as exc:
        yield _unreadable("tar", path, f"cannot read tar file: {exc}")
        return
    shard = _file_ref("tar", path)
    used: set[str] = set()
    for m in members:
        if Path(m.name).suffix.lower() not in TAR_IMAGE_EXTENSIONS:
            continue
        name, n = m.name, 1
        while name in used:
            n += 1
            name = f"{m.name}#{n}"
        used.add(name)
        if name != m.name:
            logger.debug("{}: duplicate member {!r} read as {!r}", os.fsdecode(path), m.name, name)
        # a GNU/PAX sparse member: its data pieces are stored one after another from offset_data
        pieces = [[int(o), int(k)] for o, k in m.sparse if k] if m.sparse is not None else None
        yield Unit(replace(shard, member=name), (m.offset_data, m.size) + ((pieces,) if pieces is not None else ()))
    if stopped is not None:
        yield Unit(shard, (), stopped)


def iter_units(
    inputs: Iterable[str | Path],
    recursive: bool = False,
    image_column: str = "image",
    exclude: str | Path | None = None,
) -> Iterator[Unit]:
    """Every image of the inputs, in order, each input identity once.

    Parameters
    ----------
    inputs : iterable of str or Path
        Image files, ``.parquet`` files, ``.tar`` shards and folders of them.
    recursive : bool
        Scan sub-folders too.
    image_column : str
        Parquet column holding the images: binary, or a ``{bytes, path}`` struct.
    exclude : str or Path, optional
        A folder never scanned (the output dataset).

    Yields
    ------
    Unit
        Missing inputs and unreadable shards come as units with ``error`` set.
    """
    seen: set[str] = set()
    for found in scan_inputs(inputs, recursive, INPUT_EXTENSIONS, exclude, what="images, Parquet or tar files"):
        if found.error is not None:
            yield _unreadable("file", found.path, found.error)
            continue
        for unit in _units_of(found.path, image_column):
            if unit.ref.key not in seen:
                seen.add(unit.ref.key)
                yield unit


def _units_of(path: Path, image_column: str) -> Iterator[Unit]:
    """The units of one file: an image, or a shard's images; what is no regular file is one failed unit."""
    kind = _kind(path) or "file"
    try:
        check_regular(path)  # a FIFO named x.tar is never opened: that would block forever
    except InputError as exc:
        yield _unreadable(kind, path, str(exc))
        return
    if kind == "parquet":
        yield from _parquet_units(path, image_column)
    elif kind == "tar":
        yield from _tar_units(path)
    else:
        yield Unit(_file_ref("file", path))


def chunk_tasks(units: Iterable[Unit], image_column: str = "image", size: int = 8) -> Iterator[Task]:
    """Group consecutive units of one shard (and Parquet row group) into tasks of at most ``size``."""
    batch: list[Unit] = []
    group = None
    for unit in units:
        g = (unit.ref.source, unit.ref.path if unit.ref.source != "file" else None, unit.locator[:1])
        if batch and (g != group or len(batch) >= size):
            yield Task(group[0], group[1], image_column, tuple(batch))
            batch = []
        batch.append(unit)
        group = g
    if batch:
        yield Task(group[0], group[1], image_column, tuple(batch))


ERROR_CHARS = 300
"""Error texts taken from the data (a Parquet cell, a path in it) are cut to this many characters."""


def _short(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was.

    Examples
    --------
    >>> _short("x" * 400, 10)
    'xxxxxxxxxx... (400 characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parquet_value(value) -> bytes | str:
    """Image bytes from a Parquet cell (binary, or the Hugging Face ``{bytes, path}`` struct), or why not."""
    if isinstance(value, dict):
        data = value.get("bytes")
        if isinstance(data, bytes | bytearray) and data:
            return bytes(data)
        if data is not None and not isinstance(data, bytes | bytearray):
            return f"image struct field 'bytes' holds {type(data).__name__}, not bytes"
        path = value.get("path")
        return "no image bytes in this row" + (f" (only a path: {_short(str(path))})" if path else "")
    if value is None:
        return "no image in this row (null)"
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return f"image column holds {type(value).__name__}, not bytes"


def _read_parquet_task(task: Task, limit: int | None = None) -> Iterable[bytes | str]:
    """The image cells of a task's rows, read a few rows at a time (not the whole row group).

    The file is streamed (``buffer_size``, no pre-buffering) in batches of
    the task's span, so memory holds one batch and the pages under it, not
    every image of a large row group (``--max-memory`` plans for one task).
    The cells come one at a time, in batches of about :data:`BATCH_BYTES`.
    A page is read whole, though: a row group whose pages need more than
    ``limit`` bytes (:func:`aptviz.datasets.pages.read_bytes`) is not read,
    its rows fail with one line saying so.
    """
    from aptviz.datasets.pages import read_bytes
    from aptviz.datasets.parquet import require_pyarrow

    pq = require_pyarrow().parquet
    rg = task.units[0].locator[0]
    wanted = [u.locator[1] for u in task.units]
    need = read_bytes(os.fspath(task.shard), rg, task.image_column) if limit is not None else None
    if need is not None and need > limit:
        from aptviz.runs.memory import format_bytes

        return [
            f"Parquet row group {rg}: its pages need {format_bytes(need)} to be read (a page is read whole), "
            f"more than the {format_bytes(limit)} --max-memory leaves a worker for it; raise --max-memory, "
            "or write the file with smaller row groups or pages"
        ] * len(wanted)
    f = pq.ParquetFile(task.shard, buffer_size=1 << 20, pre_buffer=False)
    meta = f.metadata.row_group(rg)
    leaves = [meta.column(i) for i in range(meta.num_columns)]
    prefix = task.image_column + "."
    stored = sum(c.total_uncompressed_size for c in leaves if (c.path_in_schema + ".").startswith(prefix))
    per_row = max(1, stored // max(1, meta.num_rows))
    batch = max(1, min(max(wanted) + 1 - min(wanted), BATCH_BYTES // per_row))
    if wanted != sorted(set(wanted)):  # not from chunk_tasks: read them all, then give them in order
        cells = dict(_cells(f, rg, task.image_column, sorted(set(wanted)), batch))
        return [cells.get(i, ROW_MISSING) for i in wanted]
    return (cell for _, cell in _cells(f, rg, task.image_column, wanted, batch))


BATCH_BYTES = 8 << 20
"""Rows a Parquet reader turns into Arrow at once: about this many bytes (one row when rows are larger;
a batch of large images held whole, with its Arrow buffers grown by doubling, took four times their size)."""

ROW_MISSING = "row missing from its row group"


def _cells(f, rg: int, column: str, rows: list[int], batch: int) -> Iterator[tuple[int, bytes | str]]:
    """``(row, image bytes or why not)`` for the ascending ``rows`` of row group ``rg``, one at a time.

    Batches of ``batch`` rows; each row is given before the next batch is
    read, so memory holds one batch and the image being computed.
    """
    at, seen = 0, 0
    for chunk in f.iter_batches(batch_size=batch, row_groups=[rg], columns=[column], use_threads=False):
        first, seen = seen, seen + chunk.num_rows
        values = chunk.column(0)
        while at < len(rows) and rows[at] < seen:
            yield rows[at], _parquet_value(values[rows[at] - first].as_py())
            at += 1
        if at == len(rows):
            return
    yield from ((i, ROW_MISSING) for i in rows[at:])


MAX_SPARSE_BYTES = 1 << 30
"""A sparse tar member is expanded in memory up to this size (its header may claim any size: holes cost
nothing on disk)."""


def _read_member(f, locator: tuple) -> bytes | str:
    """A tar member's bytes: ``(offset, size)``, or ``(offset, size, pieces)`` for a sparse member."""
    offset, size = locator[:2]
    stored = sum(length for _, length in locator[2]) if len(locator) > 2 else size
    if offset + stored > os.fstat(f.fileno()).st_size:  # a size field past the file's end: read nothing, hold nothing
        return "truncated tar member"
    f.seek(offset)
    if len(locator) == 2:
        data = f.read(size)
        return data if len(data) == size else "truncated tar member"
    if size > MAX_SPARSE_BYTES:  # mostly holes: the zeros would be made in memory
        return f"sparse tar member of {size} bytes (at most {MAX_SPARSE_BYTES} are read)"
    out = bytearray(size)  # the holes read as zeros, as tar -x writes them
    for at, length in locator[2]:  # the stored pieces come one after another
        piece = f.read(length)
        if len(piece) != length or at + length > size:
            return "truncated tar member"
        out[at : at + length] = piece
    return bytes(out)


def _read_tar_task(task: Task) -> list[bytes | str]:
    with open(task.shard, "rb") as f:
        return [_read_member(f, u.locator) for u in task.units]


def run_task(
    task: Task, params: Params, runs: list[RunSpec], max_image_pixels: int | None = None, fidelity: bool = False
) -> list[dict]:
    """The rows of every image of a task (the per-image function of both engines).

    Never raises for bad input: a shard that cannot be read gives failed rows
    for its images. ``max_image_pixels`` is the decompression-bomb limit
    (default: the main command's, from ``params.max_pixels``); ``fidelity`` adds
    the PSNR and SSIM columns (:func:`aptviz.datasets.rows.image_rows`).
    """
    todo = [u for u in task.units if u.error is None]
    rows: list[dict] = []
    for u in task.units:
        if u.error is not None:
            logger.debug("{}: {}", u.ref.display, u.error)
            rows += failed_rows(u.ref, params, runs, u.error, fidelity)
    if not todo:
        return rows
    if task.source == "file":
        sources: list = [Path(u.ref.path) for u in todo]
    else:
        todo_task = Task(task.source, task.shard, task.image_column, tuple(todo))
        try:
            if task.source == "parquet":
                sources = _read_parquet_task(todo_task, read_limit(params, max_image_pixels))
            else:
                sources = _read_tar_task(todo_task)
        except Exception as exc:
            error = f"cannot read {task.source} shard: {type(exc).__name__}: {exc}"
            sources = [error] * len(todo)
    for u, src in zip(todo, _guarded(sources, len(todo), task.source)):
        if isinstance(src, str):  # an error message instead of bytes
            logger.debug("{}: {}", u.ref.display, src)
            rows += failed_rows(u.ref, params, runs, src, fidelity)
        else:
            rows += image_rows(src, u.ref, params, runs, max_image_pixels, fidelity)
    return rows


def _guarded(sources: Iterable, count: int, source: str) -> Iterator[bytes | str | Path]:
    """``sources``, and in place of those it cannot give (a shard failing midway), the reason."""
    given = 0
    try:
        for src in sources:
            given += 1
            yield src
    except Exception as exc:
        error = f"cannot read {source} shard: {type(exc).__name__}: {exc}"
        yield from [error] * (count - given)


def read_limit(params: Params, max_image_pixels: int | None = None) -> int:
    """Bytes a worker may hold to read a shard's pages: its decode budget (:mod:`aptviz.runs.memory`).

    The pages are read, and freed, before the task's images are decoded, in
    the room the memory plan gives the decode of the largest image allowed.

    Examples
    --------
    >>> read_limit(Params(), 24_000_000) // 1_000_000
    336
    """
    from aptviz.compute.loading import decode_limit
    from aptviz.runs.memory import DECODE_BYTES_PER_PIXEL

    return DECODE_BYTES_PER_PIXEL * (max_image_pixels or decode_limit(params.max_pixels))
