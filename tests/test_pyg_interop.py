"""ssl3d.datasets.pyg: items of a prepared split as torch_geometric Data objects, batched by PyG's DataLoader."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from ssl3d.datasets import ShapeDataset, ShapeInfo, get_dataset
from ssl3d.datasets.errors import DatasetRequestError
from ssl3d.datasets.pyg import PyGPointDataset, pyg_data_list, require_points, to_pyg_data

SMALL = {"n_classes": 3, "train_per_class": 2, "test_per_class": 1, "n_points": 64, "workers": 1}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> ShapeDataset:
    """A tiny synth split with points, normals and part labels (one cache, built once for the module)."""
    cls = get_dataset("synth")
    return cls("train", modalities=("points", "normals", "point_labels"), config=cls.Config(**SMALL),
               root=tmp_path_factory.mktemp("pyg-data"), progress=False)


def test_every_item_becomes_data_with_the_items_tensors(split):
    view = PyGPointDataset(split)
    assert len(view) == len(split) == 6 and view.num_classes == 3
    for i in range(len(split)):
        item, data = split[i], view[i]
        assert isinstance(data, Data) and data.num_nodes == 64
        assert torch.equal(data.pos, item["points"]) and torch.equal(data.normal, item["normals"])
        assert torch.equal(data.point_labels, item["point_labels"])
        assert data.y.tolist() == [int(item["label"])] and data.idx.tolist() == [i]
        assert "x" not in data  # three-channel points: no extra node features
    listed = pyg_data_list(split)
    assert len(listed) == 6 and all(torch.equal(a.pos, b.pos) for a, b in zip(listed, view))


def test_pyg_dataloader_batches_the_view(split):
    batch = next(iter(DataLoader(PyGPointDataset(split), batch_size=4)))
    assert batch.num_graphs == 4 and batch.pos.shape == (4 * 64, 3) and batch.normal.shape == (4 * 64, 3)
    assert batch.y.tolist() == split.labels[:4].tolist() and batch.idx.tolist() == [0, 1, 2, 3]
    assert torch.equal(batch.batch.bincount(), torch.full((4,), 64))
    assert torch.equal(batch.pos[64:128], split[1]["points"])


def test_extra_point_channels_become_x_and_missing_optional_keys_are_left_out():
    item = {"points": torch.arange(40.0).view(5, 8), "label": torch.tensor(2), "index": torch.tensor(7)}
    data = to_pyg_data(item)
    assert torch.equal(data.pos, item["points"][:, :3]) and torch.equal(data.x, item["points"][:, 3:])
    assert "normal" not in data and "point_labels" not in data and data.y.tolist() == [2]


def test_a_split_without_points_is_refused_naming_dataset_and_modality():
    cls = get_dataset("synth")
    voxels_only = cls("train", modalities=("voxels",), config=cls.Config(**SMALL), prepare=False)
    with pytest.raises(DatasetRequestError, match=r"synth/train: .*'points' modality.*\['voxels'\]"):
        PyGPointDataset(voxels_only)
    with pytest.raises(DatasetRequestError, match="synth/train"):
        pyg_data_list(voxels_only)


class _VoxelOnly(ShapeDataset):
    name = "voxel-only"
    available_modalities = frozenset({"voxels"})

    def index(self, split: str) -> list[ShapeInfo]:
        return []


def test_a_dataset_that_cannot_provide_points_says_what_it_provides():
    with pytest.raises(DatasetRequestError, match=r"voxel-only/train: .*cannot provide \(it provides: voxels\)"):
        require_points(_VoxelOnly("train", modalities=("voxels",), prepare=False))


def test_an_item_without_points_or_with_misshapen_points_is_refused():
    with pytest.raises(DatasetRequestError, match="no 'points' modality"):
        to_pyg_data({"voxels": torch.zeros(2, 2, 2), "label": torch.tensor(0)}, source="synth/test item 0")
    with pytest.raises(DatasetRequestError, match=r"\[N, C >= 3\]"):
        to_pyg_data({"points": torch.zeros(4, 2)})
    with pytest.raises(DatasetRequestError, match="'normals' has 3 rows for 4 points"):
        to_pyg_data({"points": torch.zeros(4, 3), "normals": torch.zeros(3, 3)})
