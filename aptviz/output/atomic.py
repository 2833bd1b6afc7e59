"""Stage 6: writing files -- always to a temporary file first, then renamed.

A crash or Ctrl-C therefore never leaves a torn file behind: a reader sees
either the previous complete file or the new complete file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from aptviz._text import clean_text

__all__ = [
    "clean_stale_temp_files",
    "csv_cell",
    "csv_lines",
    "encode_image",
    "read_json",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_npz_atomic",
    "write_npz_stream_atomic",
    "write_stream_atomic",
]






def _temp_prefix(name: str) -> str:
    """``.<name>.<pid>-<start>.``: the owner of a temporary file is known from its name.

    ``start`` is the process's start time (Linux ``/proc``): a pid alone may
    be reused by another, live process after its writer was killed, and its
    temporary files were then never cleaned. Without ``/proc``, ``.<name>.<pid>.``.
    """
    pid = os.getpid()
    if pid not in _OWN_START:  # a process's start time never changes: /proc is read once per process
        _OWN_START[pid] = _start_time(pid)
    start = _OWN_START[pid]
    return f".{name}.{pid}." if start is None else f".{name}.{pid}-{start}."


#: ``{pid: start time}`` of this process (keyed by pid: a forked worker reads its own)
_OWN_START: dict[int, int | None] = {}


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), None if unknown.

    Examples
    --------
    >>> _start_time(os.getpid()) == _start_time(os.getpid()), _start_time(999999999)
    (True, None)
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner_alive(tag: str) -> bool:
    """Whether the writer named by a temporary file's ``<pid>`` or ``<pid>-<start>`` still runs.

    With a start time, a live process under the same pid that started at
    another time is not the writer (its pid was reused).

    Examples
    --------
    >>> me = _temp_prefix("x").split(".")[-2]
    >>> _owner_alive(me), _owner_alive(f"{os.getpid()}-1"), _owner_alive("abc"), _owner_alive("999999999")
    (True, False, False, False)
    """
    pid, _, start = tag.partition("-")
    if not pid.isdigit() or not (start == "" or start.isdigit()) or not _pid_alive(int(pid)):
        return False
    return start == "" or _start_time(int(pid)) in (None, int(start))


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie -- dead, not yet reaped -- does not).

    Examples
    --------
    >>> _pid_alive(os.getpid()), _pid_alive(0)
    (True, False)
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:  # Linux: a killed worker stays a zombie until its new parent reaps it
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def clean_stale_temp_files(folder: str | Path, depth: int = 3) -> int:
    """Remove temporary files (``.<name>.<pid>-<start>.*.tmp``) whose writing process is dead.

    Files of live processes (another run writing here) are left alone; a
    live process whose start time differs from the one in the name only
    reused the pid of a dead writer. Files
    whose name carries no pid (``.<name>.<random>.tmp``, from aptviz before
    0.2) are removed: the output lock (:class:`OutputLock`) guarantees that no
    other run writes in this folder. Errors (read-only file system) are
    ignored. Returns the number of files removed.

    Examples
    --------
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in (".x.png.999999999.ab.tmp", f".y.png.{os.getpid()}.cd.tmp", ".z.png.ef.tmp"):
    ...     _ = (d / name).write_bytes(b"")
    >>> clean_stale_temp_files(d), [p.name.split(".")[1] for p in d.iterdir()]
    (2, ['y'])
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0:
                    removed += clean_stale_temp_files(entry.path, depth - 1)
                continue
            name = entry.name
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            parts = name.split(".")  # "", name..., pid[-start], random, "tmp"
            if not (len(parts) >= 5 and _owner_alive(parts[-3])):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def write_stream_atomic(path: str | Path, fill: Callable[[BinaryIO], object]) -> Path:
    """Call ``fill(file)`` on a temporary file in the same folder, then rename it to ``path``.

    For content too large to hold in memory at once (written piece by piece).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_stream_atomic(d / "x.txt", lambda fh: fh.write(b"hi")).read_bytes()
    b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder.

    Parameters
    ----------
    path : str or Path
        Destination; its parent folders are created.
    data : bytes
        Full content.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_bytes_atomic(d / "a" / "x.txt", b"hi").read_bytes()
    b'hi'
    """
    return write_stream_atomic(path, lambda fh: fh.write(data))


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically (text that UTF-8 cannot encode made encodable).

    Examples
    --------
    >>> import tempfile, pathlib, os
    >>> p = write_json_atomic(pathlib.Path(tempfile.mkdtemp()) / "a.json", {"path": os.fsdecode(b"caf\\xe9")})
    >>> json.loads(p.read_text(encoding="utf-8"))["path"]
    'caf\\\\xe9'
    """
    try:  # the common case: every string encodes, and cleaning would change nothing
        data = (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from an OS name somewhere
        data = (json.dumps(clean_text(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    return write_bytes_atomic(path, data)


def read_json(path: str | Path):
    """Read a JSON file; None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is a formula to spreadsheet tools (CSV injection)."""


def csv_cell(value):
    """A value as a CSV cell: None empty, text cleaned, and text a spreadsheet would run as a formula quoted.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
    leading ``'`` (what spreadsheet tools expect to show it as text); numbers
    are left alone. JSON keeps the text as it is.

    Examples
    --------
    >>> csv_cell("=HYPERLINK(1)"), csv_cell("-x.png"), csv_cell(-1.5), csv_cell("a=b"), csv_cell(None)
    ("'=HYPERLINK(1)", "'-x.png", -1.5, 'a=b', '')
    """
    if value is None:
        return ""
    value = clean_text(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv_atomic(path: str | Path, rows: list[dict], columns: list[str]) -> Path:
    """Write ``rows`` (dicts) as CSV with the given columns, atomically (cells through :func:`csv_cell`)."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(columns)
    return write_bytes_atomic(path, (header.getvalue() + csv_lines(rows, columns)).encode("utf-8"))


