"""Crash-safe file writing: everything the project writes lands by rename.

A file is written to a temporary name in the same folder and moved into place
with :func:`os.replace`, which is atomic on POSIX and Windows, so a crash or a
SIGKILL never leaves a half-written file under the final name; a write that fails (a full disk)
removes its temporary file. Also here: the checks and one-line errors for folders that cannot be
written (:func:`check_folder`, :func:`write_failed`) and a log file handler that reports a failing
disk once instead of a traceback per record (:class:`QuietFileHandler`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ssl3d.core.errors import UserError


class WriteFailedError(UserError, OSError):
    """A file could not be written (a full disk, a read-only folder); nothing half-written is left."""


class UnusablePathError(UserError, OSError):
    """Where a file or folder must be written is of the other kind (a file, not a folder), or not writable."""


def os_error_reason(exc: OSError) -> str:
    """The cause of ``exc`` in words ('No space left on device'), without Python's ``[Errno n]`` and file name."""
    return exc.strerror or str(exc) or type(exc).__name__


def write_failed(path: str | os.PathLike[str], exc: OSError) -> WriteFailedError:
    """The one-line error for a failed write of ``path`` (the file meant, never its temporary name)."""
    return WriteFailedError(f"could not write {path} ({os_error_reason(exc)})")


def check_folder(path: str | os.PathLike[str], what: str, writable: bool = True) -> None:
    """Raise :class:`UnusablePathError` unless files can be written into folder ``path``; creates nothing.

    ``path``, or the nearest existing folder above it (where it would be created), must be a folder
    (and, with ``writable``, one the process may write into). ``what`` names where the path came from
    (``--results-dir``...).
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), Path("."))
    if not existing.is_dir():
        kind = "a file, not a folder" if existing.is_file() else "not a folder"
        where = f"{what} {path} is" if existing == path else f"{what} {path}: {existing} is"
        raise UnusablePathError(f"{where} {kind}")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise UnusablePathError(f"{what} {path}{where} is not writable; give a folder you can write into")


def check_file(path: str | os.PathLike[str], then: str = "") -> None:
    """Raise :class:`UnusablePathError` when a folder stands where the file ``path`` is read or written."""
    if Path(path).is_dir():
        raise UnusablePathError(f"{path} is a folder, not a file{then}")


class QuietFileHandler(logging.FileHandler):
    """A log file whose failing writes (a full disk) are said once, in one line, not as a traceback per record."""

    failed: OSError | None = None  # the first write that failed

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
        elif self.failed is None:
            self.failed = exc
            sys.stderr.write(f"warning: could not write {self.baseFilename} ({os_error_reason(exc)}); "
                             "the run goes on without its log\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):  # what is still buffered has nowhere to go; said above
            super().close()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600; results and caches are shared files
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):  # gone already (renamed), or its removal fails: keep the first error
            tmp.unlink()


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented, strict JSON to ``path`` atomically.

    NaN and infinities (a loss never computed, a metric without data) become
    ``null``: Python would write bare ``NaN``, which strict parsers reject.
    """
    text = json.dumps(_json_safe(payload), indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite numbers as ``None`` and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, numbers.Integral):  # bool included; numpy ints are not JSON-serialisable as they are
        return value if isinstance(value, (bool, int)) else int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return value


def move_aside(path: str | os.PathLike[str]) -> Path | None:
    """Rename a damaged file to ``<name>.corrupt-<UTC time>`` (kept for inspection); None if already gone."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target
