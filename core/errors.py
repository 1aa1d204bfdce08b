"""The one kind of exception whose message is for the user.

A `UserError` is a problem the person using probeseg can fix: bad input, a missing file or weights, an
action the project's state does not allow yet. Its message says what went wrong and how to fix it; the web
UI shows it as it is and the CLI prints it as one line. Every other exception is a bug, whatever its type
(a ValueError from deep inside numpy included): it is logged with its traceback and reported as an
internal error, so a bug is never shown as if it were advice, and never lost.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error raised for the user (each package's own errors derive from it)."""


class InputError(UserError, ValueError):
    """A bad value from the user (a setting, a file's content) that no more specific error covers."""
