"""The embedded scene dataset: deterministic generator, every label, areas as splits, the cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ssl3d.datasets import get_dataset
from ssl3d.datasets.scene_dataset import S3DIS_CLASSES, scene_summary
from ssl3d.datasets.synth_scenes.rooms import AREA_STYLES, generate_room

#: sha256 of two rooms (points rounded to 1e-4, labels) at density 30. A change here changes synth-scenes,
#: so it must come with a SCENES_VERSION bump (caches and results of the old rooms are then never reused).
ROOM_HASHES = {(5, 0): "f14fffeea9b578026c0b0d6e76293a83aa864422312137c62953f31340bda999",
               (2, 1): "d19d100b7ade77d9acb710cbb805d02b90ed20715b8ad5a4a9b7f12df482fbe6"}


def _digest(points: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.round(points.astype(np.float64), 4).tobytes())
    h.update(labels.astype(np.int64).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("area,index", sorted(ROOM_HASHES))
def test_generator_output_hash_is_unchanged(area: int, index: int) -> None:
    points, labels = generate_room(area, index, seed=0, density=30)
    assert _digest(points, labels) == ROOM_HASHES[area, index]
    again = generate_room(area, index, seed=0, density=30)
    assert _digest(*again) == ROOM_HASHES[area, index]
    assert _digest(*generate_room(area, index, seed=1, density=30)) != ROOM_HASHES[area, index]


def test_every_label_occurs_in_every_area() -> None:
    defaults = get_dataset("synth-scenes").Config()
    for area in AREA_STYLES:
        present = set()
        for k in range(defaults.rooms_per_area):  # the dataset as shipped (placement depends on the density)
            points, labels = generate_room(area, k, defaults.seed, defaults.density)
            assert points.shape == (len(labels), 6) and points.dtype == np.float32
            assert 0 <= points[:, 3:].min() and points[:, 3:].max() <= 1  # colours
            present |= set(labels.tolist())
        assert present == set(range(len(S3DIS_CLASSES))), f"area {area} lacks {set(range(13)) - present}"


def test_structure_sits_where_it_should() -> None:
    points, labels = generate_room(1, 0, density=40)
    z = points[:, 2]
    floor, ceiling = labels == S3DIS_CLASSES.index("floor"), labels == S3DIS_CLASSES.index("ceiling")
    assert np.allclose(z[floor], 0.0) and z[ceiling].min() > 2.5
    furniture = np.isin(labels, [S3DIS_CLASSES.index(c) for c in ("table", "chair", "sofa", "bookcase")])
    assert z[furniture].min() >= -1e-6 and z[furniture].max() < z[ceiling].min()


def test_dataset_splits_are_areas_and_items_are_blocks(tmp_path) -> None:
    cls = get_dataset("synth-scenes")
    config = cls.Config(rooms_per_area=1, density=20, block_points=64, test_area=3)
    train = cls("train", ("points", "point_labels"), config, tmp_path, progress=False)
    test = cls("test", ("points", "point_labels"), config, tmp_path, progress=False)
    assert sorted(set(train.block_areas.tolist())) == [1, 2, 4, 5, 6]
    assert test.n_rooms == 1 and test.room_name(0) == "Area_3/room_0"
    item = train[0]
    assert item["points"].shape == (64, 9) and item["points"].dtype == torch.float32
    assert item["point_labels"].shape == (64,) and item["point_labels"].dtype == torch.int64
    summary = scene_summary(test)
    assert summary["rooms_per_area"] == {3: 1} and summary["points"] == len(test.room_points(0)[1])
    # the cache is reused, and a damaged one is moved aside and rebuilt
    path = train.cache_path()
    assert path.exists()
    again = cls("train", ("points",), config, tmp_path, progress=False)
    assert again.reports["rooms"].n_built == 0
    path.write_bytes(b"not a zip")
    rebuilt = cls("train", ("points",), config, tmp_path, progress=False)
    assert rebuilt.reports["rooms"].n_built == 5 and len(rebuilt) == len(train)
    assert list(path.parent.glob(f"{path.name}.corrupt-*"))
    torch.testing.assert_close(rebuilt[3]["points"], train[3]["points"])


def test_three_channel_blocks_and_bad_settings(tmp_path) -> None:
    cls = get_dataset("synth-scenes")
    ds = cls("test", ("points",), cls.Config(rooms_per_area=1, density=20, block_points=32, channels=3), tmp_path,
             progress=False)
    assert ds[0]["points"].shape == (32, 3)
    with pytest.raises(ValueError, match="data.channels must be 3 or 9"):
        cls.Config(channels=6)
    with pytest.raises(ValueError, match="data.test_area=7 is not an area"):
        cls("test", ("points",), cls.Config(test_area=7), tmp_path, progress=False)
