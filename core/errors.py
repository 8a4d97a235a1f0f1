"""The error type that separates a user's mistake from a bug.

A :class:`UserError` is raised deliberately, with a message that names what is
wrong (the file, key, flag or value) and what would be valid, so the user can
fix it without reading code: the ``bench`` command prints it as one line and
exits with status 2. Every other exception is a bug (or an environment
failure) and is shown with its traceback.

Concrete errors inherit from ``UserError`` *and* from the built-in they were
before (``ValueError``, ``KeyError``, ``FileNotFoundError``...), so existing
``except`` clauses keep catching them.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix from the message alone; the CLI prints it as one line, no traceback."""


def attach_log_path(exc: BaseException, path: object) -> None:
    """Remember on ``exc`` the log file that recorded it, for whoever reports the error to the user."""
    exc._ssl3d_log_path = path  # type: ignore[attr-defined]  # exceptions accept attributes; no wrapper type


def log_path_of(exc: BaseException) -> object | None:
    """The log file :func:`attach_log_path` recorded for ``exc``, or None."""
    return getattr(exc, "_ssl3d_log_path", None)
