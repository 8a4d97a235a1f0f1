r"""``r2n2``: 3D-R2N2's ShapeNet subset: 24 renders and a 32^3 voxel grid per shape.

Raw files: ``ShapeNetRendering.tgz`` and ``ShapeNetVox32.tgz`` extracted side
by side (``raw/r2n2/ShapeNetRendering``, ``raw/r2n2/ShapeNetVox32``); with
``--from``, give both archives, or one folder holding both.

Modalities (no meshes are involved):

* ``voxels``: the shipped ``model.binvox`` grids, read as ``[x, y, z]`` with
  +Y up (axis 1), exactly as released: the reconstruction ground truth of
  every paper on this data. For ``voxel_resolution`` :math:`R \ne 32` the grid
  is resampled by nearest voxel centre: voxel :math:`i` of the :math:`R` grid
  takes the value of voxel :math:`\lfloor (i + \tfrac12)\,32 / R \rfloor`
  (identity at 32; thin parts may vanish below 32). ``voxel_fallback`` is
  always False (nothing is voxelised here).
* ``views``: the first ``n_views`` (default all 24) of the released renders
  ``00.png .. 23.png``, alpha-composited on white, converted to grey by
  luminance :math:`Y = 0.299R + 0.587G + 0.114B` (ITU-R BT.601) and resized to
  ``view_size`` (default 137, the native size; bilinear). R2N2 rendered each
  shape from its own fixed random cameras (``rendering_metadata.txt``), so
  ``view_rig`` and ``view_shading`` are ignored and are not part of the cache key;
  ``view_shading="depth"`` is refused.
* ``points``: derived from the voxels, since no mesh is shipped: the centres
  of the surface voxels (occupied voxels with an empty 6-neighbour or on the
  grid border), farthest-point sampled to ``n_points`` and normalised into
  the unit sphere. They lie on the 32^3 lattice, a coarse stand-in for
  surface samples: use them for sanity checks, not point-cloud benchmarks.

Split: the released 3D-R2N2 rule (sorted ids per category, first 80% train),
or a Pix2Vox-style ``ShapeNet.json`` through ``split_file``
(:func:`~ssl3d.datasets.formats.r2n2.index_r2n2`).

STATS (13 categories; sources http://cvgl.stanford.edu/data2/ShapeNetRendering.tgz
and http://cvgl.stanford.edu/data2/ShapeNetVox32.tgz):

======  ==========  ======  =====================
split   categories  shapes  views per shape
======  ==========  ======  =====================
all     13          43,783  24 (137 x 137 RGBA)
train   13          ~80%    24
test    13          ~20%    24
======  ==========  ======  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ssl3d.datasets.base import DataConfig, ShapeInfo, register_dataset
from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.binvox import read_binvox
from ssl3d.datasets.formats.r2n2 import R2N2_CATEGORIES, R2N2_NUM_VIEWS, index_r2n2, read_r2n2_views
from ssl3d.datasets.modalities.points import subsample_points
from ssl3d.datasets.real import RawPart, RealShapeDataset

__all__ = ["R2N2Config", "R2N2Dataset", "resample_occupancy", "surface_voxel_centres", "luminance"]


@dataclass(frozen=True)
class R2N2Config(DataConfig):
    """3D-R2N2 settings: the pipeline's (see :class:`DataConfig`) plus the subset and split file."""

    n_views: int = field(default=24, metadata={"range": f"[1, {R2N2_NUM_VIEWS}]"})  # the first n_views of the 24 released renders (1..24)
    categories: tuple[str, ...] = ()  # synset ids or names to keep (labels stay the 13 global ones); () = all
    split_file: str = ""  # Pix2Vox-style ShapeNet.json; "" = the released 3D-R2N2 80/20 rule


def resample_occupancy(occupancy: np.ndarray, resolution: int) -> np.ndarray:
    r"""Nearest-centre resampling of a cubic ``[d, d, d]`` grid to ``[R, R, R]``.

    .. math::
        \mathrm{out}[i, j, k] = \mathrm{occ}[s(i), s(j), s(k)], \quad s(i) = \lfloor (i + \tfrac12)\, d / R \rfloor

    Args:
        occupancy: cubic occupancy grid.
        resolution: :math:`R > 0`.

    Returns:
        the resampled grid, same dtype.

    Shapes:
        - **occupancy:** :math:`[d, d, d]`; **output:** :math:`[R, R, R]`.
    """
    if resolution <= 0:
        raise ValueError(f"resolution must be a positive integer, got {resolution}")
    d = occupancy.shape[0]
    if resolution == d:
        return occupancy
    idx = np.floor((np.arange(resolution) + 0.5) * d / resolution).astype(np.int64)
    return occupancy[np.ix_(idx, idx, idx)]


