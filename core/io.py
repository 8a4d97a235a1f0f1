"""Crash-safe file writing: everything the project writes lands by rename.

A file is written to a temporary name in the same folder and moved into place
with :func:`os.replace`, which is atomic on POSIX and Windows, so a crash or a
SIGKILL never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator


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
    os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600; results and caches are shared files
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
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
