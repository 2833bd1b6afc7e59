"""The output folder's lock: one run at a time per folder."""

from __future__ import annotations

import errno
import os
import tempfile  # noqa: F401 (doctest)
from pathlib import Path


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
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
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
