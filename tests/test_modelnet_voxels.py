"""ModelNet voxel releases (``<class>/{train,test}/<class>_NNNN.binvox``): tiny trees in the exact layout + the real sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_real_datasets import link_raw, make_modelnet40, make_modelnet_h5

from ssl3d.bench.cli import main
from ssl3d.bench.run.runner import data_key
from ssl3d.core.config import config_hash, to_dict
from ssl3d.datasets import get_dataset
from ssl3d.datasets.formats.binvox import read_binvox, write_binvox
from ssl3d.datasets.formats.modelnet import z_up_to_y_up_grid

CFG = {"categories": ("chair", "table"), "n_points": 64, "workers": 1, "voxel_resolution": 16, "view_size": 24}


def table_grid(d: int = 16) -> np.ndarray:
    """A table in ModelNet's Z-up file axes: a flat top at high z on four legs."""
    g = np.zeros((d, d, d), dtype=bool)
    g[2:14, 3:13, 11:13] = True  # top: 12 x 10, two voxels thick, at z = 11..12
    for x in (2, 13):
        for y in (3, 12):
            g[x, y, 0:11] = True  # one-voxel legs
    return g


def chair_grid(d: int = 16) -> np.ndarray:
    g = np.zeros((d, d, d), dtype=bool)
    g[4:12, 4:12, 6:8] = True  # seat
    g[4:12, 10:12, 8:15] = True  # back
    g[4:6, 4:6, 0:6] = g[10:12, 4:6, 0:6] = g[4:6, 10:12, 0:6] = g[10:12, 10:12, 0:6] = True
    return g


def make_modelnet10_voxels(folder: Path) -> Path:
    """``folder/ModelNet10``-like voxel release: chair 1 train + 1 test, table 3 train (1 corrupt, 1 empty) + 1 test."""
    base = folder / "modelnet10_binvox32"
    grids = {"chair/train/chair_0001": chair_grid(), "chair/test/chair_0010": chair_grid(),
             "table/train/table_0001": table_grid(), "table/train/table_0003": np.zeros((16, 16, 16), dtype=bool),
             "table/test/table_0020": table_grid(), "table/train/table_0002": table_grid()}
    for rel, grid in grids.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        write_binvox(base / f"{rel}.binvox", grid)
    corrupt = base / "table/train/table_0002.binvox"
    corrupt.write_bytes(corrupt.read_bytes()[:-4])  # truncated run-length data
    for name in ("bathtub", "bed", "desk", "dresser", "monitor", "night_stand", "sofa", "toilet"):
        for split in ("train", "test"):  # the other classes, so that the full class list indexes too
            write_binvox(base / name / split / f"{name}_0001.binvox", chair_grid())
    return base


def test_voxel_release_detected_skips_corrupt_and_empty_by_name_and_reads_the_file_grid(tmp_path):
    raw = make_modelnet10_voxels(tmp_path / "src")
    cls = get_dataset("modelnet10")
    assert cls.fetch(tmp_path, raw, progress=False) == raw.resolve()  # linked in place
    train = cls("train", ("points", "voxels"), cls.Config(**CFG), tmp_path, progress=False)
    assert train.source == "binvox"
    assert [train.shape_name(i) for i in range(len(train))] == ["chair_0001", "table_0001"]
    for report in train.reports.values():
        assert report.n_items == 4 and report.n_valid == 2
        assert "ends after" in report.skipped["table_0002"] and "table_0002.binvox" in report.skipped["table_0002"]
        assert "occupancy grid is empty" in report.skipped["table_0003"]
    # voxels are read, not recomputed: the cache holds the file's grid (rotated to +Y up), voxel for voxel
    for i, rel in enumerate(["chair/train/chair_0001", "table/train/table_0001"]):
        expected = z_up_to_y_up_grid(read_binvox(raw / f"{rel}.binvox"))
        np.testing.assert_array_equal(train[i]["voxels"].numpy(), expected.astype(np.float32))
    pooled = cls("train", ("voxels",), cls.Config(**{**CFG, "voxel_resolution": 8}), tmp_path, progress=False)
    grid = z_up_to_y_up_grid(table_grid())
    np.testing.assert_array_equal(pooled[1]["voxels"].numpy() > 0, grid.reshape(8, 2, 8, 2, 8, 2).any(axis=(1, 3, 5)))


def test_table_from_z_up_voxels_stands_upright_in_every_modality(tmp_path):
    cls = get_dataset("modelnet10")
    cls.fetch(tmp_path, make_modelnet10_voxels(tmp_path / "src"), progress=False)
    test = cls("test", ("points", "voxels", "views"), cls.Config(**CFG), tmp_path, progress=False)
    table = test[1]
    occ = table["voxels"].numpy() > 0
    per_height = occ.sum(axis=(0, 2))  # occupied voxels per y layer
    assert per_height[11] == per_height[12] == 120 and per_height[:11].tolist() == [4] * 11  # top up high, legs below
    points = table["points"].numpy()
    y = points[:, 1]
    top = points[y > y.max() - 0.25]  # the top plate: spans the table's width and depth
    assert np.ptp(top[:, 0]) > 0.8 * np.ptp(points[:, 0]) and np.ptp(top[:, 2]) > 0.8 * np.ptp(points[:, 2])
    assert (y < y.max() - 0.5).mean() < 0.4  # legs hold few of the points
    # the mesh the other modalities come from agrees with the grid: 13 voxels tall along y, 12 wide along x
    mesh, _ = test.load_mesh(test.shapes[1])
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.extents, [12, 13, 10], atol=0.6)
    assert table["views"].shape == (12, 1, 24, 24) and table["views"].std() > 0.05


