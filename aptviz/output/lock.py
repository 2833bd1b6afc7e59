"""The output folder: the checks before a run uses it, and its lock (one run at a time per folder).

Every command that writes into an output folder (``aptviz``, ``aptviz stats``)
claims it the same way: :func:`check_not_an_input` (an output folder equal to
an input folder is refused), :func:`check_output` (created, writable) and
:func:`lock_output` (a second run on the same folder is refused at once with
"output folder is in use"). Each raises :class:`~aptviz.errors.ParameterError`
(a usage error, exit 2) with one line.
"""

from __future__ import annotations

import errno
import os
import pathlib  # noqa: F401 (doctest)
import tempfile  # noqa: F401 (doctest)
from collections.abc import Iterable
from pathlib import Path

from aptviz._text import text_path
from aptviz.errors import ParameterError

__all__ = [
    "OutputInUse", "OutputLock", "check_not_an_input", "check_output", "check_output_file", "lock_folder_of",
    "lock_output", "read_only_fs",
]  # fmt: skip


class OutputInUse(OSError):
    """Another live run holds the output folder."""


class OutputLock:
    """An exclusive lock on an output folder for the length of a run.

    ``OUTPUT/.aptviz.lock`` is locked with ``fcntl.lockf`` (a POSIX record
    lock: it belongs to this process only -- forked workers do not inherit it
    -- and the kernel releases it when the process dies, even by ``kill -9``).
    A second run on the same folder fails at once with :class:`OutputInUse`.
    On a read-only file system nothing can be written, so nothing is locked;
    :attr:`read_only` tells the caller.

    Examples
    --------
    >>> d = tempfile.mkdtemp()
    >>> with OutputLock(d) as lock:
    ...     lock.read_only
    False
    """

    NAME = ".aptviz.lock"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.read_only = False
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        path = self.folder / self.NAME
        try:
            # O_NOFOLLOW: a link planted as the lock file must not make the run truncate the file it points at
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.EROFS:
                self.read_only = True
                return self
            raise
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                holder = _read_pid(path)
                who = f" (pid {holder})" if holder else ""
                raise OutputInUse(exc.errno, f"output folder is in use by another aptviz run{who}") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (removing it would race)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def lock_output(output: str | Path) -> OutputLock:
    """Take ``output``'s lock for this run; :class:`ParameterError` when another run holds it.

    The lock is a POSIX record lock: another process that asks for it is
    refused at once ("output folder is in use by another aptviz run (pid N)").

    Examples
    --------
    >>> lock = lock_output(tempfile.mkdtemp())
    >>> lock.read_only, lock.release()
    (False, None)
    """
    try:
        return OutputLock(output).acquire()
    except OutputInUse as exc:
        raise ParameterError(f"{exc.strerror}: {text_path(output)}") from None
    except OSError as exc:
        raise ParameterError(f"cannot lock the output folder {text_path(output)!r}: {exc.strerror or exc}") from None


def check_output(output: str | Path) -> Path:
    """Create the output folder; :class:`ParameterError` when it cannot be used.

    A folder on a read-only file system is accepted here (resuming a complete
    output needs no writes); the caller refuses it when there is work to do.

    Examples
    --------
    >>> import pathlib
    >>> check_output(pathlib.Path(tempfile.mkdtemp()) / "new").is_dir()
    True
    """
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            where = text_path(output)
            raise ParameterError(f"cannot create the output folder {where!r}: read-only file system") from None
        raise ParameterError(f"cannot use {text_path(output)!r} as the output folder: {exc.strerror or exc}") from None
    if not os.access(output, os.W_OK | os.X_OK) and not read_only_fs(output):
        raise ParameterError(f"cannot write to the output folder {text_path(output)!r}: permission denied")
    return output


def read_only_fs(path: str | Path) -> bool:
    """Whether ``path`` lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - not POSIX
        return False


def check_not_an_input(inputs: Iterable[str | Path], output: str | Path) -> None:
    """An output folder that is one of the input folders would mix outputs with inputs: :class:`ParameterError`.

    Examples
    --------
    >>> check_not_an_input(["."], ".")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: the output folder '.' is also an input folder; choose another -o/--output
    """
    target = Path(output).resolve()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir() and p.resolve() == target:
            raise ParameterError(
                f"the output folder {text_path(output)!r} is also an input folder; choose another -o/--output"
            )


def check_output_file(output: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """A single output file (``aptviz explore -o``) that may be replaced: :class:`ParameterError` otherwise.

    Refused: one of ``inputs`` (the same file, by device and inode: a hard
    link or a symbolic link to an input is the input), and anything that
    exists and is not a regular file (a folder, ``/dev/null``, a FIFO): the
    atomic write renames over it, which would replace the device itself.

    Examples
    --------
    >>> check_output_file("/dev/null")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: cannot write '/dev/null': not a regular file; choose another -o/--output
    """
    import stat

    output = Path(output)
    try:
        st = os.stat(output)
    except FileNotFoundError:
        return output
    except OSError as exc:
        raise ParameterError(f"cannot write {text_path(output)!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ParameterError(f"cannot write {text_path(output)!r}: not a regular file; choose another -o/--output")
    for raw in inputs:
        try:
            other = os.stat(raw)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise ParameterError(f"the output {text_path(output)!r} is also an input; choose another -o/--output")
    return output


def lock_folder_of(output: str | Path) -> OutputLock | None:
    """The lock of the output folder ``output`` is written into, when that folder is an aptviz output folder.

    A file written into an output folder (``aptviz explore -o OUT/report.html``)
    must not race a run there: the folder's lock is taken (None when the folder
    has no lock file, so that no lock file is left in an ordinary folder).
    :class:`ParameterError` ("output folder is in use ...") when a run holds it.

    Examples
    --------
    >>> lock_folder_of(pathlib.Path(tempfile.mkdtemp()) / "explore.html") is None
    True
    """
    folder = Path(output).parent
    if not (folder / OutputLock.NAME).is_file():
        return None
    return lock_output(folder)
