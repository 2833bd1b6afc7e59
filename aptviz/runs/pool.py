"""The one worker pool: every command that computes images in processes uses it.

:class:`WorkerPool` runs a module-level function over items (a batch's jobs,
``aptviz stats`` tasks, calibrate's images) in worker processes and yields
``(item, result)`` pairs in completion order:

* **recovery** -- when a worker dies (killed for memory, say), every item in
  flight is suspect: a fresh pool reruns them one at a time (split into
  smaller items first when ``split`` allows), so only an item that kills its
  worker alone becomes a failure, made by ``on_failure(item, message)``;
* **die with the parent** -- each worker dies when the main process dies,
  however it dies (``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread);
* **Ctrl-C and SIGTERM** -- workers ignore both; the main process stops the
  run: running items finish, queued ones are dropped. :func:`stop_on_sigterm`
  makes SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does.

At most ``2 * workers`` items are in flight, and items are taken from the
iterable only as slots free up (a stream of tasks is never listed whole).

Examples
--------
>>> list(WorkerPool(abs, workers=1).map([-1, 2]))
[(-1, 1), (2, 2)]
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import islice

from aptviz._log import logger

__all__ = ["STOP_SIGNALS", "WORKER_DIED", "WorkerPool", "default_workers", "init_worker", "stop_on_sigterm"]

WORKER_DIED = "worker process died (out of memory?)"

#: The signals that stop a run cleanly, as Ctrl-C does: SIGINT, SIGTERM, and SIGHUP (the terminal closed,
#: an ssh session dropped: sent to the whole process group, workers included).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def die_with_parent(parent: int) -> None:
    """Make this worker exit when the main process dies, however it dies (kill -9 included).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Everywhere: a daemon thread
    that exits the process once its parent is no longer ``parent``.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="aptviz-parent-watch", daemon=True).start()


def init_worker(level: str | None, parent: int | None = None) -> None:
    """Worker start-up: die with the parent, leave Ctrl-C and SIGTERM to it, one compute thread each."""
    if parent is not None:
        die_with_parent(parent)
    for signum in STOP_SIGNALS:  # the parent stops the run cleanly; it kills us if it dies
        signal.signal(signum, signal.SIG_IGN)
    from aptviz.compute.entropy import set_num_threads

    set_num_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if level is not None:
        logger.remove()
        logger.add(sys.stderr, level=level, format="{level}: {message}")
        logger.enable("aptviz")


class _Shield:
    """While the pool starts workers or hands them work, Ctrl-C and SIGTERM wait (see :func:`stop_on_sigterm`)."""

    depth = 0
    deferred = False


@contextmanager
def _shielded(raise_after: bool = True):
    """Defer the stop signals over a block: a KeyboardInterrupt raised inside ``fork()`` (an at-fork hook)
    or inside the executor's bookkeeping is swallowed or leaves it locked; here it is raised after the
    block (not when the run is ending anyway: ``raise_after`` False)."""
    _Shield.depth += 1
    try:
        yield
    finally:
        _Shield.depth -= 1
    if raise_after and _Shield.depth == 0 and _Shield.deferred:
        _Shield.deferred = False
        raise KeyboardInterrupt


