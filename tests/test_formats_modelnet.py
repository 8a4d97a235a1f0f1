"""ModelNet readers: OFF meshes, PointNet HDF5, PointNet++ normal_resampled text, and the real samples."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import trimesh

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.modelnet import (
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    Z_UP_TO_Y_UP,
    index_modelnet_off,
    index_normal_resampled,
    read_modelnet_h5,
    read_normal_resampled_txt,
    z_up_to_y_up,
)
from ssl3d.datasets.formats.off import read_off

# ---------------------------------------------------------------- OFF


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("ascii"))
    return path


def test_off_glued_header_comments_blank_lines_crlf_quads_and_colours(tmp_path):
    text = (
        "OFF5 3 0\n"  # counts glued to the keyword, as in ~1% of ModelNet files
        "# a comment line\n"
        "\n"
        "0 0 0   \n"
        "1 0 0 # trailing comment\n"
        "1 1 0\n"
        "0 1 0\n"
        "0.5 0.5 2.5\n"
        "4 0 1 2 3 255 0 0\n"  # quad with an RGB colour after the indices
        "3 0 1 4\n"
        "5 0 1 2 3 4 0.5 0.5 0.5 1.0\n"  # pentagon with RGBA
    )
    mesh = read_off(_write(tmp_path / "a.off", text, newline="\r\n"))
    assert isinstance(mesh, trimesh.Trimesh)
    np.testing.assert_array_equal(
        mesh.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 2.5]]
    )
    # Fan triangulation keeps file order: quad -> 2, triangle -> 1, pentagon -> 3.
    np.testing.assert_array_equal(
        mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 4], [0, 1, 2], [0, 2, 3], [0, 3, 4]]
    )


def test_off_counts_on_own_line_and_quad_area(tmp_path):
    mesh = read_off(_write(tmp_path / "q.off", "OFF\n4 1 0\n0 0 0\n2 0 0\n2 3 0\n0 3 0\n4 0 1 2 3\n"))
    assert mesh.faces.shape == (2, 3)
    assert mesh.area == pytest.approx(6.0)  # 2 x 3 rectangle, independent of the split


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "expected 2 faces, file ends after 1"),
        ("OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n", "expected 4 vertices, file ends after 3"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "vertex index 3 out of range for 3 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "line 4: vertex '1 x 0' is not numeric"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "line 4: a vertex needs x y z"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "face announces 4 vertices but lists 3"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "at least 3 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "unexpected data line"),
        ("PLY\n3 1 0\n", "expected an 'OFF' header"),
        ("4OFF\n3 1 0\n", "unsupported OFF variant"),
        ("OFF\nthree 1 0\n", "are not integers"),
        ("OFF\n0 0 0\n", "a mesh needs both"),
        ("", "file is empty"),
    ],
)
def test_off_malformed_raises_naming_file(tmp_path, text, fragment):
    path = _write(tmp_path / "bad.off", text)
    with pytest.raises(DataFileError, match=fragment) as info:
        read_off(path)
    assert info.value.path == str(path)


def test_off_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="file not found"):
        read_off(tmp_path / "nope.off")


# ---------------------------------------------------------------- rotation


def test_z_up_to_y_up_maps_axes_and_is_a_rotation():
    axes = np.eye(3)
    out = z_up_to_y_up(axes)
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # x, y, z images
    assert np.linalg.det(Z_UP_TO_Y_UP) == pytest.approx(1.0)
    np.testing.assert_allclose(Z_UP_TO_Y_UP @ Z_UP_TO_Y_UP.T, np.eye(3))
    t = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    assert torch.equal(z_up_to_y_up(t), torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64))
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 0, 3]], [[0, 1, 2]], process=False)
    rotated = z_up_to_y_up(mesh)
    np.testing.assert_allclose(rotated.vertices, [[0, 0, 0], [1, 0, 0], [0, 3, 0]], atol=1e-12)
    np.testing.assert_array_equal(mesh.vertices[2], [0, 0, 3])  # input untouched
    with pytest.raises(ValueError, match="shape"):
        z_up_to_y_up(np.zeros((4, 2)))


# ---------------------------------------------------------------- OFF archive index


def test_index_modelnet_off_sorted_and_labelled(tmp_path):
    for cls, split, n in [("bed", "train", 3), ("bed", "test", 1), ("chair", "train", 2), ("chair", "test", 1)]:
        for i in reversed(range(1, n + 1)):
            _write(tmp_path / cls / split / f"{cls}_{i:04d}.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (tmp_path / "bed" / "train" / ".DS_Store").write_text("x")
    records = index_modelnet_off(tmp_path, "train", classes=("bed", "chair"))
    assert [r.shape_id for r in records] == ["bed_0001", "bed_0002", "bed_0003", "chair_0001", "chair_0002"]
    assert [r.label for r in records] == [0, 0, 0, 1, 1]
    assert records[0].path == tmp_path / "bed" / "train" / "bed_0001.off"
    with pytest.raises(DataFileError, match="missing folder for class 'desk'"):
        index_modelnet_off(tmp_path, "test", classes=("bed", "desk"))
    with pytest.raises(ValueError, match="split"):
        index_modelnet_off(tmp_path, "val", classes=("bed",))


def test_class_lists():
    assert len(MODELNET40_CLASSES) == 40 and list(MODELNET40_CLASSES) == sorted(MODELNET40_CLASSES)
    assert len(MODELNET10_CLASSES) == 10 and set(MODELNET10_CLASSES) <= set(MODELNET40_CLASSES)


# ---------------------------------------------------------------- PointNet HDF5


def _h5(path: Path, data: np.ndarray, label: np.ndarray, with_label: bool = True) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = data
        if with_label:
            f["label"] = label
        f["normal"] = np.zeros_like(data)


def test_read_modelnet_h5_resolves_list_by_basename_in_order(tmp_path):
    names = ["airplane", "bathtub", "bed"]
    (tmp_path / "shape_names.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 8, 3), dtype=np.float32), rng.random((2, 8, 3), dtype=np.float32)
    _h5(tmp_path / "ply_data_train1.h5", a, np.array([[0], [1], [2], [1]], dtype=np.uint8))
    _h5(tmp_path / "ply_data_train0.h5", b, np.array([[2], [2]], dtype=np.uint8))
    # The list's order (1 then 0) wins over the names; the machine-specific prefix is ignored.
    (tmp_path / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\ndata/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"
    )
    points, labels, classes = read_modelnet_h5(tmp_path, "train")
    assert points.dtype == np.float32 and points.shape == (6, 8, 3)
    np.testing.assert_array_equal(points, np.concatenate([a, b]))
    np.testing.assert_array_equal(labels, [0, 1, 2, 1, 2, 2])
    assert labels.dtype == np.int64 and classes == names


def test_read_modelnet_h5_malformed(tmp_path):
    (tmp_path / "shape_names.txt").write_text("a\nb\n")
    (tmp_path / "test_files.txt").write_text("ply_data_test0.h5\n")
    path = tmp_path / "ply_data_test0.h5"
    _h5(path, np.zeros((2, 4, 3), np.float32), np.array([[0], [5]]))
    with pytest.raises(DataFileError, match="outside 0..1") as info:
        read_modelnet_h5(tmp_path, "test")
    assert info.value.path == str(path)
    _h5(path, np.zeros((2, 4, 3), np.float32), None, with_label=False)
    with pytest.raises(DataFileError, match="missing dataset 'label'"):
        read_modelnet_h5(tmp_path, "test")
    path.write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match="HDF5"):
        read_modelnet_h5(tmp_path, "test")
    path.unlink()
    with pytest.raises(DataFileError, match="file not found"):
        read_modelnet_h5(tmp_path, "test")


# ---------------------------------------------------------------- normal_resampled


def _normal_resampled_tree(root: Path) -> dict[str, np.ndarray]:
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    (root / "modelnet40_train.txt").write_text("range_hood_0002\nflower_pot_0001\nnight_stand_0010\n")
    (root / "modelnet40_test.txt").write_text("night_stand_0011\n")
    rng = np.random.default_rng(1)
    arrays = {}
    for shape in ["range_hood_0002", "flower_pot_0001", "night_stand_0010", "night_stand_0011"]:
        cls = shape.rsplit("_", 1)[0]
        arr = rng.uniform(-1, 1, (5, 6)).astype(np.float32)
        (root / cls).mkdir(exist_ok=True)
        (root / cls / f"{shape}.txt").write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in arr) + "\n")
        arrays[shape] = arr
    return arrays


def test_normal_resampled_index_and_read(tmp_path):
    arrays = _normal_resampled_tree(tmp_path)
    records = index_normal_resampled(tmp_path, "train")
    # Classes with underscores are cut at the last "_" only; labels follow the names file.
    assert [(r.category, r.label, r.shape_id) for r in records] == [
        ("flower_pot", 15, "flower_pot_0001"),
        ("night_stand", 23, "night_stand_0010"),
        ("range_hood", 28, "range_hood_0002"),
    ]
    points, normals = read_normal_resampled_txt(records[1].path)
    np.testing.assert_allclose(points, arrays["night_stand_0010"][:, :3], atol=1e-6)
    np.testing.assert_allclose(normals, arrays["night_stand_0010"][:, 3:], atol=1e-6)
    assert points.dtype == normals.dtype == np.float32
    assert [r.shape_id for r in index_normal_resampled(tmp_path, "test")] == ["night_stand_0011"]


def test_normal_resampled_modelnet10_lists(tmp_path):
    _normal_resampled_tree(tmp_path)
    (tmp_path / "modelnet10_shape_names.txt").write_text("\n".join(MODELNET10_CLASSES) + "\n")
    (tmp_path / "modelnet10_test.txt").write_text("night_stand_0011\n")
    (records,) = index_normal_resampled(tmp_path, "test", num_classes=10)
    assert records.label == MODELNET10_CLASSES.index("night_stand")
    with pytest.raises(ValueError, match="num_classes"):
        index_normal_resampled(tmp_path, "test", num_classes=20)


def test_normal_resampled_malformed(tmp_path):
    _normal_resampled_tree(tmp_path)
    (tmp_path / "modelnet40_test.txt").write_text("widget_0001\n")
    with pytest.raises(DataFileError, match="'widget_0001'") as info:
        index_normal_resampled(tmp_path, "test")
    assert info.value.path.endswith("modelnet40_test.txt")
    (tmp_path / "modelnet40_test.txt").write_text("night_stand_0099\n")
    with pytest.raises(DataFileError, match="file not found"):
        index_normal_resampled(tmp_path, "test")
    (tmp_path / "modelnet40_shape_names.txt").write_text("airplane\nbed\n")
    with pytest.raises(DataFileError, match="expected 40 class names, found 2"):
        index_normal_resampled(tmp_path, "train")
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3,4,5,6\n1,2,3,4,5\n")
    with pytest.raises(DataFileError, match="six comma-separated"):
        read_normal_resampled_txt(bad)
    bad.write_text("1,2,3,4,5\n1,2,3,4,5\n")
    with pytest.raises(DataFileError, match="expected 6 values per line"):
        read_normal_resampled_txt(bad)
    bad.write_text("1,2,3,4,5,nan\n")
    with pytest.raises(DataFileError, match="non-finite"):
        read_normal_resampled_txt(bad)
    bad.write_text("")
    with pytest.raises(DataFileError, match="no points"):
        read_normal_resampled_txt(bad)


# ---------------------------------------------------------------- real samples (../shared/data)


@pytest.mark.shared_data
def test_real_toilet_off(shared_data):
    path = shared_data / "modelnet_off" / "toilet_0345.off"
    mesh = read_off(path)
    assert mesh.vertices.shape == (6276, 3) and mesh.faces.shape == (6116, 3)
    # Independent parse: the file is "OFF", counts, then one vertex per line.
    lines = path.read_text().splitlines()
    expected = np.array([[float(v) for v in line.split()] for line in lines[2 : 2 + 6276]])
    np.testing.assert_array_equal(mesh.vertices, expected)
    first_face = [int(v) for v in lines[2 + 6276].split()[1:4]]
    np.testing.assert_array_equal(mesh.faces[0], first_face)
    # Z-up: after the rotation, the new height range (y) is the old z range.
    up = z_up_to_y_up(mesh)
    np.testing.assert_allclose(up.bounds[:, 1], mesh.bounds[:, 2])


@pytest.mark.shared_data
def test_real_normal_resampled_samples(shared_data):
    root = shared_data / "modelnet40_normal_resampled_mini"
    names = (root / "modelnet40_shape_names.txt").read_text().split()
    assert names == list(MODELNET40_CLASSES)
    train, test = index_normal_resampled(root, "train"), index_normal_resampled(root, "test")
    assert len(train) == 36 and len(test) == 3
    assert {r.category for r in train + test} == set(MODELNET40_CLASSES) - {"door"}
    for r in train + test:
        assert names[r.label] == r.category and r.path.parent.name == r.category
    extents = {}
    for r in train + test:
        points, normals = read_normal_resampled_txt(r.path)
        assert points.shape == normals.shape == (10000, 3)
        assert np.linalg.norm(points, axis=1).max() < 1.01
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=0.01)
        extents[r.category] = np.ptp(points, axis=0)
    # +Y up: tall objects are longest along Y, flat ones shortest along Y.
    for tall in ("bottle", "lamp", "person"):
        assert extents[tall].argmax() == 1, tall
    for flat in ("airplane", "keyboard"):
        assert extents[flat].argmin() == 1, flat
