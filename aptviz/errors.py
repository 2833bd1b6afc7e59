"""Exceptions raised by aptviz.

Every error that concerns one input image derives from :class:`InputError`,
so a batch can record it against that file and carry on. The process exit
codes of every command are defined here, once.
"""

#: exit codes: all done, something failed, usage error, interrupted (Ctrl-C; SIGTERM gives 128 + 15)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
