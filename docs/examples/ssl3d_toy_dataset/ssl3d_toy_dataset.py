"""``toy-solids``: an example ssl3d-bench dataset plugin (docs/adding-a-dataset.md).

Four classes of convex solids (box, cylinder, cone, ico-sphere), each shape
with its own seeded proportions and a rotation about the up axis. Everything
is generated, so nothing is downloaded; every modality of the common pipeline
(points, normals, voxels, views, image, mask) is derived from the meshes and
cached like the built-in datasets' are.

STATS (defaults):

======  =======  =========  ======
split   classes  per class  shapes
======  =======  =========  ======
train   4        8          32
test    4        4          16
======  =======  =========  ======
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from ssl3d.datasets import DataConfig, ShapeDataset, ShapeInfo

CLASSES = ("box", "cylinder", "cone", "sphere")
_SPLIT_SEEDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class ToySolidsConfig(DataConfig):
    """The common pipeline settings plus the size of each split (``--set data.train_per_class=16``)."""

    train_per_class: int = field(default=8, metadata={"range": "[1, inf)"})  # training shapes per class
    test_per_class: int = field(default=4, metadata={"range": "[1, inf)"})  # test shapes per class


class ToySolidsDataset(ShapeDataset):
    name = "toy-solids"                   # registry key (must equal the entry-point name)
    Config = ToySolidsConfig
    version = "1"                         # bump when the shapes change: old caches are then not reused
    prepare_modalities = ("points",)      # what `bench prepare toy-solids` caches by default

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES

    def index(self, split: str) -> list[ShapeInfo]:
        per_class = self.config.train_per_class if split == "train" else self.config.test_per_class
        return [ShapeInfo(name=f"{c}_{split}_{k:03d}", label=label, source=(split, label, k))
                for label, c in enumerate(CLASSES) for k in range(per_class)]

    def load_mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, None]:
        split, label, k = shape.source
        rng = np.random.default_rng([_SPLIT_SEEDS[split], label, k])  # the same shape on every machine
        width, height = rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.6)
        mesh = {
            "box": lambda: trimesh.creation.box(extents=(width, height, rng.uniform(0.4, 1.0))),
            "cylinder": lambda: trimesh.creation.cylinder(radius=width / 2, height=height, sections=24),
            "cone": lambda: trimesh.creation.cone(radius=width / 2, height=height, sections=24),
            "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=width / 2),
        }[CLASSES[label]]()
        if CLASSES[label] in ("cylinder", "cone"):  # trimesh builds them along +Z; the project is +Y up
            mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, (1, 0, 0)))
        mesh.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), (0, 1, 0)))
        return mesh, None  # no part labels
