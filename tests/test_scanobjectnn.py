"""``scanobjectnn``: the three main-split variants from tiny h5 files in the release's exact layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssl3d.bench.cli import main
from ssl3d.bench.run.runner import data_key
from ssl3d.datasets import DataFileError, DatasetNotPreparedError, get_dataset
from ssl3d.datasets.modalities.points import farthest_point_indices
from ssl3d.datasets.scanobjectnn import SCANOBJECTNN_CLASSES, SCANOBJECTNN_FILES

PER_CLASS = {"train": 2, "test": 1}  # objects per class in each tiny file
N_STORED = 2048  # points per object, as in the release


def write_release(folder: Path, variants=("obj_only", "obj_bg", "pb_t50_rs")) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """``folder/h5_files/main_split*/...h5`` for ``variants``: ``data`` float32 [N, 2048, 3], ``label`` int64 [N]
    and the release's extra ``mask`` key; labels interleave the 15 classes; each variant's clouds differ."""
    out = {}
    for v, variant in enumerate(variants):
        for split, per_class in PER_CLASS.items():
            rng = np.random.default_rng([v, len(split)])
            labels = np.tile(np.arange(15, dtype=np.int64), per_class)
            points = rng.normal(size=(len(labels), N_STORED, 3)).astype(np.float32) * (1 + v)
            path = folder / "h5_files" / SCANOBJECTNN_FILES[variant][split]
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as h5:
                h5["data"], h5["label"] = points, labels
                h5["mask"] = np.zeros(points.shape[:2], dtype=np.int32)
            out[(variant, split)] = (points, labels)
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scanobjectnn-src")
    return folder / "h5_files", write_release(folder)


def linked_root(tmp_path: Path, raw: Path) -> Path:
    """A data root whose scanobjectnn raw folder is ``raw`` (what `bench prepare --from FOLDER` records)."""
    link = tmp_path / "scanobjectnn" / "raw" / "h5_files.link"
    link.parent.mkdir(parents=True)
    link.write_text(f"{raw}\n")
    return tmp_path


def test_class_names_are_the_official_fifteen_in_order():
    assert SCANOBJECTNN_CLASSES == ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf",
                                    "table", "bed", "pillow", "sink", "sofa", "toilet")


@pytest.mark.parametrize("variant", ["obj_only", "obj_bg", "pb_t50_rs"])
def test_each_variant_reads_its_own_files(tmp_path, release, variant):
    raw, data = release
    root = linked_root(tmp_path, raw)
    cls = get_dataset("scanobjectnn")
    cfg = cls.Config(variant=variant, n_points=16, point_order="first", workers=1)
    for split in ("train", "test"):
        points, labels = data[(variant, split)]
        ds = cls(split, ("points",), cfg, root, progress=False)
        assert len(ds) == 15 * PER_CLASS[split] and ds.class_names == SCANOBJECTNN_CLASSES
        np.testing.assert_array_equal(ds.labels, labels)
        np.testing.assert_array_equal(ds[3]["points"].numpy(), points[3, :16])  # stored order, that variant's cloud
        assert ds.shape_name(3) == f"{variant}/{split}_00003_cabinet"
        assert ds.cache_path("points").name.startswith(f"{split}-points-")


def test_fps_points_are_unit_sphere_and_variant_keys_caches_and_data_key(tmp_path, release):
    raw, data = release
    root = linked_root(tmp_path, raw)
    cls = get_dataset("scanobjectnn")
    assert cls.Config().n_points == 2048 and cls.Config().variant == "pb_t50_rs"
    a_cfg, b_cfg = cls.Config(variant="obj_bg", n_points=32, workers=1), cls.Config(variant="obj_only", n_points=32, workers=1)
    a = cls("test", ("points",), a_cfg, root, progress=False)
    b = cls("test", ("points",), b_cfg, root, progress=False)
    p = a[0]["points"].numpy()
    assert p.shape == (32, 3)
    assert np.linalg.norm(p, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    # the FPS subset of the stored cloud, centred at its bounding-box centre and scaled into the unit sphere
    keep = farthest_point_indices(data[("obj_bg", "test")][0][0], 32)
    kept = data[("obj_bg", "test")][0][0][keep].astype(np.float64)
    centred = kept - (kept.min(0) + kept.max(0)) / 2
    np.testing.assert_allclose(p, centred / np.linalg.norm(centred, axis=1).max(), atol=1e-5)
    assert a.cache_path("points") != b.cache_path("points")
    assert a.settings("points")["variant"] == "obj_bg" and b.raw_identity() == {"variant": "obj_only"}
    assert data_key(a_cfg, a) != data_key(b_cfg, b)
    assert not np.allclose(a[0]["points"].numpy(), b[0]["points"].numpy())


def test_mesh_modalities_refused_with_a_message(tmp_path, release):
    root = linked_root(tmp_path, release[0])
    cls = get_dataset("scanobjectnn")
    with pytest.raises(ValueError, match=r"scanobjectnn ships point clouds only; voxels/views/image need meshes"):
        cls("train", ("points", "voxels"), cls.Config(variant="obj_bg"), root)
    with pytest.raises(ValueError, match="cannot provide normals"):
        cls("train", ("normals",), cls.Config(variant="obj_bg"), root)


def test_missing_variant_file_is_named(tmp_path):
    write_release(tmp_path / "src", variants=("obj_bg",))  # main_split only: no main_split_nobg
    root = linked_root(tmp_path / "data", tmp_path / "src" / "h5_files")
    cls = get_dataset("scanobjectnn")
    cls("test", ("points",), cls.Config(variant="obj_bg", n_points=8, workers=1), root, progress=False)
    with pytest.raises(DataFileError, match=r"main_split_nobg/test_objectdataset\.h5: file not found"):
        cls("test", ("points",), cls.Config(variant="obj_only"), root, progress=False)
    with pytest.raises(DataFileError, match=r"main_split/test_objectdataset_augmentedrot_scale75\.h5: file not found"):
        cls("test", ("points",), cls.Config(variant="pb_t50_rs"), root, progress=False)


@pytest.mark.parametrize("damage, message", [
    ("garbage", r"test_objectdataset\.h5: not a readable HDF5 file"),
    ("no-label", r"test_objectdataset\.h5: missing dataset 'label' \(has: data, mask\)"),
    ("no-data", r"test_objectdataset\.h5: missing dataset 'data' \(has: label\)"),
    ("bad-shape", r"test_objectdataset\.h5: 'data' must have shape \[N, P, 3\]"),
    ("bad-label", r"test_objectdataset\.h5: 'label' values span 1\.\.15, outside 0\.\.14"),
    ("nan", r"test_objectdataset\.h5: 'data' must hold finite"),
])
def test_damaged_file_is_named_with_the_key(tmp_path, damage, message):
    write_release(tmp_path / "src", variants=("obj_bg",))
    path = tmp_path / "src" / "h5_files" / "main_split" / "test_objectdataset.h5"
    if damage == "garbage":
        path.write_bytes(b"\x00not an hdf5 file" * 10)
    else:
        with h5py.File(path, "r+") as h5:
            if damage == "no-label":
                del h5["label"]
            elif damage == "no-data":
                del h5["data"], h5["mask"]
            elif damage == "bad-shape":
                del h5["data"]
                h5["data"] = np.zeros((15, 2048, 2), dtype=np.float32)
            elif damage == "bad-label":
                h5["label"][0] = 15
            else:
                h5["data"][0, 0, 0] = np.nan
    root = linked_root(tmp_path / "data", tmp_path / "src" / "h5_files")
    cls = get_dataset("scanobjectnn")
    with pytest.raises(DataFileError, match=message):
        cls("test", ("points",), cls.Config(variant="obj_bg"), root, progress=False)
    cls("train", ("points",), cls.Config(variant="obj_bg", n_points=8, workers=1), root, progress=False)  # intact


def test_prepare_from_folder_and_zip_and_never_downloads(tmp_path, capsys):
    write_release(tmp_path / "src", variants=("obj_bg",))
    folder = tmp_path / "src" / "h5_files"
    small = ["--set", "data.variant=obj_bg", "--set", "data.n_points=8", "--set", "data.workers=1"]
    # not prepared: the message says it is distributed on request and how to use --from; nothing is fetched
    assert main(["prepare", "scanobjectnn", "--data-root", str(tmp_path / "none"), *small]) == 2
    err = capsys.readouterr().err
    assert "distributed on request" in err and "terms of use" in err and "--from" in err
    assert not (tmp_path / "none" / "scanobjectnn" / "downloads").exists()
    with pytest.raises(DatasetNotPreparedError, match="scanobjectnn is not prepared.*distributed on request"):
        get_dataset("scanobjectnn")("test", root=tmp_path / "none")
    # --from the extracted folder: used in place
    assert main(["prepare", "scanobjectnn", "--from", str(folder), "--data-root", str(tmp_path / "a"), *small]) == 0
    out = capsys.readouterr().out
    assert "scanobjectnn/train: 30 shapes" in out and "scanobjectnn/test: 15 shapes" in out
    assert (tmp_path / "a" / "scanobjectnn" / "raw" / "h5_files.link").read_text().strip() == str(folder.resolve())
    # --from the archive, laid out as the release's h5_files.zip
    archive = tmp_path / "h5_files.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
    assert main(["prepare", "scanobjectnn", "--from", str(archive), "--data-root", str(tmp_path / "b"), *small]) == 0
    assert (tmp_path / "b" / "scanobjectnn" / "raw" / "h5_files" / "main_split" / "test_objectdataset.h5").is_file()
    assert "scanobjectnn/test: 15 shapes" in capsys.readouterr().out
