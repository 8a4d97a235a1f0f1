"""``s3dis``: Stanford Large-Scale 3D Indoor Spaces (Armeni et al., CVPR 2016), 13 classes, 6 areas.

Two releases are read (``bench prepare s3dis --from PATH``; docs/datasets.md):

* **aligned rooms** (``Stanford3dDataset_v1.2_Aligned_Version``, obtained
  through the dataset's request form, so never downloaded here):
  ``Area_N/<room>/Annotations/<class>_<i>.txt``, one object per file, lines
  ``x y z r g b`` (metres, z up; colours 0-255). The class is the file name
  before the last ``_``; names outside the 13 classes (``stairs``) are
  ``clutter``, as in PointNet's ``indoor3d_util``. Rooms are cut into blocks
  here (:mod:`~ssl3d.datasets.scene_blocks`). The release is known to hold
  malformed lines (a stray non-numeric character in an annotation file of
  Area 5): such a line is skipped and reported as ``file:line``, never a crash;
* **hdf5 blocks** (``indoor3d_sem_seg_hdf5_data``, PointNet's preprocessed
  release, downloadable): ``ply_data_all_<k>.h5`` with ``data`` float
  ``[B, 4096, 9]`` (block-centred xyz, rgb in [0, 1], normalised room xyz)
  and ``label`` ``[B, 4096]``, plus ``room_filelist.txt`` naming the room
  (``Area_1_conferenceRoom_1``) of every block in file order. The blocks are
  the release's own (1 m, stride 0.5 m, 4096 sampled points); evaluation
  scores each stored point once, per room.

Which release a folder holds enters every cache key and the leaderboard's
data key (:meth:`raw_identity`), so the two never mix.

STATS (v1.2 aligned release; PointNet's hdf5 release):

====  =====  ====================================
area  rooms  notes
====  =====  ====================================
1     44
2     40
3     23
4     49
5     68     the usual test area (ParAE Table 3)
6     48
====  =====  ====================================

272 room folders in all (ParAE Sec. 4.4 says 271); the hdf5 release holds
23,585 blocks of 4,096 points in 24 files.
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ssl3d.datasets.base import register_dataset
from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.real import RawPart, RealShapeDataset
from ssl3d.datasets.scene_dataset import S3DIS_CLASSES, Room, SceneDataset

__all__ = ["S3DISDataset", "read_annotation_file"]

log = logging.getLogger(__name__)

HDF5_URL = "https://shapenet.cs.stanford.edu/media/indoor3d_sem_seg_hdf5_data.zip"
_HDF5_LAYOUT = ("ply_data_all_*.h5", "room_filelist.txt")
_ALIGNED_LAYOUT = ("Area_*/*/Annotations/*.txt",)
_HDF5, _ALIGNED = "hdf5 blocks", "aligned rooms"
_ROOM = re.compile(r"^Area_(\d+)_(.+)$")


def read_annotation_file(path: Path) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """``(float64 [N, 6] rows, [(line number, text)] of malformed lines)`` of one ``x y z r g b`` file.

    The fast path parses the whole file at once; only a file that fails it is read line by line,
    so that the malformed lines can be named and skipped.
    """
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
        if rows.shape[1] == 6 or rows.size == 0:
            return rows.reshape(-1, 6), []
    except ValueError:
        pass
    except OSError as exc:
        raise DataFileError(path, f"cannot be read ({exc})") from None
    good, bad = [], []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                values = [float(v) for v in text.split()]
            except ValueError:
                values = []
            if len(values) == 6 and np.all(np.isfinite(values)):
                good.append(values)
            else:
                bad.append((number, text[:80]))
    return np.array(good, dtype=np.float64).reshape(-1, 6), bad


@register_dataset("s3dis")
class S3DISDataset(SceneDataset, RealShapeDataset):
    """S3DIS in either release; areas are the splits (see the module docstring and :class:`SceneDataset`)."""

    name = "s3dis"
    raw_name = "indoor3d_sem_seg_hdf5_data"
    raw_parts = (RawPart((HDF5_URL,), "indoor3d_sem_seg_hdf5_data.zip", "indoor3d_sem_seg_hdf5_data", _HDF5_LAYOUT,
                         layout_name=_HDF5, alternatives=((_ALIGNED, _ALIGNED_LAYOUT),)),)
    point_only = True
    mesh_alternative = "synth or modelnet40 (S3DIS holds scanned points only)"
    areas = (1, 2, 3, 4, 5, 6)

    @cached_property
    def layout(self) -> str:
        """``"hdf5 blocks"`` or ``"aligned rooms"``: the release in the raw folder."""
        return self.raw_layout(self.raw_dir)

    @property
    def precut_points(self) -> int | None:  # type: ignore[override]
        return 4096 if self.layout == _HDF5 else None

    def raw_identity(self) -> dict[str, Any]:
        return {"source": "hdf5" if self.layout == _HDF5 else "aligned-v1.2"}

    # -- aligned rooms -----------------------------------------------------------
    def rooms_of_area(self, area: int) -> list[Room]:
        if self.layout == _HDF5:
            return [room for room in self._hdf5_rooms() if room.area == area]
        folder = self.raw_dir / f"Area_{area}"
        rooms = sorted(p for p in folder.glob("*") if (p / "Annotations").is_dir()) if folder.is_dir() else []
        return [Room(f"Area_{area}/{p.name}", area, p) for p in rooms]

    def load_room(self, room: Room) -> tuple[np.ndarray, np.ndarray]:
        if self.layout == _HDF5:
            return self._load_hdf5_room(room)
        files = sorted((room.source / "Annotations").glob("*.txt"))
        if not files:
            raise DataFileError(room.source / "Annotations", "holds no <class>_<i>.txt annotation file")
        parts, labels = [], []
        for path in files:
            cls = path.stem.rsplit("_", 1)[0]
            label = S3DIS_CLASSES.index(cls) if cls in S3DIS_CLASSES else S3DIS_CLASSES.index("clutter")
            rows, bad = read_annotation_file(path)
            for number, text in bad:
                log.warning("%s:%d: skipped malformed line %r (expected 6 numbers: x y z r g b)", path, number, text)
            self.malformed_lines.extend((str(path), number) for number, _ in bad)
            parts.append(rows)
            labels.append(np.full(len(rows), label, dtype=np.int64))
        rows = np.concatenate(parts)
        if len(rows) == 0:
            raise DataFileError(room.source, "its annotation files hold no point")
        if rows[:, 3:].min() < 0 or rows[:, 3:].max() > 255:
            raise DataFileError(room.source, f"colours outside 0-255 (min {rows[:, 3:].min()}, max {rows[:, 3:].max()})")
        points = np.concatenate([rows[:, :3], rows[:, 3:] / 255.0], axis=1)
        return points, np.concatenate(labels)

    @cached_property
    def malformed_lines(self) -> list[tuple[str, int]]:
        """``(file, line number)`` of every malformed line skipped while reading this split's rooms."""
        return []

    # -- hdf5 blocks -----------------------------------------------------------------
    def _h5_files(self) -> list[Path]:
        files = list(self.raw_dir.glob("ply_data_all_*.h5"))
        number = lambda p: int(p.stem.rsplit("_", 1)[1]) if p.stem.rsplit("_", 1)[1].isdigit() else -1
        bad = [p.name for p in files if number(p) < 0]
        if bad:
            raise DataFileError(self.raw_dir, f"unexpected hdf5 file names {bad}; expected ply_data_all_<k>.h5")
        return sorted(files, key=number)

    @cached_property
    def _block_table(self) -> list[tuple[Path, int]]:
        """(file, row) of every stored block in release order, checked against room_filelist.txt."""
        table = []
        for path in self._h5_files():
            try:
                with h5py.File(path, "r") as h5:
                    data, label = h5["data"], h5["label"]
                    if data.ndim != 3 or data.shape[1:] != (4096, 9) or label.shape != data.shape[:2]:
                        raise DataFileError(path, f"data {data.shape} / label {label.shape}; expected [B, 4096, 9] / [B, 4096]")
                    table.extend((path, i) for i in range(data.shape[0]))
            except (OSError, KeyError) as exc:
                raise DataFileError(path, f"not a readable S3DIS block file with 'data' and 'label' ({exc})") from None
        return table

    def _hdf5_rooms(self) -> list[Room]:
        listing = self.raw_dir / "room_filelist.txt"
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if len(names) != len(self._block_table):
            raise DataFileError(listing, f"names {len(names)} blocks but the hdf5 files hold {len(self._block_table)}")
        rooms: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            match = _ROOM.match(name)
            if not match:
                raise DataFileError(listing, f"line {i + 1}: {name!r} is not Area_<N>_<room>")
            rooms.setdefault(name, []).append(i)
        out = []
        for name, blocks in rooms.items():
            area, room = _ROOM.match(name).groups()
            out.append(Room(f"Area_{area}/{room}", int(area), tuple(blocks)))
        return out

    def _load_hdf5_room(self, room: Room) -> tuple[np.ndarray, np.ndarray]:
        points, labels, by_file = [], [], {}
        for i in room.source:  # rows of one file are increasing: one read per file
            path, row = self._block_table[i]
            by_file.setdefault(path, []).append(row)
        for path, rows in by_file.items():
            with h5py.File(path, "r") as h5:
                points.append(h5["data"][rows].reshape(-1, 9))
                labels.append(h5["label"][rows].reshape(-1).astype(np.int64))
        label = np.concatenate(labels)
        if label.min() < 0 or label.max() >= len(S3DIS_CLASSES):
            raise DataFileError(self._block_table[room.source[0]][0],
                                f"{room.name}: labels outside [0, {len(S3DIS_CLASSES)})")
        return np.concatenate(points), label
