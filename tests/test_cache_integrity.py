"""Corrupt cache files are detected on open, named, moved aside and rebuilt; old caches stay usable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssl3d.datasets import cache
from ssl3d.datasets.cache import H5Reader, build_cache

N_SHAPES = 40


class NoisyComputer:
    """Incompressible per-shape arrays (so damage lands in real data); counts computed shapes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"points": expected_points(i), "label": np.array(i % 3, dtype=np.int64)}

    def describe(self, i: int) -> str:
        return f"shape_{i}"


def expected_points(i: int) -> np.ndarray:
    return np.random.default_rng(i).normal(size=(64, 3)).astype(np.float32)


def _build(path: Path) -> tuple[NoisyComputer, object]:
    computer = NoisyComputer()
    report = build_cache(path, N_SHAPES, computer, attrs={"n": 1}, shard_size=8, workers=1, progress=False)
    return computer, report


def _assert_intact(path: Path) -> None:
    reader = H5Reader(path)
    assert np.array_equal(reader.read_all("points"), np.stack([expected_points(i) for i in range(N_SHAPES)]))
    assert reader.valid.all()


def _quarantined(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


def _rebuild_after_damage(path: Path, caplog) -> tuple[NoisyComputer, str]:
    with caplog.at_level(logging.WARNING, logger="ssl3d.datasets.cache"):
        computer, report = _build(path)
    assert computer.calls == N_SHAPES and report.n_built == N_SHAPES  # rebuilt from scratch
    _assert_intact(path)
    assert len(_quarantined(path)) == 1  # the bad file is kept aside, not deleted
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert str(path) in warnings and "rebuild" in warnings
    return computer, warnings


def test_wrong_values_in_a_cache_are_detected_and_rebuilt(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cache, "_BLOCK_BYTES", 8 * expected_points(0).nbytes)  # checksums per 8 rows
    path = tmp_path / "cache.h5"
    _build(path)
    with h5py.File(path, "r+") as h5:  # a silent change: the file stays perfectly readable
        h5["points"][17] = 0.0
    _, warnings = _rebuild_after_damage(path, caplog)
    assert "'points'" in warnings and "checksum" in warnings and "16-23" in warnings  # which dataset and rows


def test_4kb_overwritten_in_the_middle_is_detected_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "cache.h5"
    _build(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(np.random.default_rng(0).bytes(4096))
    _rebuild_after_damage(path, caplog)


def test_truncated_cache_is_named_and_rebuilt_and_the_next_open_is_clean(tmp_path, caplog):
    path = tmp_path / "cache.h5"
    _build(path)
    os.truncate(path, path.stat().st_size // 2)
    _, warnings = _rebuild_after_damage(path, caplog)
    assert "unreadable" in warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ssl3d.datasets.cache"):
        computer, report = _build(path)
    assert computer.calls == 0 and report.n_built == 0 and not caplog.records


def test_cache_without_checksums_is_used_with_one_note(tmp_path, caplog):
    path = tmp_path / "cache.h5"
    _build(path)
    with h5py.File(path, "r+") as h5:  # what older versions wrote: no checksum attributes
        for name in list(h5.attrs):
            if "checksum" in name:
                del h5.attrs[name]
        for dataset in h5.values():
            for name in list(dataset.attrs):
                del dataset.attrs[name]
    with caplog.at_level(logging.INFO, logger="ssl3d.datasets.cache"):
        computer, report = _build(path)
        _build(path)
    assert computer.calls == 0 and report.n_built == 0
    notes = [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
    assert len(notes) == 1 and str(path) in notes[0]
    _assert_intact(path)


def test_unreadable_file_in_place_of_a_cache_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "cache.h5"
    path.write_bytes(b"not hdf5 at all")
    _rebuild_after_damage(path, caplog)
    assert _quarantined(path)[0].read_bytes() == b"not hdf5 at all"


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_reader_of_a_damaged_cache_names_the_file(tmp_path, damage):
    path = tmp_path / "cache.h5"
    _build(path)
    if damage == "truncate":
        os.truncate(path, 1000)
    else:
        with open(path, "r+b") as fh:
            fh.write(b"\0" * 4096)  # the superblock
    with pytest.raises(Exception, match="cache.h5"):
        H5Reader(path)