@contextmanager
def stop_on_sigterm():
    """SIGTERM behaves like Ctrl-C: KeyboardInterrupt in the main thread; the signal is remembered.

    SIGHUP too (:data:`STOP_SIGNALS`): a closed terminal keeps the finished work.
    Yields the list the caught signal numbers go to (SIGINT, SIGTERM or SIGHUP). While
    the worker pool starts processes or submits work, the interrupt waits until
    it is done (raised then), so a stop never loses the signal or deadlocks the
    pool. Outside the main thread nothing changes (Python delivers signals there only).
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        caught.append(signum)
        if _Shield.depth:
            _Shield.deferred = True
        else:
            raise KeyboardInterrupt

    # SIGHUP already ignored (``nohup aptviz ...``): the run is meant to outlive the terminal, it stays ignored
    hangup = getattr(signal, "SIGHUP", None)
    stops = [s for s in STOP_SIGNALS if s != hangup or signal.getsignal(s) != signal.SIG_IGN]
    previous = {s: signal.signal(s, handler) for s in stops}
    try:
        yield caught
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _Shield.deferred = False


def _no_split(item) -> list:
    return [item]


class WorkerPool:
    """Run ``fn(item, *args)`` over items in worker processes, surviving workers that die.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by name).
    args : tuple
        Further arguments of every call.
    workers : int
        Processes; 1 (or fewer) runs every item in this process, without recovery.
    device : str
        ``cuda...`` starts workers with ``spawn`` (CUDA cannot fork), else ``fork``.
    log_level : str, optional
        Loguru level for the workers' messages.
    on_failure : callable, optional
        ``on_failure(item, message) -> result`` for an item whose worker died
        alone, or whose call raised in the worker. Default: re-raise.
    split : callable, optional
        ``split(item) -> list of items``: a dying item of several images is
        rerun image by image, so that only the image that kills its worker fails.
    """

    def __init__(
        self,
        fn: Callable,
        args: tuple = (),
        *,
        workers: int = 1,
        device: str = "cpu",
        log_level: str | None = None,
        on_failure: Callable | None = None,
        split: Callable[[object], list] | None = None,
    ):
        self.fn, self.args, self.workers = fn, args, max(1, workers)
        self._method = "spawn" if str(device).startswith("cuda") else "fork"
        self._log_level = log_level
        self._on_failure = on_failure
        self.split = split or _no_split

    def map(self, items: Iterable) -> Iterator[tuple[object, object]]:
        """``(item, result)`` per item, in completion order.

        On any exception in the caller (Ctrl-C, or the generator closed),
        running items finish, queued ones are dropped, and the exception goes on.
        """
        if self.workers <= 1:
            for item in items:
                yield item, self.fn(item, *self.args)
            return
        yield from _Run(self).results(iter(items))

    def new_executor(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context(self._method)
        initargs = (self._log_level, os.getpid())
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init_worker, initargs=initargs)

    def failure(self, item, message: str):
        if self._on_failure is None:
            raise RuntimeError(message)
        return self._on_failure(item, message)


class _Run:
    """The state of one :meth:`WorkerPool.map`: the executor, items in flight, suspects."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        with _shielded():
            self.executor = pool.new_executor()
        self.pending: dict[Future, object] = {}
        self.suspects: list = []  # in flight when a worker died: rerun one at a time
        self.broken = False

    def results(self, items: Iterator) -> Iterator[tuple[object, object]]:
        try:
            while self._fill(items):
                alone = len(self.pending) == 1  # a death then is this item's own
                done, _ = wait(self.pending, return_when=FIRST_COMPLETED)  # where Ctrl-C and SIGTERM land
                for fut in done:
                    item = self.pending.pop(fut)
                    outcome = self._outcome(fut, item, alone)
                    if outcome is not None:
                        yield outcome
                if self.broken:  # a fresh executor; what was in flight is rerun one at a time
                    self.suspects += self.pending.values()
                    self.pending.clear()
                    with _shielded():
                        self.executor.shutdown(wait=False, cancel_futures=True)
                        self.executor, self.broken = self.pool.new_executor(), False
        finally:
            with _shielded(raise_after=False):  # the run ends here anyway
                for fut in self.pending:
                    fut.cancel()
                self.executor.shutdown(wait=True, cancel_futures=True)

    def _fill(self, items: Iterator) -> bool:
        """Submit what may run now (workers start here: shielded); False when nothing is left to wait for."""
        if self.suspects:  # one at a time, alone in the pool
            todo = [self.suspects.pop(0)] if not self.pending else []
        else:
            todo = list(islice(items, 2 * self.pool.workers - len(self.pending)))
        with _shielded():
            for item in todo:
                self.pending[self.executor.submit(self.pool.fn, item, *self.pool.args)] = item
        return bool(self.pending)

    def _outcome(self, fut: Future, item, alone: bool) -> tuple[object, object] | None:
        try:
            return item, fut.result()
        except BrokenProcessPool:
            self.broken = True
            parts = self.pool.split(item)
            if not alone or len(parts) > 1:  # maybe another item killed the worker; or which image?
                self.suspects += [item] if not alone else parts
                return None
            return item, self.pool.failure(item, WORKER_DIED)
        except Exception as exc:
            return item, self.pool.failure(item, f"worker failed: {type(exc).__name__}: {exc}")
