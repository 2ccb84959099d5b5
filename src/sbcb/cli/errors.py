"""The CLI's user-facing error (its own module, so subcommands never import `sbcb.cli.main`)."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: printed as `error: ...` without a traceback, exit code 2."""
