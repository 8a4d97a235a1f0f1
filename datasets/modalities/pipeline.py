"""One mesh -> the arrays of a cached modality group (``voxels``, ``views``, ``image``).

Called per shape by :meth:`ssl3d.datasets.base.ShapeDataset.compute` inside
preprocessing workers; arrays are stored compactly (uint8) and turned into the
data contract's float tensors when read. ``points`` has its own module
(:mod:`ssl3d.datasets.modalities.points`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import trimesh

from ssl3d.datasets.modalities.cameras import camera_rig
from ssl3d.datasets.modalities.photo import render_photo
from ssl3d.datasets.modalities.render import render_views
from ssl3d.datasets.modalities.voxelize import voxelize


def compute_group(group: str, mesh: trimesh.Trimesh, face_part: np.ndarray | None, cfg: Any,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Arrays of ``group`` for one mesh under the pipeline settings ``cfg`` (a DataConfig).

    Returns:
        * ``voxels``: ``voxels`` uint8 [R, R, R] (0/1) and ``voxel_fallback`` bool (the
          non-watertight rule was used);
        * ``views``: ``views`` uint8 [V, H, W] and ``view_cameras`` float32 [V, 3] unit directions;
        * ``image``: ``image`` uint8 [H, W, 3] and ``mask`` uint8 [H, W] (0/1).
    """
    if group == "voxels":
        result = voxelize(mesh, cfg.voxel_resolution)
        return {"voxels": result.occupancy.astype(np.uint8), "voxel_fallback": np.array(result.used_fallback)}
    if group == "views":
        if cfg.view_rig == "random":  # per-object random cameras (CM-CV), seeded per shape
            cameras = camera_rig("random", n_views=cfg.n_views, seed=int(rng.integers(2**31)))
        else:
            cameras = camera_rig(cfg.view_rig)
        views = render_views(mesh, cameras, cfg.view_size, cfg.view_shading)
        return {"views": views.astype(np.uint8), "view_cameras": cameras.astype(np.float32)}
    if group == "image":
        photo = render_photo(mesh, face_part, rng, cfg.image_size)
        return {"image": photo.image.astype(np.uint8), "mask": photo.mask.astype(np.uint8)}
    raise ValueError(f"unknown modality group {group!r}; valid: points, voxels, views, image")
