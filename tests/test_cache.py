"""The resumable HDF5 cache: completeness, resume without recomputation, corrupt inputs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssl3d.datasets.cache import H5Reader, build_cache
from ssl3d.datasets.errors import DataFileError


class CountingComputer:
    """Writes a marker file per computed shape so recomputation is visible across processes."""

    def __init__(self, marker_dir: Path, bad: set[int] = frozenset(), fail_at: int | None = None) -> None:
        self.marker_dir = marker_dir
        self.bad = bad
        self.fail_at = fail_at

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        if i == self.fail_at:
            raise KeyboardInterrupt  # simulate an interruption mid-build
        (self.marker_dir / f"{i}-{len(list(self.marker_dir.iterdir()))}").touch()
        if i in self.bad:
            raise DataFileError(f"shape_{i}.off", "truncated file")
        return {"x": np.full((3,), i, dtype=np.float32), "y": np.array(i % 2, dtype=np.int64)}

    def describe(self, i: int) -> str:
        return f"shape_{i}"


def test_build_reads_back_and_reports(tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    path = tmp_path / "cache.h5"
    report = build_cache(path, 10, CountingComputer(markers, bad={4}), attrs={"n": 1}, shard_size=3,
                         workers=1, progress=False)
    assert report.n_items == 10 and report.n_valid == 9
    assert report.skipped == {"shape_4": "shape_4.off: truncated file"}
    reader = H5Reader(path)
    assert reader.valid.tolist() == [i != 4 for i in range(10)]
    assert reader.read("x", 7).tolist() == [7, 7, 7]
    with h5py.File(path) as h5:
        assert json.loads(h5.attrs["meta"]) == {"n": 1}
    assert not (tmp_path / "cache.h5.shards").exists()


def test_interrupted_build_resumes_without_redoing_finished_shards(tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    path = tmp_path / "cache.h5"
    with pytest.raises(KeyboardInterrupt):
        build_cache(path, 10, CountingComputer(markers, fail_at=7), shard_size=3, workers=1, progress=False)
    assert not path.exists()  # no half file under the final name
    done_first = sorted(int(p.name.split("-")[0]) for p in markers.iterdir())
    assert done_first == [0, 1, 2, 3, 4, 5, 6]  # shards [0,3) and [3,6) finished, 6 computed before the stop
    for p in markers.iterdir():
        p.unlink()
    report = build_cache(path, 10, CountingComputer(markers), shard_size=3, workers=1, progress=False)
    redone = sorted(int(p.name.split("-")[0]) for p in markers.iterdir())
    assert redone == [6, 7, 8, 9]  # only the unfinished shards
    assert report.n_built == 4 and report.n_valid == 10
    assert H5Reader(path).read_all("x")[:, 0].tolist() == list(range(10))


def test_parallel_workers_give_the_same_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    build_cache(tmp_path / "one.h5", 9, CountingComputer(tmp_path / "a"), shard_size=2, workers=1, progress=False)
    build_cache(tmp_path / "two.h5", 9, CountingComputer(tmp_path / "b"), shard_size=2, workers=2, progress=False)
    assert np.array_equal(H5Reader(tmp_path / "one.h5").read_all("x"), H5Reader(tmp_path / "two.h5").read_all("x"))


def test_complete_cache_is_not_rebuilt(tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    path = tmp_path / "c.h5"
    build_cache(path, 4, CountingComputer(markers), workers=1, progress=False)
    for p in markers.iterdir():
        p.unlink()
    report = build_cache(path, 4, CountingComputer(markers), workers=1, progress=False)
    assert report.n_built == 0 and not list(markers.iterdir())


def test_unreadable_cache_names_the_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match="bad.h5"):
        H5Reader(bad)
