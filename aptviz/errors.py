"""How things end: the exceptions raised by aptviz, the exit codes, the status words.

Every error that concerns one input image derives from :class:`InputError`,
so a batch can record it against that file and carry on. The process exit
codes of every command and the status vocabulary of results and rows
(:class:`Status`, :data:`ROW_OK`, :data:`ROW_FAILED`) are defined here, once.
"""

from enum import Enum

#: exit codes: all done, something failed, usage error, interrupted (Ctrl-C; SIGTERM gives 128 + 15)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


#: the status words written in files: summary.csv/json rows, ``aptviz stats`` rows, dataset views
ROW_OK, ROW_FAILED = "ok", "failed"


class Status(str, Enum):
    """What happened to one input of a run; files record its :attr:`word` (``ok`` or ``failed``).

    Examples
    --------
    >>> [s.word for s in Status]
    ['ok', 'ok', 'failed']
    """

    done = "done"  # computed and written in this run
    skipped = "skipped"  # already complete with the same parameters
    failed = ROW_FAILED

    def __str__(self) -> str:
        return self.value

    @property
    def word(self) -> str:
        """The status written in rows: ``ok`` (done or skipped) or ``failed``."""
        return ROW_FAILED if self is Status.failed else ROW_OK


def exit_code(failed: bool, interrupted: bool = False, stop_signal: int | None = None) -> int:
    """The exit code of a run: interrupted (130 for Ctrl-C, 128 + the signal else), failed, or ok.

    Examples
    --------
    >>> exit_code(False), exit_code(True), exit_code(True, True), exit_code(False, True, 15)
    (0, 1, 130, 143)
    """
    if interrupted:
        return EXIT_INTERRUPTED if stop_signal in (None, 2) else 128 + stop_signal
    return EXIT_FAILED if failed else EXIT_OK


class AptvizError(Exception):
    """Base class of all aptviz errors."""


class InputError(AptvizError):
    """An input image cannot be processed (unreadable, corrupt, unsupported, ...)."""


class ParameterError(AptvizError, ValueError):
    """A parameter is outside its valid range (a usage error)."""


class MissingExtraError(AptvizError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require_torch(feature: str):
    """Import and return torch, or raise :class:`MissingExtraError` naming the extra.

    Parameters
    ----------
    feature : str
        What needs torch, for the message (e.g. ``"--device cuda"``).
    """
    try:
        import torch
    except ImportError:
        raise MissingExtraError(f"{feature} needs torch, which is not installed: pip install 'aptviz[torch]'") from None
    return torch


class OutputError(AptvizError):
    """The output cannot be written (a full disk, a read-only file system): the run stops, with one line."""
