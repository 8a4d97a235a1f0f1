"""ShapeNet-based formats: ShapeNetPart text, binvox voxels, 3D-R2N2 renderings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.binvox import read_binvox, write_binvox
from ssl3d.datasets.formats.r2n2 import R2N2_CATEGORIES, index_r2n2, read_r2n2_views, read_rendering_metadata
from ssl3d.datasets.formats.shapenetpart import (
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_PARTS,
    index_shapenetpart,
    part_to_category,
    read_shapenetpart_txt,
)

# ---------------------------------------------------------------- ShapeNetPart

AIRPLANE, MUG = "02691156", "03797390"


def _shapenetpart_tree(root: Path) -> None:
    (root / "synsetoffset2category.txt").write_text("".join(f"{n}\t{s}\n" for n, s in SHAPENETPART_CATEGORIES.items()))
    split = root / "train_test_split"
    split.mkdir(parents=True)
    (split / "shuffled_train_file_list.json").write_text(
        json.dumps([f"shape_data/{MUG}/m1", f"shape_data/{AIRPLANE}/b2", f"shape_data/{AIRPLANE}/a1"])
    )
    (split / "shuffled_val_file_list.json").write_text(json.dumps([f"shape_data/{AIRPLANE}/c3"]))
    (split / "shuffled_test_file_list.json").write_text(json.dumps([f"shape_data/{MUG}/m2"]))
    rows = {AIRPLANE: [[0.1, 0.2, 0.3, 0, 1, 0, 0], [0.4, 0.5, 0.6, 1, 0, 0, 3]], MUG: [[1, 2, 3, 0, 0, 1, 37]]}
    for synset, shapes in ((AIRPLANE, ["a1", "b2", "c3"]), (MUG, ["m1", "m2"])):
        (root / synset).mkdir()
        for shape in shapes:
            lines = [" ".join(f"{v:.6f}" for v in row) for row in rows[synset]]
            (root / synset / f"{shape}.txt").write_text("\n".join(lines) + "\n")


def test_part_table_covers_0_to_49_contiguously():
    assert list(SHAPENETPART_PARTS) == list(SHAPENETPART_CATEGORIES) == sorted(SHAPENETPART_CATEGORIES)
    flat = [p for parts in SHAPENETPART_PARTS.values() for p in parts]
    assert flat == list(range(50))
    owner = part_to_category()
    assert owner[0] == 0 and owner[37] == list(SHAPENETPART_PARTS).index("Mug") and owner[49] == 15


def test_shapenetpart_index_and_read(tmp_path):
    _shapenetpart_tree(tmp_path)
    train = index_shapenetpart(tmp_path, "train")
    assert [(r.category, r.label, r.shape_id) for r in train] == [
        ("Airplane", 0, f"{AIRPLANE}/a1"),
        ("Airplane", 0, f"{AIRPLANE}/b2"),
        ("Mug", 11, f"{MUG}/m1"),
    ]
    assert [r.shape_id for r in index_shapenetpart(tmp_path, "trainval", categories=["Airplane"])] == [
        f"{AIRPLANE}/a1", f"{AIRPLANE}/b2", f"{AIRPLANE}/c3",
    ]  # fmt: skip
    points, normals, parts = read_shapenetpart_txt(train[0].path, category="Airplane")
    np.testing.assert_allclose(points, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], atol=1e-7)
    np.testing.assert_array_equal(normals, [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(parts, [0, 3])
    assert points.dtype == np.float32 and parts.dtype == np.int64


def test_shapenetpart_malformed(tmp_path):
    _shapenetpart_tree(tmp_path)
    mug = tmp_path / MUG / "m1.txt"
    with pytest.raises(DataFileError, match="part id 37 outside Airplane's parts 0..3") as info:
        read_shapenetpart_txt(mug, category="Airplane")
    assert info.value.path == str(mug)
    mug.write_text("1 2 3 0 0 1 37.5\n")
    with pytest.raises(DataFileError, match="not an integer"):
        read_shapenetpart_txt(mug)
    mug.write_text("1 2 3 0 0 1 50\n")
    with pytest.raises(DataFileError, match="outside 0..49"):
        read_shapenetpart_txt(mug)
    mug.write_text("1 2 3 0 0 1\n")
    with pytest.raises(DataFileError, match="expected 7 values per line"):
        read_shapenetpart_txt(mug)
    (tmp_path / "train_test_split" / "shuffled_test_file_list.json").write_text('["shape_data/99999999/x"]')
    with pytest.raises(DataFileError, match="99999999"):
        index_shapenetpart(tmp_path, "test")
    (tmp_path / "train_test_split" / "shuffled_test_file_list.json").write_text(f'["shape_data/{MUG}/gone"]')
    with pytest.raises(DataFileError, match="file not found"):
        index_shapenetpart(tmp_path, "test")
    (tmp_path / "synsetoffset2category.txt").write_text("Airplane\t02691156\n")
    with pytest.raises(DataFileError, match="expected 16 categories"):
        index_shapenetpart(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        index_shapenetpart(tmp_path, "all")


# ---------------------------------------------------------------- binvox

HEADER = b"#binvox 1\ndim 2 2 2\ntranslate 0.5 -1 2\nscale 3\ndata\n"


@pytest.mark.parametrize(
    "runs, voxel",
    [
        # Run-length position = x*d*d + z*d + y: y varies fastest, then z, then x.
        (bytes([0, 1, 1, 1, 0, 6]), (0, 1, 0)),  # position 1 -> y = 1
        (bytes([0, 2, 1, 1, 0, 5]), (0, 0, 1)),  # position 2 -> z = 1
        (bytes([0, 4, 1, 1, 0, 3]), (1, 0, 0)),  # position 4 -> x = 1
        (bytes([0, 6, 1, 1, 0, 1]), (1, 0, 1)),  # position 6 -> x = 1, z = 1
    ],
)
def test_binvox_hand_made_run_length(tmp_path, runs, voxel):
    path = tmp_path / "v.binvox"
    path.write_bytes(HEADER + runs)
    occ, header = read_binvox(path, return_header=True)
    expected = np.zeros((2, 2, 2), dtype=bool)
    expected[voxel] = True
    np.testing.assert_array_equal(occ, expected)
    assert occ.dtype == bool
    assert header.dim == 2 and header.translate == (0.5, -1.0, 2.0) and header.scale == 3.0


def test_binvox_round_trip_and_long_runs(tmp_path):
    rng = np.random.default_rng(0)
    for d in (1, 3, 32):
        occ = rng.random((d, d, d)) < 0.2
        occ[: d // 2] = True  # runs longer than 255 must be split
        write_binvox(tmp_path / f"{d}.binvox", occ, translate=(0.1, 0.2, 0.3), scale=0.5)
        back, header = read_binvox(tmp_path / f"{d}.binvox", return_header=True)
        np.testing.assert_array_equal(back, occ)
        assert header.translate == (0.1, 0.2, 0.3) and header.scale == 0.5
    full = np.ones((32, 32, 32), dtype=bool)
    write_binvox(tmp_path / "full.binvox", full)
    raw = (tmp_path / "full.binvox").read_bytes()
    body = raw[raw.index(b"data\n") + 5 :]
    assert len(body) == 2 * -(-(32**3) // 255)  # 129 pairs of (1, <=255)
    assert read_binvox(tmp_path / "full.binvox").all()
    with pytest.raises(ValueError, match="cubic"):
        write_binvox(tmp_path / "x.binvox", np.zeros((2, 3, 2)))


@pytest.mark.parametrize(
    "content, fragment",
    [
        (HEADER + bytes([0, 3, 1, 2]), "expected 8 voxels for dim 2, run-length data ends after 5"),
        (HEADER + bytes([0, 8, 1, 1]), "describes 9"),
        (HEADER + bytes([0, 8, 1]), "odd number of bytes"),
        (HEADER + bytes([0, 0, 0, 8]), "length 0"),
        (HEADER + bytes([2, 8]), "must be 0 or 1"),
        (b"#binvox 1\ndim 2 2 3\ndata\n" + bytes([0, 12]), "only cubic"),
        (b"#binvox 1\ndim 2 2 2\nweird 1\ndata\n" + bytes([0, 8]), "unknown header line"),
        (b"#binvox 1\ndim 2 2 2\n", "no 'data' line"),
        (b"PK\x03\x04 not a binvox", "not a binvox file"),
    ],
)
def test_binvox_malformed(tmp_path, content, fragment):
    path = tmp_path / "bad.binvox"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=fragment) as info:
        read_binvox(path)
    assert info.value.path == str(path)


# ---------------------------------------------------------------- 3D-R2N2

CHAIR, LAMP = "03001627", "03636649"


def _r2n2_tree(root: Path, ids: dict[str, list[str]]) -> None:
    occ = np.zeros((32, 32, 32), dtype=bool)
    occ[10:20, 5:30, 12:18] = True
    for synset, shapes in ids.items():
        for shape in shapes:
            write_binvox(root / "ShapeNetVox32" / synset / shape / "model.binvox", occ)
            views = root / "ShapeNetRendering" / synset / shape / "rendering"
            views.mkdir(parents=True)
            for v in range(24):
                rgba = np.zeros((137, 137, 4), dtype=np.uint8)
                rgba[..., :3] = (200, 0, 0)  # colour under alpha 0 must vanish
                rgba[40:60, 40:60] = (10, 20, 30, 255)
                rgba[70:80, 70:80] = (100, 50, 0, 128)
                rgba[0, 0] = (v, v, v, 255)  # marks which render it is
                Image.fromarray(rgba, mode="RGBA").save(views / f"{v:02d}.png")
            (views / "rendering_metadata.txt").write_text(
                "".join(f"{15 * v} 25.5 0 0.8 25\n" for v in range(24))
            )


def test_r2n2_split_reproduces_released_rule(tmp_path):
    chair_ids = ["e", "a", "d", "b", "c"]  # 5 shapes: int(5 * 0.8) = 4 train
    lamp_ids = [f"l{i}" for i in (6, 0, 5, 1, 4, 2, 3)]  # 7 shapes: int(5.6) = 5 train
    _r2n2_tree(tmp_path, {CHAIR: chair_ids, LAMP: lamp_ids})
    train = index_r2n2(tmp_path, "train", categories=[CHAIR, "lamp"])
    test = index_r2n2(tmp_path, "test", categories=[CHAIR, "lamp"])
    assert [r.shape_id for r in train] == [f"{CHAIR}/{i}" for i in "abcd"] + [f"{LAMP}/l{i}" for i in range(5)]
    assert [r.shape_id for r in test] == [f"{CHAIR}/e", f"{LAMP}/l5", f"{LAMP}/l6"]
    labels = list(R2N2_CATEGORIES)
    assert {r.label for r in train} == {labels.index(CHAIR), labels.index(LAMP)}
    assert train[0].category == "chair" and train[0].voxel_path == train[0].path
    assert read_binvox(train[0].voxel_path)[15, 10, 15]
    with pytest.raises(DataFileError, match="missing category folder"):
        index_r2n2(tmp_path, "train")  # the other 11 categories are absent
    with pytest.raises(ValueError, match="unknown categories"):
        index_r2n2(tmp_path, "train", categories=["dragon"])


def test_r2n2_split_file_in_pix2vox_format(tmp_path):
    _r2n2_tree(tmp_path, {CHAIR: ["a", "b", "c"]})
    split = tmp_path / "ShapeNet.json"
    split.write_text(json.dumps([{"taxonomy_id": CHAIR, "taxonomy_name": "chair", "train": ["c", "a"], "val": [], "test": ["b"]}]))
    assert [r.shape_id for r in index_r2n2(tmp_path, "train", [CHAIR], split_file=split)] == [f"{CHAIR}/a", f"{CHAIR}/c"]
    assert [r.shape_id for r in index_r2n2(tmp_path, "test", [CHAIR], split_file=split)] == [f"{CHAIR}/b"]
    with pytest.raises(DataFileError, match="no entry for category"):
        index_r2n2(tmp_path, "test", [LAMP], split_file=split)


def test_r2n2_views_composited_on_white(tmp_path):
    _r2n2_tree(tmp_path, {CHAIR: ["a"]})
    (record,) = index_r2n2(tmp_path, "test", [CHAIR])  # one shape: int(0.8) = 0 train, 1 test
    views = read_r2n2_views(record, [3, 0, 23])
    assert views.shape == (3, 137, 137, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[:, 0, 0, 0], [3, 0, 23])  # order as asked
    np.testing.assert_array_equal(views[0, 100, 100], [255, 255, 255])  # alpha 0 -> white
    np.testing.assert_array_equal(views[0, 50, 50], [10, 20, 30])  # alpha 255 -> colour
    a = 128 / 255  # half transparent: a * rgb + (1 - a) * 255
    np.testing.assert_array_equal(views[0, 75, 75], np.rint([100 * a + 255 * (1 - a), 50 * a + 255 * (1 - a), 255 * (1 - a)]))
    small = read_r2n2_views(record, range(24), size=64)
    assert small.shape == (24, 64, 64, 3)
    np.testing.assert_array_equal(small[0, 23, 23], [10, 20, 30])  # inside the opaque square
    with pytest.raises(ValueError, match="0..23"):
        read_r2n2_views(record, [24])
    (record.views_dir / "05.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataFileError, match="not a readable image") as info:
        read_r2n2_views(record, [5])
    assert info.value.path.endswith("05.png")


def test_rendering_metadata(tmp_path):
    _r2n2_tree(tmp_path, {CHAIR: ["a"]})
    path = tmp_path / "ShapeNetRendering" / CHAIR / "a" / "rendering" / "rendering_metadata.txt"
    meta = read_rendering_metadata(path)
    assert meta.shape == (24, 5)
    np.testing.assert_array_equal(meta[:, 0], 15 * np.arange(24))
    np.testing.assert_array_equal(meta[3, 1:], [25.5, 0, 0.8, 25])
    path.write_text("".join(f"{v} 25 0 0.8 25\n" for v in range(23)))
    with pytest.raises(DataFileError, match="expected 24 lines"):
        read_rendering_metadata(path)
    path.write_text("1 2 3 4\n")
    with pytest.raises(DataFileError, match="expected 5 values"):
        read_rendering_metadata(path)
    path.write_text("")
    with pytest.raises(DataFileError, match="no data"):
        read_rendering_metadata(path)
