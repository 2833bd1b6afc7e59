"""Exceptions raised by aptviz.

Every error that concerns one input image derives from :class:`InputError`,
so a batch can record it against that file and carry on.
"""


class AptvizError(Exception):
    """Base class of all aptviz errors."""


class InputError(AptvizError):
    """An input image cannot be processed (unreadable, corrupt, unsupported, ...)."""


class ParameterError(AptvizError, ValueError):
    """A parameter is outside its valid range (a usage error)."""
