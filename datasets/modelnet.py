"""ModelNet40 / ModelNet10 as datasets: OFF meshes (every modality) and the two point-cloud releases.

Four registered datasets:

* ``modelnet40`` / ``modelnet10``: the Princeton OFF meshes. The meshes are
  Z-up; :meth:`ModelNetOFFDataset.load_mesh` rotates them into the project's
  +Y-up frame with :func:`~ssl3d.datasets.formats.modelnet.z_up_to_y_up`
  (``(x, y, z) -> (x, z, -y)``) before any modality is derived, so points,
  voxels (axis 1 up), views and photo-like images all see the shape upright.
  A corrupt OFF file is reported by name in the cache report and skipped.
  The same datasets read a *voxel release* instead when the raw folder holds
  ``<class>/{train,test}/<class>_NNNN.binvox``: Z-up grids rotated the same
  way (:func:`~ssl3d.datasets.formats.modelnet.z_up_to_y_up_grid`); ``voxels``
  is the file's grid, and points, normals, views, image and mask come from the
  32^3 surface extracted from it (staircase geometry, nothing thinner than a
  voxel; :mod:`~ssl3d.datasets.modalities.surface`). Corrupt files and empty
  grids are skipped by name and counted.
* ``modelnet40-h5``: PointNet's ``modelnet40_ply_hdf5_2048`` (2,048 points per
  shape, +Y up): the data of the common linear-SVM protocol of point-cloud
  pretext papers. Points only.
* ``modelnet40-resampled``: PointNet++'s ``modelnet40_normal_resampled``
  (10,000 points + normals per shape, +Y up). Points and normals only.

Point-cloud releases are reduced to ``n_points`` by farthest-point sampling
and normalised into the unit sphere (the project's rule). ``modelnet40-h5``
also offers ``point_order="first"``: the first ``n_points`` stored points,
unchanged (the release is already centred and unit-sphere scaled per cloud),
which is the input of the common SVM protocol and what the ``modelnet40-svm``
task uses.

STATS (official splits; formats in
:mod:`ssl3d.datasets.formats.modelnet`, URLs and archives on the classes):

========================  =======  =====  =====  ===============================================================
dataset                   classes  train  test   source
========================  =======  =====  =====  ===============================================================
``modelnet40``            40       9,843  2,468  http://modelnet.cs.princeton.edu/ModelNet40.zip
``modelnet10``            10       3,991    908  http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip
``modelnet40-h5``         40       9,840  2,468  https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip
``modelnet40-resampled``  40       9,843  2,468  https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip
========================  =======  =====  =====  ===============================================================

The ModelNet10 32^3 binvox release (``modelnet10`` from a voxel folder) has the
official split, 3,991 train / 908 test grids, of which 34 are empty and skipped
(table 13 train + 6 test, bathtub 12 train, bed 1 train, desk 1 test, toilet 1
train): 3,964 train / 901 test usable shapes.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import trimesh

from ssl3d.datasets.base import DataConfig, ShapeInfo, register_dataset
from ssl3d.datasets.cache import CacheReport
from ssl3d.datasets.errors import DataFileError, DatasetRequestError
from ssl3d.datasets.formats.binvox import read_binvox
from ssl3d.datasets.formats.modelnet import (
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    index_modelnet_off,
    index_modelnet_voxels,
    index_normal_resampled,
    read_modelnet_h5,
    read_normal_resampled_txt,
    z_up_to_y_up,
    z_up_to_y_up_grid,
)
from ssl3d.datasets.formats.off import read_off
from ssl3d.datasets.modalities.points import subsample_points
from ssl3d.datasets.modalities.surface import SURFACE_SETTINGS, occupancy_surface
from ssl3d.datasets.real import RawPart, RealShapeDataset

__all__ = [
    "ModelNetConfig", "ModelNetH5Config", "ModelNetOFFDataset", "ModelNet40Dataset", "ModelNet10Dataset",
    "ModelNet40H5Dataset", "ModelNet40ResampledDataset",
]


#: the OFF archives' layout: <class>/{train,test}/<class>_NNNN.off
_OFF_LAYOUT = ("*/train/*.off", "*/test/*.off")
#: the voxel releases' layout: <class>/{train,test}/<class>_NNNN.binvox
_VOXEL_LAYOUT = ("*/train/*.binvox", "*/test/*.binvox")
#: layout name (in errors) -> the ``source`` entry of the data key
_SOURCES = {"OFF meshes": "off", "binvox voxel grids": "binvox"}


@dataclass(frozen=True)
class ModelNetConfig(DataConfig):
    """ModelNet OFF settings: the pipeline's (see :class:`DataConfig`) plus a class subset."""

    categories: tuple[str, ...] = ()  # use only these classes (labels follow the official order); () = all


