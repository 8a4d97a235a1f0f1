"""``synth-scenes``: six areas of generated rooms, the offline stand-in for S3DIS (docs/scenes.md).

Rooms come from :func:`~ssl3d.datasets.synth_scenes.rooms.generate_room`
(structure, door/window openings, a board, a beam, a column and synth
furniture placed without intersections), labelled with the 13 S3DIS classes.
Like ``synth`` it is a fixed benchmark: its own ``seed`` picks the rooms, the
run seed never changes them, and the generator version enters every cache key.
The block pipeline settings are the scene datasets' (:class:`SceneConfig`).

STATS (defaults: 4 rooms per area, 120 points per square metre, 256-point blocks of surface,
1 m blocks at stride 1 m; counted by ``tests/test_synth_scenes.py``):

=====  =====  ================  ===========================
area   rooms  room size (m)     kinds
=====  =====  ================  ===========================
1      4      3.5-4.5 x 3.5-4.5 office, conference, lounge, storage
2      4      4.5-6.0 x 4.0-5.5 (higher ceilings, larger rooms)
3      4      3.0-4.0 x 3.5-4.5 (small, low)
4      4      3.5-5.0 x 3.0-4.0
5      4      3.5-5.0 x 3.5-5.0 (the test area)
6      4      3.0-4.5 x 3.0-4.0
=====  =====  ================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssl3d.datasets.base import register_dataset
from ssl3d.datasets.scene_dataset import Room, SceneConfig, SceneDataset
from ssl3d.datasets.synth_scenes.rooms import AREA_STYLES, SCENES_VERSION, generate_room

__all__ = ["SynthScenesConfig", "SynthScenesDataset"]


@dataclass(frozen=True)
class SynthScenesConfig(SceneConfig):
    """``synth-scenes`` settings: the block pipeline's (see :class:`SceneConfig`) plus the generator's."""

    rooms_per_area: int = field(default=3, metadata={"range": "[1, inf)"})  # rooms in each of the six areas (>= 3 puts every furniture class in every area)
    density: float = field(default=60.0, metadata={"range": "(0, inf)"})  # surface points per square metre (CPU-sized; S3DIS scans are far denser)
    seed: int = field(default=0, metadata={"range": "[0, inf)"})  # picks the rooms; the dataset does not change with the run seed
    block_points: int = field(default=128, metadata={"range": "[1, inf)"})  # points per block (S3DIS: 4096 on far denser scans; see docs/scenes.md)


@register_dataset("synth-scenes")
class SynthScenesDataset(SceneDataset):
    """Generated S3DIS-like rooms in six areas; see the module docstring."""

    name = "synth-scenes"
    Config = SynthScenesConfig
    version = f"synth-scenes-{SCENES_VERSION}"
    areas = tuple(sorted(AREA_STYLES))

    def rooms_of_area(self, area: int) -> list[Room]:
        return [Room(f"Area_{area}/room_{k}", area, k) for k in range(self.config.rooms_per_area)]

    def load_room(self, room: Room) -> tuple[np.ndarray, np.ndarray]:
        return generate_room(room.area, room.source, self.config.seed, self.config.density)

    def _room_settings(self) -> dict[str, Any]:
        cfg = self.config
        return {"rooms_per_area": cfg.rooms_per_area, "density": cfg.density, "seed": cfg.seed}
