"""S3DIS on tiny trees in both published layouts: aligned rooms (with a malformed line) and hdf5 blocks."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssl3d.datasets import get_dataset
from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.prepare import prepare_dataset
from ssl3d.datasets.s3dis import read_annotation_file
from ssl3d.datasets.scene_dataset import S3DIS_CLASSES

MODALITIES = ("points", "point_labels")


def _write_object(path: Path, rng: np.random.Generator, n: int, origin, bad_line: str | None = None) -> None:
    xyz = origin + rng.uniform(0, 1.5, (n, 3))
    rgb = rng.integers(0, 256, (n, 3))
    lines = [f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz, rgb)]
    if bad_line is not None:
        lines.insert(2, bad_line)  # becomes line 3
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def aligned_tree(tmp_path: Path) -> Path:
    """``Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/<class>_<i>.txt`` for areas 1 and 5."""
    top = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version"
    rng = np.random.default_rng(0)
    for area, room in ((1, "office_1"), (1, "conferenceRoom_1"), (5, "hallway_6")):
        folder = top / f"Area_{area}" / room
        for k, cls in enumerate(("floor_1", "chair_1", "chair_2", "stairs_1", "ceiling_1")):
            bad = "19.0 -4.2 2.9 103 \x10100 99" if (area, cls) == (5, "ceiling_1") else None
            _write_object(folder / "Annotations" / f"{cls}.txt", rng, 40, (k * 0.5, 0, 0), bad)
        (folder / f"{room}.txt").write_text("whole-room file, not read\n")
    return top


def test_aligned_rooms_load_and_the_malformed_line_is_named(aligned_tree: Path, tmp_path: Path, caplog) -> None:
    root = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        prepare_dataset("s3dis", root=root, from_paths=[str(aligned_tree)], progress=False, echo=lambda _: None)
    bad_file = aligned_tree / "Area_5" / "hallway_6" / "Annotations" / "ceiling_1.txt"
    assert f"{bad_file}:3: skipped malformed line" in caplog.text
    cls = get_dataset("s3dis")
    cfg = cls.Config(block_points=32, min_block_points=8)
    test = cls("test", MODALITIES, cfg, root, progress=False)
    assert test.raw_identity() == {"source": "aligned-v1.2"}
    assert test.reports["rooms"].n_built == 0  # read from the cache that bench prepare built
    assert test.n_rooms == 1 and test.room_name(0) == "Area_5/hallway_6"
    points, labels = test.room_points(0)
    assert len(points) == 5 * 40  # the malformed line is left out, every good line kept
    assert 0 <= points[:, 3:].min() and points[:, 3:].max() <= 1  # colours scaled from 0-255
    names = [S3DIS_CLASSES[i] for i in np.unique(labels)]
    assert names == ["ceiling", "floor", "chair", "clutter"]  # stairs -> clutter (PointNet's convention)
    train = cls("train", MODALITIES, cfg, root, progress=False)
    assert train.n_rooms == 2 and set(train.block_areas.tolist()) == {1}
    item = train[0]
    assert item["points"].shape == (32, 9) and item["point_labels"].shape == (32,)


def test_read_annotation_file_reports_lines(tmp_path: Path) -> None:
    path = tmp_path / "wall_1.txt"
    path.write_text("1 2 3 4 5 6\n1 2 3 4 5\nx 2 3 4 5 6\n\n7 8 9 10 11 12\n")
    rows, bad = read_annotation_file(path)
    assert rows.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]
    assert bad == [(2, "1 2 3 4 5"), (3, "x 2 3 4 5 6")]


def _write_h5(path: Path, data: np.ndarray, label: np.ndarray) -> None:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("data", data=data)
        h5.create_dataset("label", data=label)


@pytest.fixture
def hdf5_tree(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """``indoor3d_sem_seg_hdf5_data``: two block files and room_filelist.txt, one name per block."""
    top = tmp_path / "indoor3d_sem_seg_hdf5_data"
    top.mkdir()
    rng = np.random.default_rng(1)
    data = rng.random((5, 4096, 9)).astype(np.float32)
    label = rng.integers(0, 13, (5, 4096)).astype(np.uint8)
    _write_h5(top / "ply_data_all_0.h5", data[:3], label[:3])
    _write_h5(top / "ply_data_all_1.h5", data[3:], label[3:])
    names = ["Area_1_office_1", "Area_1_office_1", "Area_5_hallway_1", "Area_5_hallway_1", "Area_2_WC_1"]
    (top / "room_filelist.txt").write_text("\n".join(names) + "\n")
    (top / "all_files.txt").write_text("ply_data_all_0.h5\nply_data_all_1.h5\n")
    return top, data, label


def test_hdf5_blocks_load_room_by_room(hdf5_tree, tmp_path: Path) -> None:
    top, data, label = hdf5_tree
    root = tmp_path / "data"
    prepare_dataset("s3dis", root=root, from_paths=[str(top)], progress=False, echo=lambda _: None)
    cls = get_dataset("s3dis")
    test = cls("test", MODALITIES, None, root, progress=False)
    assert test.raw_identity() == {"source": "hdf5"}
    assert test.n_rooms == 1 and test.room_name(0) == "Area_5/hallway_1"
    blocks = test.room_blocks(0, train=False)  # the release's own blocks, every stored point once
    assert len(blocks) == 2 and all(b.valid.all() for b in blocks)
    np.testing.assert_array_equal(test.block_tensor(0, blocks[1]).numpy(), data[3])  # block 2 of the room: file 1 row 0
    np.testing.assert_array_equal(test.room_points(0)[1], label[2:4].reshape(-1))
    train = cls("train", MODALITIES, None, root, progress=False)
    assert len(train) == 3 and sorted(set(train.block_areas.tolist())) == [1, 2]
    assert train[2]["points"].shape == (4096, 9)
    three = cls("train", ("points",), cls.Config(channels=3), root, progress=False)
    np.testing.assert_array_equal(three[0]["points"].numpy(), data[0, :, :3])


def test_hdf5_listing_that_disagrees_is_named(hdf5_tree, tmp_path: Path) -> None:
    top, _, _ = hdf5_tree
    (top / "room_filelist.txt").write_text("Area_1_office_1\n")
    root = tmp_path / "data"
    cls = get_dataset("s3dis")
    cls.fetch(root, [str(top)], progress=False)
    with pytest.raises(DataFileError, match=r"room_filelist.txt: names 1 blocks but the hdf5 files hold 5"):
        cls("test", MODALITIES, None, root, progress=False)


def test_a_folder_of_neither_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("nothing\n")
    with pytest.raises(DataFileError, match="Annotations"):
        get_dataset("s3dis").fetch(tmp_path / "data", [str(tmp_path / "junk")], progress=False)