class ModelNetOFFDataset(RealShapeDataset):
    """A ModelNet release: OFF meshes or voxel grids (``<class>/{train,test}/<class>_NNNN.{off,binvox}``), +Y up.

    Which one is detected from the raw folder (:attr:`source`; OFF when both are
    there). From voxels, ``voxels`` is the file's grid and every other modality
    comes from the surface extracted from it
    (:func:`~ssl3d.datasets.modalities.surface.occupancy_surface`); the source and
    the extraction settings are part of every cache key, so OFF- and voxel-derived
    caches never share a file, and OFF caches keep the keys they always had.
    """

    Config = ModelNetConfig
    all_classes: ClassVar[tuple[str, ...]] = ()
    available_modalities = frozenset({"points", "normals", "voxels", "views", "image", "mask", "held_out_photos",
                                      "held_out_masks"})
    prepare_modalities = ("points", "voxels", "views")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # each archive's folder may instead be a voxel release of the same classes and splits
        cls.raw_parts = tuple(
            dataclasses.replace(p, layout_name="OFF meshes", alternatives=(("binvox voxel grids", _VOXEL_LAYOUT),))
            for p in cls.raw_parts
        )

    @functools.cached_property
    def source(self) -> str:
        """``"off"`` (meshes) or ``"binvox"`` (occupancy grids): what the raw folder holds."""
        return _SOURCES[self.raw_layout(self.raw_dir)]

    @property
    def class_names(self) -> tuple[str, ...]:
        wanted = set(self.config.categories)
        unknown = sorted(wanted - set(self.all_classes))
        if unknown:
            raise ValueError(f"{self.name}: unknown categories {unknown}; valid: {', '.join(self.all_classes)}")
        return tuple(c for c in self.all_classes if c in wanted) if wanted else self.all_classes

    def raw_identity(self) -> dict[str, Any]:
        return {} if self.source == "off" else {"source": self.source}  # OFF: the keys it always had

    def settings(self, group: str) -> dict[str, Any]:
        out = super().settings(group)
        if self.source == "off":
            return out
        out.update(self.raw_identity())
        if group == "voxels":
            out["voxel_rule"] = "file grid; max-pool for integer downsampling, else nearest centre"
        else:
            out["surface"] = dict(SURFACE_SETTINGS)
        return out

    def index(self, split: str) -> list[ShapeInfo]:
        indexer = index_modelnet_voxels if self.source == "binvox" else index_modelnet_off
        records = indexer(self.raw_dir, split, self.class_names)
        return [ShapeInfo(name=r.shape_id, label=r.label, source=r.path) for r in records]

    def load_occupancy(self, shape: ShapeInfo) -> np.ndarray | None:
        if self.source != "binvox":
            return None
        grid = read_binvox(shape.source, allow_empty_runs=True)  # trimesh-written files hold empty runs
        if not grid.any():
            raise DataFileError(shape.source, "occupancy grid is empty (the source voxelisation failed)")
        return z_up_to_y_up_grid(grid)  # Z-up like the meshes; the surface below is then +Y up too

    def load_mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, None]:
        if self.source == "binvox":
            return occupancy_surface(self.load_occupancy(shape), name=str(shape.source)), None
        # ModelNet is Z-up; every modality is derived from the +Y-up mesh.
        return z_up_to_y_up(read_off(shape.source)), None


@register_dataset("modelnet40")
class ModelNet40Dataset(ModelNetOFFDataset):
    """ModelNet40 OFF meshes, 40 classes (counts: the module's STATS)."""

    name = "modelnet40"
    raw_parts = (RawPart(("http://modelnet.cs.princeton.edu/ModelNet40.zip",), "ModelNet40.zip", "ModelNet40", _OFF_LAYOUT),)
    raw_name = "ModelNet40"
    all_classes = MODELNET40_CLASSES