def test_off_settings_are_unchanged_and_voxel_caches_have_their_own_keys(tmp_path):
    off = get_dataset("modelnet40")
    make_modelnet40(link_raw(tmp_path, "modelnet40"))
    cfg = off.Config(categories=("chair", "toilet"), n_points=64, workers=1)
    ds = off("train", ("points",), cfg, tmp_path, progress=False, prepare=False)
    # exactly what an OFF dataset's settings were before voxel releases existed (HEAD f563070)
    assert ds.settings("points") == {"dataset": "modelnet40", "version": "1", "group": "points",
                                     "categories": ["chair", "toilet"], "n_points": 64, "dense_factor": 8}
    assert ds.settings("voxels") == {"dataset": "modelnet40", "version": "1", "group": "voxels",
                                     "categories": ["chair", "toilet"], "voxel_resolution": 32}
    assert ds.cache_path("points").name == f"train-points-{config_hash(ds.settings('points'))}.h5"
    vox_cls = get_dataset("modelnet10")
    vox_cls.fetch(tmp_path, make_modelnet10_voxels(tmp_path / "src"), progress=False)
    vox = vox_cls("train", ("points",), vox_cls.Config(**CFG), tmp_path, progress=False, prepare=False)
    points = vox.settings("points")
    assert points["source"] == "binvox" and points["surface"]["sigma"] == 0.5 and points["surface"]["level"] == 0.5
    assert "skimage" in points["surface"]["extractor"]
    assert vox.settings("voxels")["source"] == "binvox" and "surface" not in vox.settings("voxels")
    # the leaderboard's data key: unchanged for OFF (the config alone), distinct for the binvox release
    assert data_key(cfg, ds) == config_hash({k: v for k, v in to_dict(cfg).items() if k != "workers"}, length=8)
    make_modelnet40(link_raw(tmp_path / "off10", "modelnet10")).rename(tmp_path / "off10" / "modelnet10" / "raw" / vox_cls.raw_name)
    cfg10 = vox_cls.Config(categories=("chair", "toilet"), n_points=64, workers=1)
    off10 = vox_cls("train", ("points",), cfg10, tmp_path / "off10", progress=False, prepare=False)
    assert off10.raw_identity() == {} and vox.raw_identity() == {"source": "binvox"}
    assert data_key(cfg10, vox) != data_key(cfg10, off10)  # same settings, different release


def test_folder_of_neither_layout_names_both_and_h5_folder_points_to_modelnet40_h5(tmp_path, capsys):
    other = tmp_path / "other"
    (other / "chair" / "train").mkdir(parents=True)
    (other / "chair" / "train" / "chair_0001.ply").write_text("ply\n")
    assert main(["prepare", "modelnet10", "--from", str(other), "--data-root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "*/train/*.off, */test/*.off (OFF meshes) or */train/*.binvox, */test/*.binvox (binvox voxel grids)" in err
    h5_folder, _ = make_modelnet_h5(tmp_path / "download", np.random.default_rng(0))
    assert main(["prepare", "modelnet10", "--from", str(h5_folder), "--data-root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"run `bench prepare modelnet40-h5 --from {h5_folder}`" in err and "binvox voxel grids" in err


def test_real_modelnet10_binvox_sample(tmp_path, shared_data):
    folder = shared_data / "modelnet10_binvox32"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    cls = get_dataset("modelnet10")
    cls.fetch(tmp_path, folder, progress=False)
    cfg = cls.Config(categories=("bathtub", "table"), n_points=128, workers=2)
    test = cls("test", ("points", "voxels"), cfg, tmp_path, progress=False)
    report = test.reports["voxels"]
    # bathtub 50 + table 100 test grids, of which 6 tables are empty (the release's failed voxelisations)
    assert report.n_items == 150 and report.n_valid == 144
    assert sorted(report.skipped) == ["table_0408", "table_0434", "table_0447", "table_0461", "table_0463", "table_0490"]
    i = next(k for k in range(len(test)) if test.shape_name(k) == "table_0393")
    expected = z_up_to_y_up_grid(read_binvox(folder / "table/test/table_0393.binvox", allow_empty_runs=True))
    np.testing.assert_array_equal(test[i]["voxels"].numpy() > 0, expected)
    # tables stand upright: the top plate makes the widest of the three highest layers wider than the median
    # layer; scored along each of the six axis directions, +y (axis 1) must win clearly (upside down: -y)
    tables = [k for k in range(len(test)) if test.labels[k] == 1]
    score = {}
    for k in tables:
        occ = test[k]["voxels"].numpy() > 0
        for axis in range(3):
            layers = occ.sum(axis=tuple(a for a in range(3) if a != axis))
            filled = np.flatnonzero(layers)
            for sign, end in (("+", filled[-3:]), ("-", filled[:3])):
                score[sign + "xyz"[axis]] = score.get(sign + "xyz"[axis], 0) + (layers[end].max() > np.median(layers[filled]))
    assert score["+y"] / len(tables) > 0.85
    assert all(score["+y"] > value + 0.1 * len(tables) for key, value in score.items() if key != "+y"), score