def surface_voxel_centres(occupancy: np.ndarray) -> np.ndarray:
    """Centres of the occupied voxels with an empty 6-neighbour (outside the grid counts as empty).

    Args:
        occupancy: bool ``[d, d, d]`` grid, index order ``[x, y, z]``.

    Returns:
        float64 ``[S, 3]`` centres in voxel units (voxel ``(i, j, k)`` has centre ``(i, j, k) + 0.5``).
    """
    occ = np.asarray(occupancy, dtype=bool)
    interior = ndimage.binary_erosion(occ, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return np.argwhere(occ & ~interior).astype(np.float64) + 0.5


def luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 grey of uint8 RGB images by ITU-R BT.601 luma (``0.299 R + 0.587 G + 0.114 B``), rounded."""
    grey = np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


@register_dataset("r2n2")
class R2N2Dataset(RealShapeDataset):
    """3D-R2N2 renders + voxels of 13 ShapeNet categories (module docstring)."""

    name = "r2n2"
    Config = R2N2Config
    raw_name = "r2n2"
    raw_parts = (
        RawPart(("http://cvgl.stanford.edu/data2/ShapeNetVox32.tgz",), "ShapeNetVox32.tgz", "ShapeNetVox32",
                ("*/*/model.binvox",), folder="ShapeNetVox32"),
        RawPart(("http://cvgl.stanford.edu/data2/ShapeNetRendering.tgz",), "ShapeNetRendering.tgz", "ShapeNetRendering",
                ("*/*/rendering/00.png",), folder="ShapeNetRendering"),
    )
    available_modalities = frozenset({"points", "voxels", "views"})
    prepare_modalities = ("views", "voxels")

    def __init__(self, split: str = "train", modalities=("views", "voxels"), config: DataConfig | None = None,
                 root=None, *, progress: bool = True, prepare: bool = True) -> None:
        cfg = config if config is not None else self.Config()
        if "views" in modalities:
            if not 1 <= cfg.n_views <= R2N2_NUM_VIEWS:
                raise ValueError(f"r2n2: n_views must be in 1..{R2N2_NUM_VIEWS} (the released renders), got {cfg.n_views}")
            if cfg.view_shading != "grey":
                raise ValueError(f"r2n2 ships shaded renders only; view_shading={cfg.view_shading!r} is unavailable (use 'grey')")
        super().__init__(split, modalities, config, root, progress=progress, prepare=prepare)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(R2N2_CATEGORIES.values())

    def settings(self, group: str) -> dict[str, Any]:
        out = super().settings(group)
        if group == "views":  # the renders are fixed: rig and shading do not change them
            out.pop("view_rig", None)
            out.pop("view_shading", None)
        if group != "views":  # neither does the number of views change voxels or points
            out.pop("n_views", None)
        return out

    def index(self, split: str) -> list[ShapeInfo]:
        cfg = self.config
        records = index_r2n2(self.raw_dir, split, list(cfg.categories) or None, cfg.split_file or None)
        return [ShapeInfo(name=r.shape_id, label=r.label, source=r) for r in records]

    def compute(self, group: str, i: int) -> dict[str, np.ndarray]:
        record = self.shapes[i].source
        cfg = self.config
        if group == "views":
            rgb = read_r2n2_views(record, range(cfg.n_views), size=cfg.view_size)
            return {"views": luminance(rgb)}
        occupancy = read_binvox(record.voxel_path)
        if group == "voxels":
            grid = resample_occupancy(occupancy, cfg.voxel_resolution)
            return {"voxels": grid.astype(np.uint8), "voxel_fallback": np.array(False)}
        if group == "points":
            centres = surface_voxel_centres(occupancy)
            if len(centres) == 0:
                raise DataFileError(record.voxel_path, "voxel grid is empty; cannot derive points")
            return subsample_points(centres, cfg.n_points)
        raise ValueError(f"r2n2 provides points, voxels and views, not {group!r}")
