"""Checkpoints that detect their own damage and keep the previous good state.

Every checkpoint holds, under :data:`CHECKSUM_KEY`, a blake2b digest of its
contents (every tensor's bytes, every other value's repr, in order). It is
recomputed on load, so a file that still unpickles but holds changed bytes is
caught as surely as a truncated one. Loading always uses ``weights_only=True``:
a file that needs more is refused, as damaged, never loaded with pickle.

The trainer keeps two states: before ``last.pt`` is replaced, the previous one
becomes ``prev.pt``. A damaged file is moved aside (``<name>.corrupt-<time>``)
with a warning naming it and what is wrong, and the next older state is used.
Checkpoints written before checksums existed load without the check.

**Published checkpoints** (``--set method.init_checkpoint=PATH``: a paper's released weights, in its code's
key layout) are read by :func:`read_published_checkpoint`, also with ``weights_only=True``, from the bytes
whose SHA-256 it returns, so the digest that enters the cache key and the result is that of what was loaded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch

from ssl3d.core.errors import UserError
from ssl3d.core.io import atomic_path, move_aside, os_error_reason

CHECKSUM_KEY = "checksum"
PREVIOUS_NAME = "prev.pt"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded or whose contents do not match its checksum; names the file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def previous_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Where the state before ``path`` is kept (``prev.pt`` next to it)."""
    return Path(path).with_name(PREVIOUS_NAME)


def state_digest(state: Any) -> str:
    """A digest of a (nested) state: identical before saving and after loading, on any device."""
    digest = hashlib.blake2b(digest_size=16)
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:  # numbers, strings, None: repr round-trips exactly through pickle
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Write ``state`` + its checksum to ``path`` atomically; with ``keep_previous`` the old file becomes prev.pt."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**state, CHECKSUM_KEY: state_digest(state)}, tmp)
        if keep_previous:
            try:
                os.replace(path, previous_checkpoint(path))
            except FileNotFoundError:  # the first epoch, or another writer rotated it
                pass


