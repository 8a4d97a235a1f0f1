"""Pix3D: pix3d.json indexing (CMIC protocol), photo/mask cropping, OBJ reading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.pix3d import (
    CMIC_CATEGORIES,
    CMIC_TRAIN_FRACTION,
    PIX3D_CATEGORIES,
    index_pix3d,
    read_obj,
    read_pix3d_photo,
)
from ssl3d.datasets.formats.records import group_by_shape

RED = (220, 10, 10)
OBJ = "# cube side\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n"


def _photo(root: Path, img: str, size=(100, 60), bbox=(20, 10, 60, 50)) -> None:
    """White photo with a red object filling ``bbox``; its mask is 255 there."""
    w, h = size
    pixels = np.full((h, w, 3), 255, dtype=np.uint8)
    pixels[bbox[1] : bbox[3], bbox[0] : bbox[2]] = RED
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[bbox[1] : bbox[3], bbox[0] : bbox[2]] = 255
    for rel, array in ((img, pixels), (img.replace("img/", "mask/").rsplit(".", 1)[0] + ".png", mask)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / rel)


def _entry(category, n, model, ext="png", truncated=False, occluded=False, slightly=False, size=(100, 60), bbox=(20, 10, 60, 50)):
    return {
        "img": f"img/{category}/{n:04d}.{ext}",
        "category": category,
        "img_size": list(size),
        "2d_keypoints": [],
        "mask": f"mask/{category}/{n:04d}.png",
        "img_source": "ikea",
        "model": f"model/{category}/{model}/model.obj",
        "model_raw": f"model/{category}/{model}/model.obj",
        "3d_keypoints": f"model/{category}/{model}/3d_keypoints.txt",
        "voxel": f"model/{category}/{model}/voxel.mat",
        "rot_mat": np.eye(3).tolist(),
        "trans_mat": [0, 0, 2],
        "focal_length": 35.0,
        "cam_position": [0, 0, 2],
        "inplane_rotation": 0.0,
        "truncated": truncated,
        "occluded": occluded,
        "slightly_occluded": slightly,
        "bbox": list(bbox),
    }


def _pix3d_tree(root: Path, entries: list[dict]) -> None:
    for e in entries:
        _photo(root, e["img"], tuple(e["img_size"]), tuple(e["bbox"]))
        (root / e["model"]).parent.mkdir(parents=True, exist_ok=True)
        (root / e["model"]).write_text(OBJ)
    (root / "pix3d.json").write_text(json.dumps(entries))


@pytest.fixture
def pix3d_root(tmp_path):
    entries = [
        _entry("chair", 1, "IKEA_B"),
        _entry("chair", 2, "IKEA_A", ext="jpg"),
        _entry("chair", 3, "IKEA_B"),
        _entry("chair", 4, "IKEA_A", truncated=True),
        _entry("chair", 5, "IKEA_A", occluded=True),
        _entry("chair", 6, "IKEA_A", slightly=True),
        _entry("bed", 1, "IKEA_M"),
        _entry("desk", 1, "IKEA_D"),  # not a CMIC category
        _entry("sofa", 1, "IKEA_S"),
    ]
    _pix3d_tree(tmp_path, entries)
    return tmp_path


def test_index_pix3d_cmic_filter_and_grouping(pix3d_root):
    records = index_pix3d(pix3d_root)
    assert [(r.category, r.label, r.shape_id, r.image_path.name) for r in records] == [
        ("bed", 0, "bed/IKEA_M", "0001.png"),
        ("chair", 1, "chair/IKEA_A", "0002.jpg"),
        ("chair", 1, "chair/IKEA_B", "0001.png"),
        ("chair", 1, "chair/IKEA_B", "0003.png"),
        ("sofa", 2, "sofa/IKEA_S", "0001.png"),
    ]
    groups = group_by_shape(records)
    assert list(groups) == ["bed/IKEA_M", "chair/IKEA_A", "chair/IKEA_B", "sofa/IKEA_S"]
    assert len(groups["chair/IKEA_B"]) == 2
    r = records[2]
    assert r.path == pix3d_root / "model/chair/IKEA_B/model.obj"
    assert r.mask_path == pix3d_root / "mask/chair/0001.png" and r.voxel_path.name == "voxel.mat"
    assert r.bbox == (20, 10, 60, 50) and r.image_size == (100, 60)
    kept = index_pix3d(pix3d_root, categories=["chair"], drop_truncated=False, drop_occluded=False, drop_slightly_occluded=False)
    assert len(kept) == 6
    assert len(index_pix3d(pix3d_root, categories=PIX3D_CATEGORIES)) == 6  # + desk
    with pytest.raises(ValueError, match="subset"):
        index_pix3d(pix3d_root, categories=["car"])


def test_pix3d_split_partitions_with_cmic_share(tmp_path):
    entries = [_entry(c, n, f"M{n % 3}") for c, count in (("bed", 13), ("chair", 40), ("table", 7)) for n in range(1, count + 1)]
    _pix3d_tree(tmp_path, entries)
    everything = {r.image_path for r in index_pix3d(tmp_path)}
    train = index_pix3d(tmp_path, split="train")
    test = index_pix3d(tmp_path, split="test")
    assert {r.image_path for r in train}.isdisjoint(r.image_path for r in test)
    assert {r.image_path for r in train} | {r.image_path for r in test} == everything
    assert len(train) == round(60 * CMIC_TRAIN_FRACTION)  # 31 of 60
    # Per-category quotas: floor(n * f) plus largest remainders; bed 6.73, chair 20.70, table 3.62.
    counts = {c: sum(r.category == c for r in train) for c in ("bed", "chair", "table")}
    assert counts == {"bed": 7, "chair": 21, "table": 3}
    assert [r.image_path for r in index_pix3d(tmp_path, split="train")] == [r.image_path for r in train]
    other_seed = index_pix3d(tmp_path, split="train", seed=1)
    assert {r.image_path for r in other_seed} != {r.image_path for r in train}
    with pytest.raises(ValueError, match="split"):
        index_pix3d(tmp_path, split="val")


def test_pix3d_split_file(pix3d_root):
    listing = pix3d_root / "pix3d_test.json"
    listing.write_text(json.dumps([{"img": "img/chair/0003.png"}, {"img": "img/chair/0004.png"}]))
    # 0004 is truncated and stays filtered out.
    assert [r.image_path.name for r in index_pix3d(pix3d_root, split="test", split_file=listing)] == ["0003.png"]
    text = pix3d_root / "train.txt"
    text.write_text("img/bed/0001.png\nimg/sofa/0001.png\n")
    assert [r.category for r in index_pix3d(pix3d_root, split="train", split_file=text)] == ["bed", "sofa"]
    text.write_text("img/bed/9999.png\n")
    with pytest.raises(DataFileError, match="not in pix3d.json"):
        index_pix3d(pix3d_root, split="train", split_file=text)


def test_pix3d_index_errors(pix3d_root):
    (pix3d_root / "mask/bed/0001.png").unlink()
    with pytest.raises(DataFileError, match="mask of img/bed/0001.png not found"):
        index_pix3d(pix3d_root)
    entries = json.loads((pix3d_root / "pix3d.json").read_text())
    del entries[3]["bbox"]
    (pix3d_root / "pix3d.json").write_text(json.dumps(entries))
    with pytest.raises(DataFileError, match="entry 3 lacks bbox") as info:
        index_pix3d(pix3d_root)
    assert info.value.path.endswith("pix3d.json")
    (pix3d_root / "pix3d.json").write_text("{not json")
    with pytest.raises(DataFileError, match="JSON"):
        index_pix3d(pix3d_root)


def test_pix3d_bbox_outside_image(tmp_path):
    _pix3d_tree(tmp_path, [_entry("bed", 1, "M", bbox=(20, 10, 60, 50))])
    entries = json.loads((tmp_path / "pix3d.json").read_text())
    entries[0]["bbox"] = [20, 10, 160, 50]
    (tmp_path / "pix3d.json").write_text(json.dumps(entries))
    with pytest.raises(DataFileError, match="outside the 100x60 image"):
        index_pix3d(tmp_path)


def test_read_pix3d_photo_crop_square_margin(pix3d_root):
    record = next(r for r in index_pix3d(pix3d_root) if r.image_path.name == "0001.png" and r.category == "chair")
    # bbox 40x40 at (20, 10); margin 0.25 -> 60 px square from x = 10, y = 0.
    image, mask = read_pix3d_photo(record, size=60, margin=0.25)
    assert image.shape == (60, 60, 3) and image.dtype == np.uint8 and mask.shape == (60, 60) and mask.dtype == bool
    expected = np.zeros((60, 60), dtype=bool)
    expected[10:50, 10:50] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image[expected], np.tile(RED, (expected.sum(), 1)))
    np.testing.assert_array_equal(image[~expected], np.full(((~expected).sum(), 3), 255))
    small, small_mask = read_pix3d_photo(record, size=30, margin=0.25)
    assert small.shape == (30, 30, 3)
    np.testing.assert_array_equal(small[15, 15], RED)
    np.testing.assert_array_equal(small[1, 1], [255, 255, 255])
    assert small_mask[15, 15] and not small_mask[1, 1]


def test_read_pix3d_photo_pads_outside_and_checks_size(tmp_path):
    # Object touching the left edge: the square crop reaches outside the photo.
    _pix3d_tree(tmp_path, [_entry("bed", 1, "M", size=(50, 40), bbox=(0, 0, 20, 40))])
    (record,) = index_pix3d(tmp_path)
    image, mask = read_pix3d_photo(record, size=40, margin=0.0, fill=7)
    # 40 px square centred on x = 10: columns -10..29; the first 10 are outside.
    np.testing.assert_array_equal(image[:, :10], np.full((40, 10, 3), 7))
    np.testing.assert_array_equal(image[:, 10:30], np.tile(RED, (40, 20, 1)))
    np.testing.assert_array_equal(mask[:, 10:30], True)
    assert not mask[:, :10].any() and not mask[:, 30:].any()
    Image.new("RGB", (49, 40)).save(record.image_path)
    with pytest.raises(DataFileError, match="pix3d.json says 50x40"):
        read_pix3d_photo(record)
    with pytest.raises(ValueError, match="size"):
        read_pix3d_photo(record, size=0)


def test_read_obj_polygons_slashes_negative_indices(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "mtllib m.mtl\no thing\n"
        "v 0 0 0\nv 2 0 0\nv 2 3 0\nv 0 3 0\n"
        "vt 0 0\nvn 0 0 1\ng part\nusemtl red\ns off\n"
        "f 1/1/1 2/1/1 3/1/1 4/1/1\n"
        "v 0 0 5\n"
        "f -5//1 -4//1 -1//1\n"
    )
    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 4]])
    assert len(mesh.vertices) == 5
    assert mesh.area == pytest.approx(6.0 + 0.5 * 2 * 5)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "vertex index 4 out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", "vertex index 0 out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 1 2\n", "vertex index -4 out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "at least 3 vertices"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 a 3\n", "'a' is not an index"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("v 0 zero 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "not a number"),
        ("v 0 0\n", "needs x y z"),
        ("# empty\n", "no vertices"),
    ],
)
def test_read_obj_malformed(tmp_path, text, fragment):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(DataFileError, match=fragment) as info:
        read_obj(path)
    assert info.value.path == str(path)


def test_cmic_categories_are_pix3d_categories():
    assert set(CMIC_CATEGORIES) <= set(PIX3D_CATEGORIES) and len(PIX3D_CATEGORIES) == 9
    assert CMIC_TRAIN_FRACTION == pytest.approx(2648 / 5118)
