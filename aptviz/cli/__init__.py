"""The command line: parses options, calls the library, prints.

``aptviz.cli:main`` is the console entry point. Subcommands are imported only
when named, so ``aptviz --help`` stays fast.

May import: any aptviz package. Nothing imports it.
"""

from aptviz.cli.command import SUBCOMMANDS, app, main

__all__ = ["SUBCOMMANDS", "app", "main"]
