"""The package logger.

aptviz logs through loguru and, as a library, stays silent until the
application turns it on (``logger.enable("aptviz")``, as the command does).
Imported by the modules that log, not by ``aptviz/__init__``, so that
``aptviz --help`` does not pay for loguru.
"""

from loguru import logger

logger.disable("aptviz")

__all__ = ["logger"]
