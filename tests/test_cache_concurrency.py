"""Two processes building the same cache at once: one builds, the other waits and reuses it."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from ssl3d.datasets.cache import H5Reader, build_cache

N_SHAPES = 12


class SlowComputer:
    """Slow enough that two builds overlap; leaves one marker file per computed shape."""

    def __init__(self, marker_dir: Path) -> None:
        self.marker_dir = marker_dir

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        time.sleep(0.04)
        (self.marker_dir / f"{i}-{mp.current_process().pid}-{time.monotonic_ns()}").touch()
        return {"x": np.full((4,), i, dtype=np.float32)}

    def describe(self, i: int) -> str:
        return f"shape_{i}"


def _build_after_barrier(barrier, path: str, marker_dir: str, outcome_file: str) -> None:
    barrier.wait(timeout=60)
    try:
        report = build_cache(path, N_SHAPES, SlowComputer(Path(marker_dir)), shard_size=2, workers=1,
                             progress=False)
        Path(outcome_file).write_text(f"ok {report.n_items} {report.n_valid}")
    except BaseException as exc:  # the parent asserts on what happened, so record every failure
        Path(outcome_file).write_text(f"failed {type(exc).__name__}: {exc}")
        raise


def test_two_processes_build_one_cache_at_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "processed" / "cache.h5"
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(2)
    outcomes = [tmp_path / f"outcome{k}.txt" for k in range(2)]
    procs = [ctx.Process(target=_build_after_barrier, args=(barrier, str(path), str(markers), str(out)))
             for out in outcomes]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    texts = [out.read_text() if out.exists() else "no outcome" for out in outcomes]
    assert [p.exitcode for p in procs] == [0, 0], texts
    assert texts == [f"ok {N_SHAPES} {N_SHAPES}"] * 2
    assert H5Reader(path).read_all("x")[:, 0].tolist() == list(range(N_SHAPES))
    computed = sorted(int(m.name.split("-")[0]) for m in markers.iterdir())
    assert computed == list(range(N_SHAPES))  # every shape computed once: the second process reused the cache
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in ("cache.h5", "cache.h5.lock")]
    assert leftovers == []  # no stray shard folder, no temporary file
