"""``shapenetpart``: ShapeNetPart part segmentation (PointNet++'s ``_normal`` release), points only.

Every shape is a stored point cloud with normals and a global part id per
point (50 parts over 16 categories; a category owns a fixed range of ids,
:data:`~ssl3d.datasets.formats.shapenetpart.SHAPENETPART_PARTS`). Samples are
``points`` (farthest-point sampled to ``n_points``, unit sphere), ``normals``
and ``point_labels`` (int64 global part ids), so the segmentation protocol
can restrict predictions to the parts of the shape's category. The release
keeps the ShapeNetCore frame, which is +Y up like this project: no rotation.
There are no meshes, hence no voxels, views or photos.

STATS (official splits of
https://shapenet.cs.stanford.edu/media/shapenetcore_partanno_segmentation_benchmark_v0_normal.zip):

==========  ==========  =====  ======
split       categories  parts  shapes
==========  ==========  =====  ======
train       16          50     12,137
val         16          50      1,870
test        16          50      2,874
trainval    16          50     14,007
==========  ==========  =====  ======

Shapes per category: Airplane 2,690, Bag 76, Cap 55, Car 898, Chair 3,758,
Earphone 69, Guitar 787, Knife 392, Lamp 1,547, Laptop 451, Motorbike 202,
Mug 184, Pistol 283, Rocket 66, Skateboard 152, Table 5,271 (16,881 in all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl3d.datasets.base import DataConfig, ShapeInfo, register_dataset
from ssl3d.datasets.formats.shapenetpart import (
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_NUM_PARTS,
    SHAPENETPART_PARTS,
    index_shapenetpart,
    read_shapenetpart_txt,
)
from ssl3d.datasets.modalities.points import subsample_points
from ssl3d.datasets.real import RawPart, RealShapeDataset

__all__ = ["ShapeNetPartConfig", "ShapeNetPartDataset"]


@dataclass(frozen=True)
class ShapeNetPartConfig(DataConfig):
    """ShapeNetPart settings: the pipeline's (see :class:`DataConfig`) plus a category subset."""

    n_points: int = field(default=2048, metadata={"range": "[1, inf)"})  # points per shape (the usual ShapeNetPart setting)
    categories: tuple[str, ...] = ()  # keep only these categories (labels stay the 16 global ones); () = all


@register_dataset("shapenetpart")
class ShapeNetPartDataset(RealShapeDataset):
    """ShapeNetPart: 16 categories, 50 global part ids, splits train / val / test / trainval."""

    name = "shapenetpart"
    Config = ShapeNetPartConfig
    raw_name = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    raw_parts = (RawPart(
        (f"https://shapenet.cs.stanford.edu/media/{raw_name}.zip",), f"{raw_name}.zip", raw_name,
        layout=(
            "synsetoffset2category.txt",
            "train_test_split/shuffled_train_file_list.json",
            "train_test_split/shuffled_val_file_list.json",
            "train_test_split/shuffled_test_file_list.json",
        ),
    ),)
    splits = ("train", "val", "test", "trainval")
    point_only = True
    mesh_alternative = "modelnet40 (OFF meshes) or r2n2 (ShapeNet voxels and renders)"
    available_modalities = frozenset({"points", "normals", "point_labels"})
    prepare_modalities = ("points",)
    prepare_splits = ("train", "val", "test")  # trainval would duplicate train + val

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(SHAPENETPART_CATEGORIES)

    @property
    def num_parts(self) -> int:
        return SHAPENETPART_NUM_PARTS

    @property
    def category_parts(self) -> dict[str, tuple[int, ...]]:
        return dict(SHAPENETPART_PARTS)

    def index(self, split: str) -> list[ShapeInfo]:
        categories = list(self.config.categories) or None
        records = index_shapenetpart(self.raw_dir, split, categories)
        return [ShapeInfo(name=r.shape_id, label=r.label, source=(r.path, r.category)) for r in records]

    def load_points(self, shape: ShapeInfo) -> dict[str, np.ndarray]:
        path, category = shape.source
        # passing the category makes the reader reject part ids of another category (misfiled shapes)
        points, normals, parts = read_shapenetpart_txt(path, category)
        return subsample_points(points, self.config.n_points, normals=normals, labels=parts)