#: What ``str.splitlines`` ends a line at; a CSV field holding one is quoted (Python's writer quotes only "\n").
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def csv_lines(rows: list[dict], columns: list[str]) -> str:
    """The CSV lines of ``rows`` (cells through :func:`csv_cell`), a field holding a line break quoted.

    Python's writer with ``lineterminator="\\n"`` leaves a field holding a
    carriage return bare: a reader then ends the row there, and the text after
    it (``\\r=1+1.png``) starts a cell of its own, past the formula guard.
    Rows without such a field are exactly what :class:`csv.DictWriter` writes.

    Examples
    --------
    >>> csv_lines([{"a": "x\\r=1+1", "b": 2}], ["a", "b"])
    '"x\\r=1+1",2\\n'
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        values = [csv_cell(row.get(k)) for k in columns]
        if not any(isinstance(v, str) and not LINE_BREAKS.isdisjoint(v) for v in values):
            writer.writerow(values)
            continue
        buf.write(",".join(_quoted_field(v) for v in values) + "\n")
    return buf.getvalue()


def _quoted_field(value) -> str:
    """One CSV field as Python's writer writes it alone, quoted when it holds a line break."""
    if isinstance(value, str) and not LINE_BREAKS.isdisjoint(value):
        return '"' + value.replace('"', '""') + '"'
    if value == "":
        return ""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([value])
    return buf.getvalue()[:-1]


def encode_image(rgb: np.ndarray, suffix: str, jpeg_quality: int = 95, chroma_444: bool = False) -> bytes:
    """Encode an RGB uint8 array as JPEG or PNG bytes (OpenCV, fast).

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8.
    suffix : {".jpg", ".jpeg", ".png"}
        Target format.
    jpeg_quality : int
        JPEG quality (0-100).
    chroma_444 : bool
        JPEG without chroma subsampling (4:4:4), so thin coloured lines keep
        their colour (4:2:0 averages a 2 px green line with its neighbours).

    Returns
    -------
    bytes
    """
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        if chroma_444:
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    elif suffix.lower() == ".png":
        # fast zlib level and the cheap "up" filter: 3x faster than adaptive filtering
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    else:
        raise ValueError(f"unsupported image suffix {suffix!r}")
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise OSError(f"could not encode {suffix} image")
    return buf.tobytes()


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write a compressed ``.npz`` atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def write_npz_stream_atomic(path: str | Path, arrays: Iterable[tuple[str, np.ndarray]]) -> Path:
    """Write a compressed ``.npz`` atomically, one array at a time.

    ``arrays`` may be a generator: each array is compressed straight into the
    temporary file as it comes, so only one needs to be in memory. The file
    is what :func:`numpy.savez_compressed` writes (``np.load`` reads it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_npz_stream_atomic(pathlib.Path(tempfile.mkdtemp()) / "a.npz", ((k, np.arange(3)) for k in "xy"))
    >>> sorted(np.load(p).files)
    ['x', 'y']
    """

    def fill(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, array in arrays:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    return write_stream_atomic(path, fill)






