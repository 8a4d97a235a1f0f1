"""A resumable, crash-safe HDF5 cache of per-shape arrays.

Derived modalities (points, voxels, views, photos) are computed once per shape
and stored in one HDF5 file per (dataset, split, modality, settings). Building
proceeds in *shards* of consecutive shapes: each shard is computed by a worker
process and written atomically as a small ``.npz`` file, so an interrupted
build resumes with the shards that are missing and finished shapes are never
redone; Ctrl-C stops a build at once (queued shards cancelled, running ones ended,
finished ones kept). When every shard exists they are merged, again atomically, into the
final ``.h5`` file, whose presence means "complete"; nothing half-written is
ever read back.

Concurrent builds of one file are serialised by ``<name>.h5.lock``: the first
process builds, the others wait and use its file. Every dataset carries a
blake2b checksum per block of rows, checked whenever the cache is opened; a
file that fails the check or that HDF5 cannot read is moved aside
(``<name>.h5.corrupt-<time>``) with a warning naming it and what is wrong, and
is built again. Files from before checksums existed are used with a note.

A shape whose source file is corrupt is not fatal: its compute function raises
:class:`~ssl3d.datasets.errors.DataFileError`, the shape is marked invalid in
the cache (``valid`` = False), the error is kept by name in the file's
``errors`` attribute, and the dataset leaves it out and reports it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import h5py
import numpy as np
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ssl3d.core.io import atomic_path, move_aside
from ssl3d.datasets.errors import DataFileError

log = logging.getLogger(__name__)

#: the checksum scheme of files written by this version (file attribute ``checksum_format``)
CHECKSUM_FORMAT = "blake2b-128 per row block, v1"
# blocks of about 8 MiB keep verification memory small; at most 1024 of them keep the attribute small
_BLOCK_BYTES = 8 << 20
_MAX_BLOCKS = 1024
_noted_unverified: set[str] = set()


class ShapeComputer(Protocol):
    """What a cache builder calls per shape; must be picklable for worker processes."""

    def __call__(self, index: int) -> dict[str, np.ndarray]: ...

    def describe(self, index: int) -> str: ...


@dataclass
class CacheReport:
    """What a cache build did: counts, skipped shapes with reasons, size and time."""

    path: str
    n_items: int
    n_valid: int
    skipped: dict[str, str] = field(default_factory=dict)  # shape name -> reason
    n_built: int = 0  # shapes computed in this call (0 when the cache was complete)
    seconds: float = 0.0
    size_bytes: int = 0


def default_workers() -> int:
    """Worker processes for preprocessing: every core but none on a 1-core box."""
    return max(1, (os.cpu_count() or 1))


def _compute_shard(computer: ShapeComputer, start: int, stop: int, shard_path: str) -> tuple[str, int, dict[str, str]]:
    arrays: dict[str, list[np.ndarray]] = {}
    valid = np.zeros(stop - start, dtype=bool)
    errors: dict[str, str] = {}
    template: dict[str, np.ndarray] | None = None
    outputs: list[dict[str, np.ndarray] | None] = []
    for i in range(start, stop):
        try:
            out = computer(i)
        except DataFileError as exc:
            errors[computer.describe(i)] = str(exc)
            outputs.append(None)
            continue
        template = template or out
        outputs.append(out)
    if template is not None:
        for offset, out in enumerate(outputs):
            valid[offset] = out is not None
            for key, ref in template.items():
                value = out[key] if out is not None else np.zeros_like(ref)
                if value.shape != ref.shape:
                    raise ValueError(f"{computer.describe(start + offset)}: {key} has shape {value.shape}, expected {ref.shape}")
                arrays.setdefault(key, []).append(value)
    payload = {k: np.stack(v) for k, v in arrays.items()}
    payload["__valid__"] = valid
    payload["__errors__"] = np.array(json.dumps(errors))
    with atomic_path(shard_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    return shard_path, stop - start, errors


def build_cache(
    path: str | os.PathLike[str],
    n_items: int,
    computer: ShapeComputer,
    *,
    attrs: dict[str, Any] | None = None,
    shard_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "preprocess",
) -> CacheReport:
    """Build one cache file ``path`` from ``computer(i)`` for ``i < n_items``; resume when interrupted.

    Args:
        path: the final ``.h5`` file; its existence means the cache is complete.
        n_items: number of shapes.
        computer: picklable callable returning a dict of fixed-shape arrays per shape.
        attrs: JSON-able metadata stored on the file (settings, versions).
        shard_size: shapes per resumable unit of work.
        workers: processes (default: one per core); 1 computes in this process.
        progress: show a progress bar.
        desc: progress-bar label.
    """
    return build_caches({"": path}, n_items, _Prefixed(computer), attrs={"": attrs or {}}, shard_size=shard_size,
                        workers=workers, progress=progress, desc=desc)[""]


class _Prefixed:
    """Adapts a single-file computer to the ``group/key`` naming of :func:`build_caches`."""

    def __init__(self, computer: ShapeComputer) -> None:
        self.computer = computer

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        return {f"/{k}": v for k, v in self.computer(index).items()}

    def describe(self, index: int) -> str:
        return self.computer.describe(index)


def build_caches(
    paths: dict[str, str | os.PathLike[str]],
    n_items: int,
    computer: ShapeComputer,
    *,
    attrs: dict[str, dict[str, Any]] | None = None,
    shard_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "preprocess",
) -> dict[str, CacheReport]:
    """Build several cache files in ONE pass over the shapes (each source file is loaded once).

    ``computer(i)`` returns arrays named ``"<group>/<key>"``; group ``g``'s arrays go to
    ``paths[g]``. A shape that raises :class:`DataFileError` is invalid in every file.
    Files that exist and pass their checksums are complete and are not rebuilt; damaged
    ones are moved aside and rebuilt. Safe to call from several processes at once.
    """
    paths = {g: Path(p) for g, p in paths.items()}
    # the common case, every file complete and intact, needs no lock
    reports = {g: cache_report(p) for g, p in paths.items() if p.exists() and cache_problem(p) is None}
    if len(reports) == len(paths):
        return reports
    if n_items == 0:
        raise ValueError(f"{desc}: nothing to preprocess (0 shapes)")
    with _build_locks(p for g, p in paths.items() if g not in reports):
        missing: dict[str, Path] = {}
        for group, path in paths.items():
            if group in reports:
                continue
            # decided again under the lock: another process may have built or repaired it meanwhile
            problem = cache_problem(path) if path.exists() else "missing"
            if problem is None:
                reports[group] = cache_report(path)
            else:
                if problem != "missing":
                    log.warning("damaged cache %s: %s; moved it to %s and rebuilding it",
                                path, problem, move_aside(path))
                missing[group] = path
        if missing:
            reports.update(_build_missing(missing, n_items, computer, attrs or {}, shard_size, workers, progress, desc))
    return reports


@contextlib.contextmanager
def _build_locks(paths: Iterable[Path]) -> Iterator[None]:
    """Hold ``<file>.lock`` of every file, taken in sorted order so two builders never deadlock."""
    with contextlib.ExitStack() as stack:
        for path in sorted(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path) + ".lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                log.info("waiting for another process that is building %s", path)
                lock.acquire()
            stack.callback(lock.release)
        yield


def _build_missing(missing: dict[str, Path], n_items: int, computer: ShapeComputer, attrs: dict[str, dict[str, Any]],
                   shard_size: int, workers: int | None, progress: bool, desc: str) -> dict[str, CacheReport]:
    t0 = time.perf_counter()
    first = next(iter(missing.values()))
    # the shard folder is named after every file being built, so a different set of groups never reuses it
    shard_dir = first.with_name(first.name + ("+" + "+".join(sorted(missing)) if len(missing) > 1 else "") + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    ranges = [(s, min(s + shard_size, n_items)) for s in range(0, n_items, shard_size)]
    shard_paths = [str(shard_dir / f"{a:08d}-{b:08d}.npz") for a, b in ranges]
    todo = [(a, b, shard) for (a, b), shard in zip(ranges, shard_paths) if not Path(shard).exists()]
    done_before = n_items - sum(b - a for a, b, _ in todo)
    workers = min(workers or default_workers(), max(1, len(todo)))
    bar = tqdm(total=n_items, initial=done_before, desc=desc, unit="shape", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            for a, b, shard in todo:
                _compute_shard(computer, a, b, shard)
                bar.update(b - a)
        else:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            ignore_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: this process stops them
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint) as pool:
                futures = [pool.submit(_compute_shard, computer, a, b, shard) for a, b, shard in todo]
                try:
                    for fut in as_completed(futures):
                        _, count, _ = fut.result()
                        bar.update(count)
                except BaseException:  # Ctrl-C or a failed shard: the rest would be computed for nothing
                    _stop_pool(pool)
                    raise
    finally:
        bar.close()
    shards = []
    for shard in shard_paths:
        with np.load(shard) as data:
            shards.append({k: data[k] for k in data.files})
    for group, path in missing.items():
        _merge_shards(path, shards, group, attrs.get(group, {}))
    shutil.rmtree(shard_dir, ignore_errors=True)
    reports = {}
    for group, path in missing.items():
        reports[group] = cache_report(path)
        reports[group].n_built = n_items - done_before
        reports[group].seconds = time.perf_counter() - t0
    return reports


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued shards and end the running ones now; the finished shard files stay for the next build."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # what Python 3.14's terminate_workers() ends
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()  # a shard file appears by rename once written: a killed shard leaves none (or a temp file)
        proc.join(timeout=10)


def _merge_shards(path: Path, shards: list[dict[str, np.ndarray]], group: str, attrs: dict[str, Any]) -> None:
    prefix = f"{group}/"
    errors: dict[str, str] = {}
    n_total = sum(len(s["__valid__"]) for s in shards)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        datasets: dict[str, h5py.Dataset] = {}
        offset = 0
        for s in shards:
            n = len(s["__valid__"])
            errors.update(json.loads(str(s["__errors__"])))
            for name, value in s.items():
                if not name.startswith(prefix):
                    continue
                key = name[len(prefix):]
                if key not in datasets:
                    chunk = (1,) + value.shape[1:]
                    datasets[key] = h5.create_dataset(key, shape=(n_total,) + value.shape[1:], dtype=value.dtype,
                                                      chunks=chunk, compression="lzf")
                datasets[key][offset : offset + n] = value
            offset += n
        h5.create_dataset("valid", data=np.concatenate([s["__valid__"] for s in shards]))
        h5.attrs["errors"] = json.dumps(errors)
        h5.attrs["meta"] = json.dumps(attrs, sort_keys=True, default=str)
        # digests of what the file holds (read back), not of what was meant to be written
        for dataset in h5.values():
            row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
            rows = max(1, _BLOCK_BYTES // max(1, row_bytes), -(-dataset.shape[0] // _MAX_BLOCKS))
            dataset.attrs["checksum"] = json.dumps({"rows": rows, "blake2b": list(_block_digests(dataset, rows))})
        h5.attrs["checksum_format"] = CHECKSUM_FORMAT


def _block_digests(dataset: h5py.Dataset, rows: int) -> Iterator[str]:
    # one-row chunks are hashed as stored, compressed: ~8x faster than decompressing, and as sensitive
    per_row_chunks = dataset.chunks is not None and dataset.chunks == (1,) + dataset.shape[1:]
    origin = (0,) * (dataset.ndim - 1)
    for start in range(0, dataset.shape[0], rows):
        digest = hashlib.blake2b(digest_size=16)
        if per_row_chunks:
            for row in range(start, min(start + rows, dataset.shape[0])):
                digest.update(dataset.id.read_direct_chunk((row,) + origin)[1])
        else:
            digest.update(np.ascontiguousarray(dataset[start : start + rows]).data)
        yield digest.hexdigest()


def cache_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with a finished cache file, in words, or None when it is intact.

    Compares every block of rows with the checksum stored at build time. A file
    from before checksums existed counts as intact (noted once per process).
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if "valid" not in h5:
                return "it has no 'valid' dataset (not a complete cache)"
            json.loads(h5.attrs.get("errors", "{}"))
            if "checksum_format" not in h5.attrs:
                if str(path) not in _noted_unverified:
                    _noted_unverified.add(str(path))
                    log.info("cache %s has no checksums (written by an older version); using it unverified. "
                             "Delete it to rebuild it with checksums.", path)
                return None
            for name, dataset in h5.items():
                spec = json.loads(dataset.attrs.get("checksum", "null")) if isinstance(dataset, h5py.Dataset) else None
                if spec is None:
                    return f"{name!r} has no checksum"
                rows, expected = int(spec["rows"]), spec["blake2b"]
                actual = list(_block_digests(dataset, rows))
                if len(actual) != len(expected):
                    return f"dataset {name!r} has {dataset.shape[0]} rows, not what its checksum covers"
                bad = [block for block, (want, got) in enumerate(zip(expected, actual)) if want != got]
                if bad:
                    first, last = bad[0] * rows, min((bad[0] + 1) * rows, dataset.shape[0]) - 1
                    return f"dataset {name!r} rows {first}-{last} do not match their checksum"
    except (OSError, KeyError, ValueError, TypeError) as exc:
        # h5py reports truncation and damaged metadata or chunks as OSError; bad attributes fail to parse
        return f"unreadable ({exc})"
    return None


def cache_report(path: str | os.PathLike[str]) -> CacheReport:
    """Counts and skipped shapes of a finished cache file."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        valid = h5["valid"][()]
        errors = json.loads(h5.attrs.get("errors", "{}"))
    return CacheReport(str(path), int(len(valid)), int(valid.sum()), errors, size_bytes=path.stat().st_size)


class H5Reader:
    """Lazy per-process reader of a cache file.

    The HDF5 handle is opened on first access in the process that uses it and
    never shared across ``fork`` (DataLoader workers each open their own).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        try:
            with h5py.File(self.path, "r") as h5:
                self.valid = h5["valid"][()].astype(bool)
                self.keys = tuple(k for k in h5.keys() if k != "valid")
        except OSError as exc:
            raise DataFileError(self.path, f"unreadable cache file ({exc}); the next run moves it aside and rebuilds it") from exc

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def read(self, key: str, index: int) -> np.ndarray:
        return self._handle()[key][index]

    def read_all(self, key: str) -> np.ndarray:
        return self._handle()[key][()]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state
