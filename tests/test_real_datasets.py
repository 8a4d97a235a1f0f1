"""Real-dataset classes over tiny fake datasets in the exact on-disk formats (+ the real samples in shared/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from ssl3d.datasets import DatasetNotPreparedError, get_dataset
from ssl3d.datasets.formats.binvox import write_binvox

MODELNET_CFG = {"categories": ("chair", "toilet"), "n_points": 64, "workers": 1, "voxel_resolution": 16, "view_size": 32}


# -- fake dataset builders (also used by test_prepare.py) ------------------------------------------
def box_off(dx: float, dy: float, dz: float) -> str:
    """A closed, outward-oriented box [0,dx]x[0,dy]x[0,dz] as OFF text with quad faces."""
    verts = [(x, y, z) for x in (0, dx) for y in (0, dy) for z in (0, dz)]  # index 4*ix + 2*iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = ["OFF", f"{len(verts)} {len(quads)} 0", *(f"{x} {y} {z}" for x, y, z in verts), *(f"4 {a} {b} {c} {d}" for a, b, c, d in quads)]
    return "\n".join(lines) + "\n"


def box_obj(dx: float, dy: float, dz: float) -> str:
    """The same box as a Wavefront OBJ (1-based indices)."""
    verts = [(x, y, z) for x in (0, dx) for y in (0, dy) for z in (0, dz)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return "\n".join([*(f"v {x} {y} {z}" for x, y, z in verts), *(f"f {a+1} {b+1} {c+1} {d+1}" for a, b, c, d in quads)]) + "\n"


def make_modelnet40(folder: Path, real_toilet: Path | None = None) -> Path:
    """``folder/ModelNet40``: chair 2 train + 1 test (1x2x3 boxes, Z tallest), toilet 2 train + 1 corrupt, test 1-2."""
    base = folder / "ModelNet40"
    files = {
        "chair/train/chair_0001.off": box_off(1, 2, 3), "chair/train/chair_0002.off": box_off(1.2, 2, 3),
        "chair/test/chair_0010.off": box_off(1, 2, 3.3),
        "toilet/train/toilet_0001.off": box_off(1, 1.5, 2), "toilet/train/toilet_0002.off": box_off(1, 1.6, 2),
        "toilet/train/toilet_0009.off": "OFF\n4 2 0\n0 0 0\n1 0 0\n",  # truncated: 2 of 4 vertices
        "toilet/test/toilet_0020.off": box_off(1, 1.5, 2),
    }
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    if real_toilet is not None:
        shutil.copy(real_toilet, base / "toilet/test/toilet_0345.off")
    return base


def make_modelnet_h5(folder: Path, rng: np.random.Generator) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``folder/modelnet40_ply_hdf5_2048`` with 2 classes: train 4 clouds, test 2 clouds of 32 points."""
    base = folder / "modelnet40_ply_hdf5_2048"
    base.mkdir(parents=True)
    (base / "shape_names.txt").write_text("airplane\nbathtub\n")
    data = {}
    for split, n in (("train", 4), ("test", 2)):
        points = (rng.normal(size=(n, 32, 3)) * [1.0, 2.0, 0.5] + 3.0).astype(np.float32)
        labels = (np.arange(n) % 2).astype(np.uint8)[:, None]
        with h5py.File(base / f"ply_data_{split}0.h5", "w") as h5:
            h5["data"], h5["label"] = points, labels
        (base / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
        data[split] = (points, labels[:, 0].astype(np.int64))
    return base, data


SHAPENET_SYNSETS = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343", "Chair": "03001627",
    "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134", "Lamp": "03636649", "Laptop": "03642806",
    "Motorbike": "03790512", "Mug": "03797390", "Pistol": "03948459", "Rocket": "04099429",
    "Skateboard": "04225943", "Table": "04379243",
}