@register_dataset("modelnet10")
class ModelNet10Dataset(ModelNetOFFDataset):
    """ModelNet10 OFF meshes, 10 classes (counts: the module's STATS)."""

    name = "modelnet10"
    raw_parts = (RawPart(
        ("http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip",), "ModelNet10.zip", "ModelNet10", _OFF_LAYOUT,
    ),)
    raw_name = "ModelNet10"
    all_classes = MODELNET10_CLASSES


@dataclass(frozen=True)
class ModelNetH5Config(DataConfig):
    """``modelnet40-h5`` settings: the pipeline's (see :class:`DataConfig`) plus how points are picked."""

    point_order: Literal["fps", "first"] = "fps"  # fps: FPS + unit sphere; first: the first n_points as stored (PointNet scripts)


# Per-process cache of whole h5 splits: indexing needs the labels, and the
# preprocessing workers (forked after indexing) then share the arrays instead of
# re-reading 2,048-point clouds per shape. Emptied once the cache is built.
_H5_SPLITS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, list[str]]] = {}


def _h5_split(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    key = (str(raw), split)
    if key not in _H5_SPLITS:
        _H5_SPLITS[key] = read_modelnet_h5(raw, split)
    return _H5_SPLITS[key]


@register_dataset("modelnet40-h5")
class ModelNet40H5Dataset(RealShapeDataset):
    """PointNet's ``modelnet40_ply_hdf5_2048``: clouds of 2,048 points, +Y up (counts: the module's STATS)."""

    name = "modelnet40-h5"
    Config = ModelNetH5Config
    raw_parts = (RawPart(
        ("https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip",), "modelnet40_ply_hdf5_2048.zip",
        "modelnet40_ply_hdf5_2048", ("shape_names.txt", "ply_data_train*.h5", "ply_data_test*.h5"),
    ),)
    raw_name = "modelnet40_ply_hdf5_2048"
    point_only = True
    available_modalities = frozenset({"points"})

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    def index(self, split: str) -> list[ShapeInfo]:
        points, labels, names = _h5_split(self.raw_dir, split)
        if self.config.point_order == "first" and self.config.n_points > points.shape[1]:
            raise DatasetRequestError(
                f"modelnet40-h5 holds {points.shape[1]} points per cloud; data.n_points={self.config.n_points} "
                "needs data.point_order=fps (which repeats points) or a smaller data.n_points"
            )
        self._names = tuple(names)
        # the release has no shape ids: name clouds by split position and class
        return [ShapeInfo(name=f"{split}_{k:05d}_{names[int(y)]}", label=int(y), source=k) for k, y in enumerate(labels)]

    def load_points(self, shape: ShapeInfo) -> dict[str, np.ndarray]:
        points = _h5_split(self.raw_dir, self.split)[0][shape.source]
        if self.config.point_order == "first":
            # the common SVM protocol's input: the release is already centred and unit-sphere scaled per cloud
            return {"points": np.ascontiguousarray(points[: self.config.n_points], dtype=np.float32)}
        return subsample_points(points, self.config.n_points)

    def prepare(self) -> dict[str, CacheReport]:
        reports = super().prepare()
        # the cache now holds the sampled points; free the raw arrays of this split
        _H5_SPLITS.pop((str(self.raw_dir), self.split), None)
        return reports


@register_dataset("modelnet40-resampled")
class ModelNet40ResampledDataset(RealShapeDataset):
    """PointNet++'s ``modelnet40_normal_resampled``: 10,000 points + normals per shape, +Y up (counts: the module's STATS)."""

    name = "modelnet40-resampled"
    raw_parts = (RawPart(
        ("https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip",), "modelnet40_normal_resampled.zip",
        "modelnet40_normal_resampled", ("modelnet40_shape_names.txt", "modelnet40_train.txt", "modelnet40_test.txt"),
    ),)
    raw_name = "modelnet40_normal_resampled"
    point_only = True
    available_modalities = frozenset({"points", "normals"})

    @property
    def class_names(self) -> tuple[str, ...]:
        path = self.raw_dir / "modelnet40_shape_names.txt"
        return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())

    def index(self, split: str) -> list[ShapeInfo]:
        records = index_normal_resampled(self.raw_dir, split, 40)
        return [ShapeInfo(name=r.shape_id, label=r.label, source=r.path) for r in records]

    def load_points(self, shape: ShapeInfo) -> dict[str, np.ndarray]:
        points, normals = read_normal_resampled_txt(shape.source)
        return subsample_points(points, self.config.n_points, normals=normals)