def load_checkpoint(path: str | os.PathLike[str], map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and verify its checksum.

    Raises:
        CorruptCheckpointError: unreadable, refused by the safe loader, or not matching its checksum.
    """
    state = _safe_load(path, path, map_location)
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != state_digest(state):
        raise CorruptCheckpointError(path, "its contents do not match their checksum (the file was changed or damaged)")
    return state


def _safe_load(source: str | os.PathLike[str] | BinaryIO, path: str | os.PathLike[str],
               map_location: torch.device | str) -> dict[str, Any]:
    """``torch.load(source, weights_only=True)`` as a dict; anything else raises :class:`CorruptCheckpointError`."""
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # `from None`: PyTorch's own text advises weights_only=False, wrong advice for a file that may be hostile
        raise CorruptCheckpointError(path, "damaged, or holds objects other than tensors and plain values "
                                           "(refused: unpickling them could run arbitrary code)") from None
    except Exception as exc:  # zip, unicode and EOF errors all mean the file is damaged
        raise CorruptCheckpointError(path, f"unreadable ({_first_sentence(exc)})") from exc
    if not isinstance(state, dict):
        raise CorruptCheckpointError(path, f"holds a {type(state).__name__}, not a checkpoint dict")
    return state


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).split(". ")[0].strip() or type(exc).__name__
    return "damaged file" if "weights_only" in text else text


def read_pretrain_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``pretrain_info`` of a saved method, memory-mapped: the pickled info is read, not the weights' bytes.

    Unchecked (no checksum: the weights are not read); callers use it for bookkeeping only.
    """
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("pretrain_info") or {}


def load_or_move_aside(path: str | os.PathLike[str], map_location: torch.device | str, log: logging.Logger,
                       then: str = "") -> dict[str, Any] | None:
    """The verified state in ``path``; None when it is missing or damaged (then moved aside with a warning).

    ``then`` completes the warning with what the caller does instead.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load_checkpoint(path, map_location)
    except CorruptCheckpointError as exc:
        log.warning("damaged checkpoint %s; moved it to %s%s", exc, move_aside(path), then)
        return None


def load_latest_good(path: str | os.PathLike[str], map_location: torch.device | str,
                     log: logging.Logger) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact state among ``path`` and its previous one, damaged ones moved aside with a warning.

    Returns (the file used, its state), or None when no intact state is left.
    """
    candidates = [c for c in (Path(path), previous_checkpoint(path)) if c.exists()]
    for candidate in candidates:
        state = load_or_move_aside(candidate, map_location, log)
        if state is not None:
            return candidate, state
    if candidates:
        log.warning("no intact checkpoint left in %s: starting over from the first epoch", Path(path).parent)
    return None


class PublishedCheckpointError(UserError, ValueError):
    """A published checkpoint that cannot be used: missing, unreadable, not a state dict, or a key or shape that
    does not fit the method (the first one named)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"method.init_checkpoint={self.path}: {reason}")


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A published checkpoint as read: its absolute path, the SHA-256 of its bytes, and their contents."""

    path: str
    sha256: str
    state: dict[str, Any]

    def record(self) -> dict[str, str]:
        """What a result records of it (``pretraining.init_checkpoint``)."""
        return {"path": self.path, "sha256": self.sha256}


# (real path, size, mtime, ctime, inode, device) -> digest, for this process. As git's index does, a digest is
# trusted only for a file last changed RACY_S before it was taken: a rewrite within a coarse timestamp's tick
# could otherwise keep all six and the old digest
_SHA256_SEEN: dict[tuple[Any, ...], str] = {}
RACY_S = 2.0


def _identity(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _remember(key: tuple[Any, ...], digest: str) -> None:
    if max(key[2], key[3]) < time.time_ns() - RACY_S * 1e9:
        _SHA256_SEEN[key] = digest


def _readable(path: str | os.PathLike[str]) -> Path:
    """``path``, checked to be a file; refused with what is there instead."""
    path = Path(path)
    if path.is_dir():
        raise PublishedCheckpointError(path, "is a folder; pass the checkpoint file")
    if not path.is_file():
        hint = (" (a leaderboard shows a checkpoint by its digest: pass the file's path)"
                if str(path).startswith("sha256:") else "")
        raise PublishedCheckpointError(path, f"no such file{hint}")
    return path


def published_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a published checkpoint file: hashed once per process while the file is unchanged (one
    changed in the last :data:`RACY_S` seconds is hashed at every call)."""
    path = _readable(path)
    try:
        key = _identity(path)
        if key in _SHA256_SEEN:
            return _SHA256_SEEN[key]
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    except OSError as exc:
        raise PublishedCheckpointError(path, f"unreadable ({os_error_reason(exc)})") from exc
    _remember(key, digest.hexdigest())
    return digest.hexdigest()


def read_published_checkpoint(path: str | os.PathLike[str]) -> PublishedCheckpoint:
    """Read a published checkpoint once: its digest and its contents (``weights_only``, on the CPU).

    Raises:
        PublishedCheckpointError: a missing or unreadable file, one the safe loader refuses (damaged, or
            pickled objects), or one that holds no state dict (no tensor at its top level or one level down).
    """
    path = _readable(path)
    try:
        key, data = _identity(path), path.read_bytes()
    except OSError as exc:
        raise PublishedCheckpointError(path, f"unreadable ({os_error_reason(exc)})") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    _remember(key, sha256)
    try:
        state = _safe_load(io.BytesIO(data), path, "cpu")
    except CorruptCheckpointError as exc:
        raise PublishedCheckpointError(path, exc.reason) from None
    nested = [v for v in state.values() if isinstance(v, Mapping)]
    if not any(isinstance(v, torch.Tensor) for part in (state, *nested) for v in part.values()):
        raise PublishedCheckpointError(path, f"holds no tensors (keys: {', '.join(map(str, list(state)[:5]))}); "
                                             "not a state dict")
    return PublishedCheckpoint(os.path.abspath(path), sha256, state)


def tensor_entries(state: Mapping[str, Any], what: str) -> Mapping[str, torch.Tensor]:
    """``state`` checked to map names to tensors only; ValueError names the first entry that is something else."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"key {key!r} holds a {type(value).__name__}, not a tensor; expected {what}")
    return state
