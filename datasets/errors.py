"""Errors raised by dataset readers and preparation."""

from __future__ import annotations

import os

from ssl3d.core.errors import UserError


class DataFileError(UserError, ValueError):
    """A missing, unreadable or malformed data file; names the file and what is wrong.

    Args:
        path: the offending file.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetNotPreparedError(UserError, FileNotFoundError):
    """A real dataset whose files are not on disk yet; says how to prepare it."""


class DatasetRequestError(UserError, ValueError):
    """A request a dataset cannot serve (a modality it lacks, a folder it would overwrite); says what would work."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A path the user named (``--from``) does not exist."""
