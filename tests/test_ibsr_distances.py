"""CMIC Table 1's d_HAU and d_IoU in the ``ibsr`` protocol, against values computed by hand on tiny shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ssl3d.bench.protocols.base import EvalContext
from ssl3d.bench.protocols.ibsr import IBSRConfig, IBSRProtocol
from ssl3d.bench.protocols.shape_distance import (
    modified_hausdorff,
    normalise_points,
    retrieved_shape_distances,
    voxel_iou,
)
from ssl3d.core.config import ConfigError
from ssl3d.core.errors import UserError

# two point sets already in the unit-cube frame (bounding-box centre at 0, longest side 1)
X = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
Y = np.array([[-0.5, -0.25, 0.0], [0.5, 0.25, 0.0]])  # each point of X is 0.25 from one of Y and vice versa


def grid(*occupied: int) -> np.ndarray:
    g = np.zeros((2, 2, 2), dtype=bool)
    g.flat[list(occupied)] = True
    return g


def test_modified_hausdorff_by_hand():
    x = np.array([[0.0, 0, 0], [2, 0, 0]])
    y = np.array([[0.0, 0, 0], [0, 1, 0], [0, 3, 0]])
    # x -> y: 0 + 2; y -> x: 0 + 1 + 3; pooled over the 5 points: 6 / 5
    assert modified_hausdorff(x, y) == pytest.approx(1.2)
    assert modified_hausdorff(y, x) == pytest.approx(1.2)
    # not Dubuisson-Jain's max of the two directed means (max(2/2, 4/3) = 1.333...)
    assert modified_hausdorff(x, y) != pytest.approx(4 / 3)
    assert modified_hausdorff(X, Y) == pytest.approx(0.25)
    assert modified_hausdorff(X, X) == 0.0
    with pytest.raises(ValueError, match=r"expected points of shape \[N, 3\]"):
        modified_hausdorff(np.zeros((0, 3)), X)


def test_normalisation_unit_cube_and_sphere():
    p = np.array([[1.0, 1, 1], [3, 5, 2]])  # extents 2, 4, 1; centre (2, 3, 1.5)
    np.testing.assert_allclose(normalise_points(p), [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]])
    np.testing.assert_allclose(normalise_points(p, "unit_sphere"), (p - [2, 3, 1.5]) / np.sqrt(1 + 4 + 0.25))
    np.testing.assert_allclose(normalise_points(X * 3 + 5), X)  # scale and position do not matter
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_points(p, "unit_ball")


def test_voxel_iou_by_hand():
    assert voxel_iou(grid(0, 1), grid(1, 2, 3)) == pytest.approx(1 / 4)
    assert voxel_iou(grid(0, 1), grid(0, 1)) == 1.0
    assert voxel_iou(grid(0), grid(7)) == 0.0
    assert voxel_iou(grid(0, 1).astype(np.float32), grid(1).astype(np.float32)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both voxel grids are empty"):
        voxel_iou(grid(), grid())
    with pytest.raises(ValueError, match="differ in shape"):
        voxel_iou(grid(0), np.ones((3, 3, 3)))


def test_pairs_use_the_indices_and_normalise_each_shape():
    points = np.stack([X, Y, X * 3 + 5])  # shape 2 is shape 0 scaled and moved
    voxels = np.stack([grid(0, 1), grid(1, 2, 3), grid(0, 1)])
    hau, iou = retrieved_shape_distances(points, voxels, [0, 1, 1, 2], points, voxels, [2, 2, 1, 0])
    np.testing.assert_allclose(hau, [0.0, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(iou, [1.0, 0.25, 1.0, 1.0])
    with pytest.raises(ValueError, match="outside its shape set"):
        retrieved_shape_distances(points, voxels, [3], points, voxels, [0])


# -- the protocol end to end on in-memory splits -------------------------------------------------------
class TinyShapes(Dataset):
    """Items are shapes: ``image`` / ``views`` hold the index the fake method embeds (a crafted retrieval)."""

    def __init__(self, points, voxels, labels, class_names, targets=None):
        self.points, self.voxels = points, voxels
        self._labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.targets = targets if targets is not None else list(range(len(labels)))

    @property
    def labels(self):
        return self._labels

    def gallery_split(self, modalities=None):
        return None

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        return {"label": torch.tensor(self._labels[i]), "index": torch.tensor(i),
                "image": torch.tensor([float(self.targets[i])]), "mask": torch.ones(1),
                "views": torch.tensor([float(i)]), "points": torch.from_numpy(self.points[i]).float(),
                "voxels": torch.from_numpy(self.voxels[i].astype(np.float32))}


class OneHot:
    """Plain embeddings: a photo embeds as the one-hot of its target shape, a shape as its own."""

    name = "one-hot"
    query_conditioned = False
    embed_modalities = frozenset({"image", "views"})

    def embed(self, batch, modality):
        return F.one_hot(batch[modality][:, 0].long(), 8).float()


QUERIES = dict(points=np.stack([X, Y, X * 3 + 5]), voxels=np.stack([grid(0, 1), grid(1, 2, 3), grid(0, 1)]),
               labels=[0, 1, 1], class_names=("box", "bag"))


def test_seen_gallery_top1_hau_iou_and_per_category():
    # q0 -> shape 0 (right), q1 -> shape 2 (wrong: truth 1), q2 -> shape 2 (right)
    test = TinyShapes(**QUERIES, targets=[0, 2, 2])
    protocol = IBSRProtocol(IBSRConfig(ks=(1, 2)))
    assert protocol.dataset_modalities("image") == ("image", "mask", "views", "points", "voxels")
    m = protocol.evaluate(OneHot(), None, test, "image", EvalContext(progress=False)).metrics
    assert m["top1_acc"] == pytest.approx(200 / 3)
    assert m["top2_acc"] == pytest.approx(200 / 3)  # q1's order is 2, 0, 1 (ties in gallery order)
    assert m["category_acc"] == 100.0  # shape 2 is a bag like shape 1
    assert m["hau"] == pytest.approx((0 + 0.25 + 0) / 3)  # d_H(Y, X) = 0.25 for q1 only
    assert m["iou"] == pytest.approx((1 + 0.25 + 1) / 3)
    assert m["top1_acc:box"] == 100.0 and m["top1_acc:bag"] == 50.0
    assert m["hau:box"] == 0.0 and m["hau:bag"] == pytest.approx(0.125)
    assert m["iou:box"] == 1.0 and m["iou:bag"] == pytest.approx(0.625)
    plain = IBSRProtocol(IBSRConfig(shape_distances=False, per_category=False))
    assert plain.dataset_modalities("image") == ("image", "mask", "views")
    assert set(plain.evaluate(OneHot(), None, test, "image", EvalContext(progress=False)).metrics) == {
        "top1_acc", "top10_acc", "category_acc"}


def test_unseen_gallery_measures_distances_to_the_own_ground_truth():
    test = TinyShapes(**QUERIES, targets=[0, 0, 1])  # q0 -> u0, q1 -> u0, q2 -> u1
    unseen = TinyShapes(np.stack([Y, X]), np.stack([grid(1, 2, 3), grid(0, 1)]), [0, 1], ("bag", "box"))
    protocol = IBSRProtocol(IBSRConfig(gallery_dataset="synth"))  # a registered dataset with views/points/voxels
    protocol.unseen_gallery = lambda test_data, progress: unseen  # the in-memory gallery stands for its test split
    assert protocol.dataset_modalities("image") == ("image", "mask", "points", "voxels")  # no views of the queries
    result = protocol.evaluate(OneHot(), None, test, "image", EvalContext(progress=False))
    m = result.metrics
    assert "top1_acc" not in m  # the ground truth is not in an unseen gallery
    # q0 (box, X) -> u0 (bag, Y): 0.25 / 0.25; q1 (bag, Y) -> u0: 0 / 1; q2 (bag, X) -> u1 (box, X): 0 / 1
    assert m["hau"] == pytest.approx(0.25 / 3) and m["iou"] == pytest.approx(2.25 / 3)
    assert m["category_acc"] == pytest.approx(100 / 3)  # matched by name: only q1 retrieves its category
    assert m["hau:box"] == pytest.approx(0.25) and m["iou:bag"] == 1.0
    assert result.details["gallery"] == "synth" and result.details["n_gallery"] == 2


def test_unseen_gallery_settings_are_checked_before_anything_runs():
    with pytest.raises(UserError, match="unknown dataset 'nowhere'"):
        IBSRProtocol(IBSRConfig(gallery_dataset="nowhere"))
    with pytest.raises(ConfigError, match="needs ibsr.shape_distances=true"):
        IBSRProtocol(IBSRConfig(gallery_dataset="synth", shape_distances=False))
    with pytest.raises(ConfigError, match="modelnet40-h5: it cannot provide views, voxels"):
        IBSRProtocol(IBSRConfig(gallery_dataset="modelnet40-h5"))


def test_unseen_gallery_is_the_other_datasets_test_split_with_the_query_pipeline(tmp_path):
    from types import SimpleNamespace

    from ssl3d.datasets import DataConfig

    query = SimpleNamespace(config=DataConfig(n_points=64, voxel_resolution=8, view_size=16, image_size=24), root=tmp_path)
    gallery = IBSRProtocol(IBSRConfig(gallery_dataset="synth")).unseen_gallery(query, progress=False)
    assert (gallery.name, gallery.split, gallery.modalities) == ("synth", "test", ("views", "points", "voxels"))
    cfg = gallery.config
    assert (cfg.n_points, cfg.voxel_resolution, cfg.view_size, cfg.image_size) == (64, 8, 16, 24)
    assert not (tmp_path / "synth" / "processed").exists()  # indexed only: caches are built when first read
