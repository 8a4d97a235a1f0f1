"""The built-in modality groups: ``points``, ``voxels``, ``views``, ``image``, ``held_out_photos``.

Each builder turns one mesh into the arrays of its group, stored compactly
(uint8 grids and images) and turned into the data contract's float tensors
when read:

* ``points``: ``points`` / ``normals`` float32 [N, 3] and, with part ids,
  ``point_labels`` int64 [N] (:mod:`~ssl3d.datasets.modalities.points`);
* ``voxels``: ``voxels`` uint8 [R, R, R] (0/1) and ``voxel_fallback`` bool (the
  non-watertight rule was used) (:mod:`~ssl3d.datasets.modalities.voxelize`);
  a shape that ships its own grid (``MeshShape.occupancy``) gets that grid, read not recomputed;
* ``views``: ``views`` uint8 [V, H, W] and ``view_cameras`` float32 [V, 3] unit
  directions (:mod:`~ssl3d.datasets.modalities.render`), read as float [V, C, H, W];
* ``image``: ``image`` uint8 [H, W, 3] and ``mask`` uint8 [H, W] (0/1)
  (:mod:`~ssl3d.datasets.modalities.photo`), the image read as float [3, H, W];
* ``held_out_photos``: ``held_out_photos`` uint8 [K, H, W, 3] and ``held_out_masks``
  uint8 [K, H, W], K = :data:`HELD_OUT_PHOTOS` more photo-like renders of the
  shape, read as float [K, 3, H, W] and [K, H, W]. They come from the group's own
  seed stream (seed id 4, not the ``image`` group's 3), so every camera, crop,
  colour, light and background is a new draw: the queries of the ``ibsr-seen``
  protocol, photos of the training shapes that pretraining on ``image`` never saw.
  No method pretrains on them.

The seed ids (0-4) and the settings tuples are part of every existing cache's
content and key: never change them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ssl3d.datasets.modalities.cameras import camera_rig
from ssl3d.datasets.modalities.photo import render_photo
from ssl3d.datasets.modalities.points import sample_mesh_points
from ssl3d.datasets.modalities.registry import (
    MeshShape, ModalityGroup, as_float_tensor, as_long_tensor, register_modality_group,
)
from ssl3d.datasets.modalities.render import render_views
from ssl3d.datasets.modalities.voxelize import resample_grid, voxelize


def build_points(shape: MeshShape, cfg: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Area-weighted dense sample, FPS to ``n_points``, unit sphere (+ the dataset's surface noise)."""
    return sample_mesh_points(
        shape.mesh, cfg.n_points, rng, face_part=shape.face_part, n_dense=cfg.dense_factor * cfg.n_points,
        noise_std=shape.noise_std, name=shape.name,
    )


def build_voxels(shape: MeshShape, cfg: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Solid occupancy on an R^3 grid: the shipped grid when the shape has one (resampled by
    :func:`~ssl3d.datasets.modalities.voxelize.resample_grid` when R differs), else voxelised from the mesh."""
    if shape.occupancy is not None:
        grid = resample_grid(shape.occupancy, cfg.voxel_resolution)
        return {"voxels": (grid != 0).astype(np.uint8), "voxel_fallback": np.array(False)}
    result = voxelize(shape.mesh, cfg.voxel_resolution)
    return {"voxels": result.occupancy.astype(np.uint8), "voxel_fallback": np.array(result.used_fallback)}


def build_views(shape: MeshShape, cfg: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Renders from the configured camera rig (``random``: per-object cameras, CM-CV, seeded per shape)."""
    if cfg.view_rig == "random":
        cameras = camera_rig("random", n_views=cfg.n_views, seed=int(rng.integers(2**31)))
    else:
        cameras = camera_rig(cfg.view_rig)
    views = render_views(shape.mesh, cameras, cfg.view_size, cfg.view_shading)
    return {"views": views.astype(np.uint8), "view_cameras": cameras.astype(np.float32)}


def build_image(shape: MeshShape, cfg: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A photo-like render and its object mask."""
    photo = render_photo(shape.mesh, shape.face_part, rng, cfg.image_size)
    return {"image": photo.image.astype(np.uint8), "mask": photo.mask.astype(np.uint8)}


#: photo-like renders per shape in the ``held_out_photos`` group (part of its arrays: never change it)
HELD_OUT_PHOTOS = 3


def build_held_out_photos(shape: MeshShape, cfg: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """:data:`HELD_OUT_PHOTOS` photo-like renders and their masks, drawn one after another from ``rng``."""
    photos = [render_photo(shape.mesh, shape.face_part, rng, cfg.image_size) for _ in range(HELD_OUT_PHOTOS)]
    return {"held_out_photos": np.stack([p.image for p in photos]).astype(np.uint8),
            "held_out_masks": np.stack([p.mask for p in photos]).astype(np.uint8)}


def views_tensor(value: np.ndarray) -> torch.Tensor:
    """uint8 [V, H, W] (grey) or [V, H, W, C] -> float [V, C, H, W] in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(value)).float() / 255.0
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def image_tensor(value: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(value)).float().permute(2, 0, 1) / 255.0


def photos_tensor(value: np.ndarray) -> torch.Tensor:
    """uint8 [K, H, W, 3] -> float [K, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(value)).float().permute(0, 3, 1, 2) / 255.0


POINTS = register_modality_group(ModalityGroup(
    "points", {"points": as_float_tensor, "normals": as_float_tensor, "point_labels": as_long_tensor},
    settings=("n_points", "dense_factor"), seed_id=0, build=build_points,
))
VOXELS = register_modality_group(ModalityGroup(
    "voxels", {"voxels": as_float_tensor}, settings=("voxel_resolution",), seed_id=1, build=build_voxels,
))
VIEWS = register_modality_group(ModalityGroup(
    "views", {"views": views_tensor}, settings=("view_rig", "n_views", "view_size", "view_shading"), seed_id=2,
    build=build_views,
))
IMAGE = register_modality_group(ModalityGroup(
    "image", {"image": image_tensor, "mask": as_float_tensor}, settings=("image_size",), seed_id=3, build=build_image,
))
HELD_OUT = register_modality_group(ModalityGroup(
    "held_out_photos", {"held_out_photos": photos_tensor, "held_out_masks": as_float_tensor}, settings=("image_size",),
    seed_id=4, build=build_held_out_photos,
))
