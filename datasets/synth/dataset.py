"""``synth``: the embedded, procedural default dataset (works offline, every modality).

Shapes come from the seeded generator in :mod:`ssl3d.datasets.synth.shapes`:
categories of furniture, vessels and vehicles built from primitives with real
intra-class variation, nuisance factors real scans have (rotation about the up
axis, anisotropic scale, per-part size jitter, missing parts, surface noise on
the sampled points) and deliberately confusable categories. Every face carries
a global part id, so the dataset also serves part segmentation.

The dataset is a fixed benchmark, not a function of the run seed: its own
``seed`` field picks the shapes, and ``SYNTH_VERSION`` is recorded in every
result so numbers from different generator versions are never mixed.

STATS (defaults):

============  ==========  ========  =======
split         classes     per class shapes
============  ==========  ========  =======
train         12          60        720
test          12          20        240
============  ==========  ========  =======
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from ssl3d.datasets.base import DataConfig, ShapeDataset, ShapeInfo, register_dataset
from ssl3d.datasets.synth.shapes import CATEGORIES, CATEGORY_PARTS, PART_NAMES, SYNTH_VERSION, Nuisance, generate_shape

_SPLIT_IDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SynthConfig(DataConfig):
    """``synth`` settings: the pipeline's (see :class:`DataConfig`) plus the generator's."""

    n_classes: int = field(default=12, metadata={"range": f"[2, {len(CATEGORIES)}]"})  # how many of the generator's categories to use (in CATEGORIES order)
    train_per_class: int = field(default=60, metadata={"range": "[1, inf)"})  # training shapes per category
    test_per_class: int = field(default=20, metadata={"range": "[1, inf)"})  # test shapes per category
    seed: int = field(default=0, metadata={"range": "[0, inf)"})  # picks the shapes; the dataset does not change with the run seed
    point_noise: float = field(default=0.01, metadata={"range": "[0, inf)"})  # std of Gaussian surface noise on sampled points (unit-sphere units)
    nuisance: bool = True  # rotation about +Y, anisotropic scale, part jitter and dropped parts on/off


@register_dataset("synth")
class SynthDataset(ShapeDataset):
    """The procedural default dataset; see the module docstring."""

    name = "synth"
    Config = SynthConfig
    version = f"synth-{SYNTH_VERSION}"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(CATEGORIES[: self.config.n_classes])

    @property
    def num_parts(self) -> int:
        return len(PART_NAMES)

    @property
    def category_parts(self) -> dict[str, tuple[int, ...]]:
        return {c: tuple(CATEGORY_PARTS[c]) for c in self.class_names}

    def index(self, split: str) -> list[ShapeInfo]:
        if not 2 <= self.config.n_classes <= len(CATEGORIES):
            raise ValueError(f"synth: n_classes must be in [2, {len(CATEGORIES)}], got {self.config.n_classes}")
        per_class = self.config.train_per_class if split == "train" else self.config.test_per_class
        return [
            ShapeInfo(name=f"{category}_{split}_{k:04d}", label=label, source=(category, split, k))
            for label, category in enumerate(self.class_names)
            for k in range(per_class)
        ]

    def load_mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, np.ndarray]:
        category, split, k = shape.source
        rng = np.random.default_rng([self.config.seed, _SPLIT_IDS[split], CATEGORIES.index(category), k])
        nuisance = Nuisance() if self.config.nuisance else Nuisance(rotate_up=False, aniso_scale=0.0, part_jitter=0.0, drop_part_prob=0.0)
        return generate_shape(category, rng, nuisance)

    def point_noise(self) -> float:
        return self.config.point_noise