def make_shapenetpart(folder: Path, rng: np.random.Generator) -> Path:
    """ShapeNetPart ``_normal`` release: train Airplane 2 + Bag 2, val Airplane 1, test Airplane 1 + Bag 1; 20 points each."""
    base = folder / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (base / "train_test_split").mkdir(parents=True)
    (base / "synsetoffset2category.txt").write_text("".join(f"{c}\t{s}\n" for c, s in SHAPENET_SYNSETS.items()))
    parts = {"Airplane": [0, 1, 2, 3], "Bag": [4, 5]}
    splits = {"train": [("Airplane", "a1"), ("Airplane", "a2"), ("Bag", "b1"), ("Bag", "b2")],
              "val": [("Airplane", "a3")], "test": [("Airplane", "a4"), ("Bag", "b3")]}
    for split, shapes in splits.items():
        entries = []
        for category, shape in shapes:
            synset = SHAPENET_SYNSETS[category]
            (base / synset).mkdir(exist_ok=True)
            xyz = rng.normal(size=(20, 3)) * 0.3
            normals = rng.normal(size=(20, 3))
            labels = rng.choice(parts[category], size=20)
            rows = np.column_stack([xyz, normals, labels])
            np.savetxt(base / synset / f"{shape}.txt", rows, fmt="%.6f %.6f %.6f %.6f %.6f %.6f %d")
            entries.append(f"shape_data/{synset}/{shape}")
        (base / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return base


R2N2_BOX = (slice(8, 16), slice(4, 28), slice(12, 20))  # tall along y (axis 1)


def r2n2_view_colour(v: int) -> tuple[int, int, int]:
    return (10 * v, 100, 50)


def make_r2n2(folder: Path, part: str = "both") -> Path:
    """``folder/ShapeNetVox32`` and/or ``folder/ShapeNetRendering``: aeroplane and chair, 5 shapes each."""
    occupancy = np.zeros((32, 32, 32), dtype=bool)
    occupancy[R2N2_BOX] = True
    for synset in ("02691156", "03001627"):
        for k in range(5):
            shape = f"{synset[-3:]}{k:03d}"
            if part in ("both", "voxels"):
                write_binvox(folder / "ShapeNetVox32" / synset / shape / "model.binvox", occupancy)
            if part in ("both", "renderings"):
                views = folder / "ShapeNetRendering" / synset / shape / "rendering"
                views.mkdir(parents=True)
                for v in range(24):
                    rgba = np.zeros((20, 20, 4), dtype=np.uint8)  # transparent background
                    rgba[5:15, 5:15] = (*r2n2_view_colour(v), 255)
                    Image.fromarray(rgba, mode="RGBA").save(views / f"{v:02d}.png")
                (views / "renderings.txt").write_text("".join(f"{v:02d}.png\n" for v in range(24)))
    return folder


def make_pix3d(folder: Path) -> tuple[Path, dict[str, str]]:
    """Pix3D with beds A, B and chairs C, D (3 photos each; one chair photo occluded). Returns (root, img -> shape id)."""
    base = folder / "pix3d"
    dims = {"bed/IKEA_A": (2, 1, 1), "bed/IKEA_B": (2.2, 0.8, 1), "chair/IKEA_C": (1, 2, 1), "chair/IKEA_D": (1, 2.5, 1)}
    entries, truth = [], {}
    n = 0
    for shape, (dx, dy, dz) in dims.items():
        category = shape.split("/")[0]
        model = base / "model" / shape / "model.obj"
        model.parent.mkdir(parents=True)
        model.write_text(box_obj(dx, dy, dz))
        for k in range(3):
            n += 1
            img, mask = f"img/{category}/{n:04d}.png", f"mask/{category}/{n:04d}.png"
            pixels = np.zeros((30, 40, 3), dtype=np.uint8)
            pixels[..., 2] = 255  # blue background
            pixels[8:22, 10:30] = (255, 0, 0)  # red object in the box
            m = np.zeros((30, 40), dtype=np.uint8)
            m[8:22, 10:30] = 255
            for rel, array in ((img, pixels), (mask, m)):
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(base / rel)
            occluded = shape == "chair/IKEA_D" and k == 0
            entries.append({
                "img": img, "category": category, "img_size": [40, 30], "mask": mask,
                "model": f"model/{shape}/model.obj", "bbox": [10, 8, 30, 22], "truncated": False,
                "occluded": occluded, "slightly_occluded": False, "voxel": "",
            })
            if not occluded:
                truth[img] = shape
    (base / "pix3d.json").write_text(json.dumps(entries))
    return base, truth


def link_raw(root: Path, name: str) -> Path:
    """The raw folder of dataset ``name`` under ``root`` (created)."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    return raw


def extents(points: torch.Tensor) -> np.ndarray:
    p = points.numpy()
    return p.max(axis=0) - p.min(axis=0)


# -- tests -------------------------------------------------------------------------------------------
def test_modelnet40_off_points_rotated_and_corrupt_file_skipped(tmp_path):
    make_modelnet40(link_raw(tmp_path, "modelnet40"))
    cls = get_dataset("modelnet40")
    train = cls("train", ("points", "normals"), cls.Config(**MODELNET_CFG), tmp_path, progress=False)
    assert len(train) == 4 and train.labels.tolist() == [0, 0, 1, 1]
    assert [train.shape_name(i) for i in range(4)] == ["chair_0001", "chair_0002", "toilet_0001", "toilet_0002"]
    report = train.reports["points"]
    assert list(report.skipped) == ["toilet_0009"] and "toilet_0009.off" in report.skipped["toilet_0009"]
    sample = train[0]
    assert sample["points"].shape == (64, 3) and sample["points"].dtype == torch.float32
    assert sample["normals"].shape == (64, 3) and sample["label"].dtype == torch.int64
    assert sample["points"].norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    # the 1 x 2 x 3 box is 3 tall along file Z; after Z-up -> Y-up it is 3 tall along Y and 2 deep along Z
    ext = extents(sample["points"])
    assert ext[1] / ext[0] == pytest.approx(3.0, rel=0.08) and ext[2] / ext[0] == pytest.approx(2.0, rel=0.08)


def test_modelnet40_real_off_voxels_and_views(tmp_path, shared_data):
    make_modelnet40(link_raw(tmp_path, "modelnet40"), shared_data / "modelnet_off" / "toilet_0345.off")
    cls = get_dataset("modelnet40")
    test = cls("test", ("voxels", "views"), cls.Config(**MODELNET_CFG), tmp_path, progress=False)
    assert len(test) == 3 and [test.shape_name(i) for i in range(3)] == ["chair_0010", "toilet_0020", "toilet_0345"]
    sample = test[2]
    voxels, views = sample["voxels"], sample["views"]
    assert voxels.shape == (16, 16, 16) and voxels.dtype == torch.float32 and set(voxels.unique().tolist()) <= {0.0, 1.0}
    assert views.shape == (12, 1, 32, 32) and 0 <= views.min() and views.max() <= 1 and views.std() > 0.05
    # occupied span per axis vs the mesh's extents read by trimesh (Z-up file: x, y, z -> x, z, y)
    ext = trimesh.load(shared_data / "modelnet_off" / "toilet_0345.off", process=False).extents
    expected = 16 * np.array([ext[0], ext[2], ext[1]]) / ext.max()
    occupied = voxels.numpy() > 0
    span = [np.ptp(np.flatnonzero(occupied.any(axis=tuple(a for a in range(3) if a != k)))) + 1 for k in range(3)]
    np.testing.assert_allclose(span, expected, atol=1.5)


def test_modelnet_h5_points_exact_and_mesh_modalities_refused(tmp_path):
    _, data = make_modelnet_h5(link_raw(tmp_path, "modelnet40-h5"), np.random.default_rng(0))
    cls = get_dataset("modelnet40-h5")
    cfg = cls.Config(n_points=32, workers=1)
    for split, n in (("train", 4), ("test", 2)):
        ds = cls(split, ("points",), cfg, tmp_path, progress=False)
        assert len(ds) == n and ds.class_names == ("airplane", "bathtub")
        np.testing.assert_array_equal(ds.labels, data[split][1])
        raw = data[split][0][1].astype(np.float64)
        centred = raw - (raw.min(0) + raw.max(0)) / 2  # bounding-box centre, farthest point on the unit sphere
        np.testing.assert_allclose(ds[1]["points"].numpy(), centred / np.linalg.norm(centred, axis=1).max(), atol=1e-5)
    first = cls("test", ("points",), cls.Config(n_points=16, point_order="first", workers=1), tmp_path, progress=False)
    np.testing.assert_array_equal(first[1]["points"].numpy(), data["test"][0][1][:16])  # stored order, unchanged
    with pytest.raises(ValueError, match="holds 32 points per cloud"):
        cls("test", ("points",), cls.Config(n_points=64, point_order="first"), tmp_path)
    with pytest.raises(ValueError, match=r"modelnet40-h5 ships point clouds only; voxels/views/image need meshes: use modelnet40 \(OFF meshes\)"):
        cls("train", ("points", "voxels"), cfg, tmp_path)


def test_missing_raw_data_says_how_to_prepare(tmp_path):
    for name in ("modelnet40", "r2n2", "pix3d"):
        with pytest.raises(DatasetNotPreparedError, match=rf"{name} is not prepared: run `bench prepare {name}`.*--from PATH"):
            get_dataset(name)("train", root=tmp_path)


def test_shapenetpart_points_normals_global_part_labels(tmp_path):
    base = make_shapenetpart(link_raw(tmp_path, "shapenetpart"), np.random.default_rng(1))
    cls = get_dataset("shapenetpart")
    cfg = cls.Config(n_points=20, workers=1)
    mods = ("points", "normals", "point_labels")
    counts = {}
    for split in ("train", "val", "test", "trainval"):
        ds = cls(split, mods, cfg, tmp_path, progress=False)
        counts[split] = ds.labels.tolist()
    assert counts == {"train": [0, 0, 1, 1], "val": [0], "test": [0, 1], "trainval": [0, 0, 0, 1, 1]}
    ds = cls("test", mods, cfg, tmp_path, progress=False)
    assert ds.num_parts == 50 and ds.category_parts["Bag"] == (4, 5) and ds.class_names[1] == "Bag"
    bag = ds[1]
    rows = np.loadtxt(base / "02773838" / "b3.txt")
    assert bag["points"].shape == (20, 3) and bag["point_labels"].dtype == torch.int64
    np.testing.assert_array_equal(bag["point_labels"].numpy(), rows[:, 6].astype(np.int64))
    np.testing.assert_allclose(bag["normals"].numpy(), rows[:, 3:6], atol=1e-6)
    centred = rows[:, :3] - (rows[:, :3].min(0) + rows[:, :3].max(0)) / 2
    np.testing.assert_allclose(bag["points"].numpy(), centred / np.linalg.norm(centred, axis=1).max(), atol=1e-5)
    with pytest.raises(ValueError, match="shapenetpart ships point clouds only"):
        cls("train", ("views",), cfg, tmp_path)


def test_r2n2_voxels_views_and_points_from_voxels(tmp_path):
    make_r2n2(link_raw(tmp_path, "r2n2") / "r2n2")
    cls = get_dataset("r2n2")
    cfg = cls.Config(n_views=3, view_size=20, n_points=64, workers=1, categories=("aeroplane", "03001627"))
    train = cls("train", ("voxels", "views", "points"), cfg, tmp_path, progress=False)
    test = cls("test", ("voxels",), cfg, tmp_path, progress=False)
    assert train.labels.tolist() == [0] * 4 + [4] * 4 and test.labels.tolist() == [0, 4]  # 80 / 20 of 5 shapes
    assert train.class_names[4] == "chair" and len(train.class_names) == 13
    sample = train[0]
    expected = np.zeros((32, 32, 32), dtype=np.float32)
    expected[R2N2_BOX] = 1
    np.testing.assert_array_equal(sample["voxels"].numpy(), expected)
    views = sample["views"]
    assert views.shape == (3, 1, 20, 20)
    for v in range(3):
        r, g, b = r2n2_view_colour(v)
        assert views[v, 0, 10, 10].item() == pytest.approx(round(0.299 * r + 0.587 * g + 0.114 * b) / 255, abs=1e-6)
        assert views[v, 0, 0, 0].item() == 1.0  # transparent background composited on white
    ext = extents(sample["points"])
    assert sample["points"].shape == (64, 3) and ext[1] / ext[0] == pytest.approx(23 / 7, rel=0.1)
    half = cls("train", ("voxels",), cls.Config(voxel_resolution=16, workers=1, categories=cfg.categories), tmp_path, progress=False)
    np.testing.assert_array_equal(half[0]["voxels"].numpy(), expected[1::2, 1::2, 1::2])  # nearest centre: 2i + 1


def test_pix3d_photos_gallery_and_query_index(tmp_path):
    base, truth = make_pix3d(link_raw(tmp_path, "pix3d"))
    cls = get_dataset("pix3d")
    cfg = cls.Config(image_size=32, view_size=16, n_points=32, workers=1)
    train = cls("train", ("image", "views"), cfg, tmp_path, progress=False)
    test = cls("test", ("image", "mask"), cfg, tmp_path, progress=False)
    assert len(train) + len(test) == len(truth) == 11
    assert len(train) == round(11 * 2648 / 5118)  # CMIC's training share
    names = {train.shape_name(i) for i in range(len(train))} | {test.shape_name(i) for i in range(len(test))}
    assert names == set(truth)
    gallery = test.gallery_split()
    assert len(gallery) == 4 and gallery.labels.tolist() == [0, 0, 1, 1]  # every shape (CMIC)
    qsi = test.query_shape_index
    for i in range(len(test)):
        assert gallery.shape_name(int(qsi[i])) == truth[test.shape_name(i)]
        assert test.labels[i] == ["bed", "chair"].index(truth[test.shape_name(i)].split("/")[0])
    sample = test[0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)
    np.testing.assert_allclose(sample["image"][:, 16, 16].numpy(), [1.0, 0.0, 0.0], atol=0.02)  # red object
    assert sample["mask"][16, 16] == 1 and sample["mask"][0, 16] == 0
    photo = train[0]
    shape = train.gallery_split()[int(train.query_shape_index[0])]
    assert photo["views"].shape == (12, 1, 16, 16)
    torch.testing.assert_close(photo["views"], shape["views"])
    # photos of one shape carry one shape_index (CMIC de-duplicates batches by it)
    assert [int(train[i]["shape_index"]) for i in range(len(train))] == train.query_shape_index.tolist()
    assert "shape_index" not in sample  # photos only: no shape attached
    points = cls("test", ("points",), cfg, tmp_path, progress=False).gallery_split()[2]["points"]
    ext = extents(points)  # chair C is a 1 x 2 x 1 box, +Y up as Pix3D ships it
    assert ext[1] / ext[0] == pytest.approx(2.0, rel=0.08)


def test_resampled_real_sample_through_link(tmp_path, shared_data):
    cls = get_dataset("modelnet40-resampled")
    raw = cls.fetch(tmp_path, shared_data / "modelnet40_normal_resampled_mini", progress=False)
    assert raw == (shared_data / "modelnet40_normal_resampled_mini").resolve()
    assert not (tmp_path / "modelnet40-resampled" / "raw" / "modelnet40_normal_resampled").exists()  # linked, not copied
    cfg = cls.Config(n_points=128, workers=1)
    train = cls("train", ("points", "normals"), cfg, tmp_path, progress=False)
    test = cls("test", ("points", "normals"), cfg, tmp_path, progress=False)
    assert (len(train), len(test)) == (36, 3) and train.num_classes == 40
    sample = test[0]
    assert sample["points"].shape == (128, 3) and sample["points"].norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(sample["normals"].norm(dim=1).numpy(), 1.0, atol=1e-3)


def test_prepare_builds_the_pix3d_gallery_only_for_shape_modalities(tmp_path):
    from ssl3d.datasets.prepare import prepare_dataset

    make_pix3d(link_raw(tmp_path, "pix3d"))
    lines: list[str] = []
    prepare_dataset("pix3d", modalities=["image"], root=tmp_path, download=False, echo=lines.append)
    assert not any("gallery" in line for line in lines)  # photos only: no shape cache to build
    lines.clear()
    prepare_dataset("pix3d", modalities=["image", "views"], root=tmp_path, download=False, echo=lines.append)
    galleries = [line for line in lines if line.strip().startswith("gallery")]
    assert galleries and all("shapes" in line for line in galleries)
