"""PyTorch Geometric views of point splits: every item as a ``torch_geometric.data.Data`` point cloud.

For researchers whose models are written with PyG: a split of any dataset
built with the ``points`` modality becomes ``Data`` objects that PyG's
transforms, layers and :class:`torch_geometric.loader.DataLoader` accept::

    from torch_geometric.loader import DataLoader
    from ssl3d.datasets import get_dataset
    from ssl3d.datasets.pyg import PyGPointDataset

    split = get_dataset("synth")("train", modalities=("points", "normals"))
    loader = DataLoader(PyGPointDataset(split), batch_size=32, shuffle=True)

One item becomes (the names PyG's own point-cloud datasets and transforms use)

* ``pos`` float [N, 3]: the item's ``points`` (their first three channels);
* ``x`` float [N, C - 3]: the remaining channels of ``points`` when it has more
  than three (scene blocks: colour and normalised room coordinates), else absent;
* ``normal`` float [N, 3]: the item's ``normals``, when the split holds them
  (``SamplePoints(include_normals=True)`` and ``NormalizeRotation`` use this name);
* ``point_labels`` int64 [N]: per-point part / class ids, when the split holds them;
* ``y`` int64 [1]: the item's ``label`` (as in PyG's ModelNet, so a batch's ``y`` is [B]);
* ``idx`` int64 [1]: the item's position in the split (its ``index``; a key
  containing "index" would be shifted by the node count when PyG batches).

Other modalities of the item (voxels, views, images) are not carried: they
are not point data. No edges are built: a graph (kNN, radius) is the model's
choice, e.g. from :func:`ssl3d.methods.backbones.knn_indices`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data import Dataset as PyGDataset

from ssl3d.datasets.base import ShapeDataset
from ssl3d.datasets.errors import DatasetRequestError

__all__ = ["PyGPointDataset", "pyg_data_list", "require_points", "to_pyg_data"]


def require_points(dataset: ShapeDataset) -> None:
    """Raise :class:`DatasetRequestError`, naming the dataset and the modality, unless ``dataset`` holds ``points``."""
    where = f"{dataset.name}/{dataset.split}"
    if "points" not in dataset.available_modalities:
        raise DatasetRequestError(
            f"{where}: PyG Data objects need the 'points' modality, which {dataset.name} cannot provide "
            f"(it provides: {', '.join(sorted(dataset.available_modalities))})"
        )
    if "points" not in dataset.modalities:
        raise DatasetRequestError(
            f"{where}: PyG Data objects need the 'points' modality, but this split was built with "
            f"modalities {list(dataset.modalities)}; construct it with modalities=('points', ...) "
            f"(add 'normals' for Data.normal)"
        )


def to_pyg_data(item: Mapping[str, Tensor], source: str = "item") -> Data:
    """One item of a split (the data contract's dict) as a PyG ``Data`` point cloud (module docstring).

    Args:
        item: ``points`` [N, C >= 3] and ``label``; optionally ``normals`` [N, 3],
            ``point_labels`` [N] and ``index``.
        source: names the item in error messages (e.g. ``"synth/train item 3"``).
    """
    if "points" not in item:
        raise DatasetRequestError(f"{source}: has no 'points' modality (keys: {', '.join(sorted(item))}); "
                                  f"PyG Data objects need it")
    points = item["points"]
    if points.dim() != 2 or points.shape[1] < 3:
        raise DatasetRequestError(f"{source}: 'points' must be [N, C >= 3]; got shape {tuple(points.shape)}")
    n = points.shape[0]
    data = Data(pos=points[:, :3])
    if points.shape[1] > 3:
        data.x = points[:, 3:]
    for key, attr in (("normals", "normal"), ("point_labels", "point_labels")):
        if key in item:
            value = item[key]
            if value.shape[0] != n:
                raise DatasetRequestError(f"{source}: {key!r} has {value.shape[0]} rows for {n} points")
            data[attr] = value
    if "label" in item:
        data.y = torch.as_tensor(item["label"], dtype=torch.long).reshape(1)
    if "index" in item:
        data.idx = torch.as_tensor(item["index"], dtype=torch.long).reshape(1)
    return data


class PyGPointDataset(PyGDataset):
    """A lazy ``torch_geometric.data.Dataset`` view of a split: item ``i`` is ``to_pyg_data(split[i])``.

    Nothing is copied: items are read from the split's cache on access (in
    DataLoader workers too). Slicing, index tensors and ``shuffle()`` give
    views of the same split, as for any PyG dataset.

    Args:
        dataset: a split built with the ``points`` modality (and ``normals``
            / ``point_labels`` for those attributes).
        transform: a PyG transform applied to every ``Data`` on access
            (e.g. ``torch_geometric.transforms.RandomJitter(0.01)``).

    Raises:
        DatasetRequestError: the split does not hold ``points``.
    """

    def __init__(self, dataset: ShapeDataset, transform: Callable[[Data], Data] | None = None) -> None:
        require_points(dataset)
        self.dataset = dataset
        super().__init__(root=None, transform=transform, log=False)

    def len(self) -> int:
        return len(self.dataset)

    def get(self, idx: int) -> Data:
        return to_pyg_data(self.dataset[idx], source=f"{self.dataset.name}/{self.dataset.split} item {idx}")

    @property
    def num_classes(self) -> int:
        """The split's number of categories (not inferred by reading every item)."""
        return self.dataset.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset!r}, items={len(self)})"


def pyg_data_list(dataset: ShapeDataset, transform: Callable[[Data], Data] | None = None) -> list[Data]:
    """Every item of ``dataset`` as a ``Data`` (``transform`` applied once), in split order.

    The list is held in memory; it is what ``torch_geometric.loader.DataLoader``
    or ``InMemoryDataset.collate`` take.

    Raises:
        DatasetRequestError: the split does not hold ``points``.
    """
    view = PyGPointDataset(dataset, transform=transform)
    return [view[i] for i in range(len(view))]
