"""Damaged archives, an offline `bench prepare` and Ctrl-C during a cache build: one line, nothing half-done."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_prepare import closed_port, zip_folder
from test_real_datasets import make_modelnet40

from ssl3d.bench.cli import main
from ssl3d.datasets import get_dataset
from ssl3d.datasets.cache import build_caches
from ssl3d.datasets.download import extract_archive


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def _one_error_line(err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("bench prepare: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- 1. damaged archives ----------------------------------------------------------------------------------------------

def _not_a_zip(tmp_path: Path) -> tuple[Path, str]:
    archive = tmp_path / "notarchive.zip"
    archive.write_text("this is a text file, not an archive\n" * 20)
    return archive, "not a zip archive"


def _truncated_zip(tmp_path: Path) -> tuple[Path, str]:
    archive = zip_folder(make_modelnet40(tmp_path / "src"), tmp_path / "ModelNet40.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return archive, "truncated"


def _bad_crc_zip(tmp_path: Path) -> tuple[Path, str]:
    archive = tmp_path / "ModelNet40.zip"
    payload = b"OFF\n" + b"0 0 0\n" * 200
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("ModelNet40/chair/train/chair_0001.off", payload)
        zf.writestr("ModelNet40/chair/test/chair_0010.off", payload.replace(b"0 0 0", b"1 1 1"))
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"1 1 1") + 300] ^= 0x20  # the second member no longer matches its CRC-32
    archive.write_bytes(bytes(raw))
    return archive, "CRC mismatch in member 'ModelNet40/chair/test/chair_0010.off'"


def _truncated_tgz(tmp_path: Path) -> tuple[Path, str]:
    archive = tmp_path / "ModelNet40.tar.gz"
    data = os.urandom(64_000)
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("ModelNet40/chair/train/chair_0001.off", "ModelNet40/chair/test/chair_0010.off"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * 0.7)])
    return archive, "truncated"


@pytest.mark.parametrize("make", [_not_a_zip, _truncated_zip, _bad_crc_zip, _truncated_tgz])
def test_damaged_archive_is_one_line_and_extracts_nothing(tmp_path, capsys, make):
    archive, what = make(tmp_path)
    data = tmp_path / "data"
    assert main(["prepare", "modelnet40", "--from", str(archive), "--data-root", str(data)]) == 2
    _one_error_line(capsys.readouterr().err, str(archive), what)
    assert _files(data) == []  # nothing extracted, no folder left behind
    # the same answer from the library call, before anything is written next to the target
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=what.split(" in member")[0]):
        extract_archive(archive, tmp_path / "target")
    assert _files(tmp_path) == before


# -- 2. an offline prepare leaves no empty folders ----------------------------------------------------------------------

def _offline_modelnet40(monkeypatch) -> str:
    url = f"http://127.0.0.1:{closed_port()}/ModelNet40.zip"
    cls = get_dataset("modelnet40")
    monkeypatch.setattr(cls, "raw_parts", (dataclasses.replace(cls.raw_parts[0], urls=(url,)),))
    return url


def test_offline_prepare_removes_the_folders_it_created(tmp_path, monkeypatch, capsys):
    url = _offline_modelnet40(monkeypatch)
    data = tmp_path / "data"
    assert main(["prepare", "modelnet40", "--data-root", str(data)]) == 2
    _one_error_line(capsys.readouterr().err, url)
    assert not data.exists()  # created by the failed prepare, empty: removed

    # folders that were there before are kept, even empty; only the new ones go
    (data / "modelnet40" / "raw").mkdir(parents=True)
    (data / "synth").mkdir()
    assert main(["prepare", "modelnet40", "--data-root", str(data)]) == 2
    _one_error_line(capsys.readouterr().err, url)
    assert _files(data) == ["modelnet40", "modelnet40/raw", "synth"]


# -- 3. Ctrl-C during a cache build ---------------------------------------------------------------------------------

class _Counting:
    """Computes shape ``i`` slowly, leaving one marker file per computed shape; raises KeyboardInterrupt at ``stop_at``."""

    def __init__(self, marks: Path, stop_at: int | None = None, delay: float = 0.03) -> None:
        self.marks, self.stop_at, self.delay = marks, stop_at, delay

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        if index == self.stop_at:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a shard
        time.sleep(self.delay)
        (self.marks / f"{index}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return {"points/x": np.full(3, index, dtype=np.float32)}

    def describe(self, index: int) -> str:
        return f"shape {index}"


def _computed(marks: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in marks.iterdir())


def test_ctrl_c_stops_the_build_and_the_next_build_resumes(tmp_path):
    n_items, stop_at = 40, 3
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    cache = tmp_path / "cache" / "points.h5"
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        build_caches({"points": cache}, n_items, _Counting(first, stop_at), shard_size=1, workers=2, progress=False)
    assert time.perf_counter() - t0 < 5
    time.sleep(0.5)  # nothing keeps computing once the build has returned
    computed = _computed(first)
    assert len(computed) <= 8, f"{len(computed)} of {n_items - 1} queued shapes were still computed after Ctrl-C"
    assert not cache.exists()  # no half-built cache under the final name
    kept = sorted(int(p.name.split("-")[0]) for p in cache.parent.glob("*.shards/*.npz"))
    assert stop_at not in kept and set(kept) <= set(computed)

    report = build_caches({"points": cache}, n_items, _Counting(second), shard_size=1, workers=2, progress=False)["points"]
    assert sorted(set(range(n_items)) - set(kept)) == _computed(second)  # finished shards are not computed again
    assert report.n_valid == n_items and report.n_built == n_items - len(kept)
