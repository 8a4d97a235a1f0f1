"""A lock file that works on shared filesystems: one job pretrains a cache key, the others wait and reuse it.

``fcntl``/``flock`` locks (what :class:`filelock.FileLock` takes) are not to be
trusted on every NFS or Lustre mount, and a job killed by the scheduler never
releases them cleanly on some. This lock is a file created with ``O_CREAT |
O_EXCL``, which is atomic on NFSv3+ and on every local filesystem; it holds the
holder's host, pid and a token, and the holder touches it every
``heartbeat_s`` seconds from a daemon thread.

A lock is stale, and is broken by the next waiter, when

* its holder ran on this host and that pid no longer exists (a SIGKILLed job), or
* its file was not touched for ``stale_after_s`` seconds (a holder on another
  node that died with its node, so its pid cannot be checked from here).

A stale lock is broken by renaming it to a unique name (one rename wins) and
re-checking its token first, so two waiters never both take it over.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("ssl3d.run")


class KeyLock:
    """``with KeyLock(path): ...`` holds ``path`` (a lock file) exclusively, across hosts."""

    def __init__(self, path: str | os.PathLike[str], poll_s: float = 1.0, heartbeat_s: float = 30.0,
                 stale_after_s: float = 600.0, what: str = "") -> None:
        self.path = Path(path)
        self.poll_s = poll_s  # how often a waiter looks again
        self.heartbeat_s = heartbeat_s  # how often the holder touches the file
        self.stale_after_s = stale_after_s  # untouched this long: the holder is gone (must be >> heartbeat_s)
        self.what = what or str(self.path)  # named in the waiting message
        self.token = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, waiting as long as another live holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while not self._try_create():
            holder = self._read()
            if holder is not None and self._stale(holder):
                self._break(holder)
                continue
            if not waited:
                who = f"{holder.get('host')}:{holder.get('pid')}" if holder else "another process"
                log.info("waiting for %s, held by %s (%s)", self.what, who, self.path)
                waited = True
            time.sleep(self.poll_s)
        if waited:
            log.info("took over %s after waiting", self.path)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="keylock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Give the lock up (only if this object still holds it: a broken stale lock is not ours any more)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        holder = self._read()
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def _try_create(self) -> bool:
        self.token = secrets.token_hex(8)
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "since": time.time()})
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        return True

    def _read(self) -> dict | None:
        """The holder's record; ``{}`` for a file being written or damaged (judged by its age), None if gone."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"]):
                return True
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: the next attempt takes it
        return age > self.stale_after_s

    def _break(self, holder: dict) -> None:
        aside = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(4)}")
        current = self._read()
        if current is None or current.get("token") != holder.get("token"):
            return  # someone else broke it (and may hold a new one): look again
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        log.warning("broke a stale lock %s (holder %s:%s is gone)", self.path, holder.get("host"), holder.get("pid"))
        aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # broken by someone who judged us dead: nothing left to refresh
                return


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a killed child not yet reaped by its parent still answers signal 0: it is a zombie, not a holder
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
