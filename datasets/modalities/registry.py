"""The registry of modality groups: name -> builder, settings, cache group, tensors.

A *modality group* is what one cache file holds: the arrays one builder
computes from one mesh (``points`` gives ``points``, ``normals`` and
``point_labels``). A group says

* which user-visible **modalities** it provides, each with the function that
  turns its stored (compact) array into the data contract's tensor;
* which config fields (**settings**) shape its arrays: they, and only they,
  go into the cache key, so changing ``n_points`` never invalidates voxels;
* its **seed id**, the last component of the per-shape random stream
  ``default_rng([crc32(dataset name), shape index, seed id])``, fixed forever
  because it is part of every cached array;
* its **builder** ``build(shape, config, rng) -> {key: array}`` (runs in the
  preprocessing workers).

The built-in groups live in :mod:`ssl3d.datasets.modalities.builtin`; a new
one (for example scene blocks) is one module that calls
:func:`register_modality_group` and is imported before the datasets that offer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import trimesh

from ssl3d.core.registry import Registry

__all__ = [
    "MODALITY_GROUPS", "MeshShape", "ModalityGroup", "all_modalities", "as_float_tensor", "as_long_tensor",
    "group_of", "register_modality_group",
]


@dataclass(frozen=True)
class MeshShape:
    """What a builder gets for one shape.

    Args:
        mesh: the shape, +Y up, any scale and position.
        face_part: int global part id per face, or None.
        name: the shape's name, for error messages.
        noise_std: surface noise the dataset adds to sampled points (synthetic data only).
        occupancy: the occupancy grid the dataset ships for this shape (``[x, y, z]``, +Y up, the
            grid the mesh was extracted from), or None; the ``voxels`` builder then reads it instead
            of voxelising the mesh.
    """

    mesh: trimesh.Trimesh
    face_part: np.ndarray | None
    name: str
    noise_std: float = 0.0
    occupancy: np.ndarray | None = None


Builder = Callable[[MeshShape, Any, np.random.Generator], dict[str, np.ndarray]]
ToTensor = Callable[[np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class ModalityGroup:
    """One cached modality group (module docstring)."""

    name: str
    modalities: Mapping[str, ToTensor]
    settings: tuple[str, ...]
    seed_id: int
    build: Builder


MODALITY_GROUPS: Registry[ModalityGroup] = Registry("modality group")


def register_modality_group(group: ModalityGroup) -> ModalityGroup:
    """Add ``group``; its name, seed id and modalities must all be new (they key caches and samples)."""
    for other in _groups():
        if other.seed_id == group.seed_id:
            raise ValueError(f"modality group {group.name!r}: seed id {group.seed_id} is taken by {other.name!r}")
        shared = set(other.modalities) & set(group.modalities)
        if shared:
            raise ValueError(f"modality group {group.name!r}: {', '.join(sorted(shared))} already come from {other.name!r}")
    MODALITY_GROUPS.add(group.name, group)
    return group


def _groups() -> list[ModalityGroup]:
    return [MODALITY_GROUPS.get(name) for name in MODALITY_GROUPS]


def all_modalities() -> tuple[str, ...]:
    """Every registered modality, group by group (groups sorted by name)."""
    return tuple(m for group in _groups() for m in group.modalities)


def group_of(modality: str) -> ModalityGroup:
    """The group whose cache holds ``modality``."""
    for group in _groups():
        if modality in group.modalities:
            return group
    raise KeyError(f"unknown modality {modality!r}; valid: {', '.join(all_modalities())}")


def as_float_tensor(value: np.ndarray) -> torch.Tensor:
    """A stored array as float32 (points, normals, 0/1 grids and masks)."""
    return torch.from_numpy(np.ascontiguousarray(value)).float()


def as_long_tensor(value: np.ndarray) -> torch.Tensor:
    """A stored array as int64 (labels)."""
    return torch.from_numpy(np.ascontiguousarray(value)).long()
