r"""Solid voxel occupancy of a triangle mesh, robust to open meshes and unions of parts.

Normalisation (the same for every dataset, :func:`normalise_for_voxels`): the
mesh is centred at the centre :math:`\mathbf{c}` of the bounding box of its
referenced vertices and scaled by :math:`s = 1/L`, :math:`L` the longest
bounding-box side, so it lies in :math:`[-\tfrac12, \tfrac12]^3` with the
longest side spanning it exactly. Grid coordinates are
:math:`\mathbf{g} = ((\mathbf{v} - \mathbf{c})s + \tfrac12)R`; voxel
:math:`(i, j, k)` (array index order [x, y, z], axis 1 up) is the cube
:math:`[i, i+1) \times [j, j+1) \times [k, k+1)` with centre
:math:`(i, j, k) + \tfrac12`.

Occupancy rule: a voxel is occupied iff **its centre is inside the solid**, or
it is the voxel nearest to a piece of surface that no inside centre accounts
for (*thin rescue*: a sheet, plate or rod thinner than the voxel spacing, or an
open surface, still shows up as one voxel layer). Closed thick shapes thus get
their true volume (a sphere fills :math:`\tfrac43\pi(R/2)^3` voxels within 1%),
unlike a conservative "every voxel touching the surface" rule (binvox ``-e``),
which adds about half a voxel all round (+14% on a sphere at R = 32).

Probe rays are cast along the three axes through every column of voxel
centres (:math:`3R^2` rays, every crossing recorded). The whole sample lattice
is shifted by a fixed jitter of at most 0.012 voxel per axis so that rays do
not run exactly along the edges of axis-aligned geometry; "centre" below means
this shifted centre, where the three probe lines of a voxel meet. Then:

* ``"winding"`` (used when every probe line sees a closed, consistently
  oriented surface, i.e. an even number of crossings summing to zero signed
  crossings): the winding number
  :math:`w(\mathbf{p}) = \sum_{\text{crossings beyond } \mathbf{p}} \operatorname{sign}(\mathbf{n}\cdot\mathbf{d})`
  of every centre along each axis; inside iff :math:`w \ne 0` for at least 2
  of the 3 axes. Interpenetrating closed parts add up (union), cavities bounded
  by inward-facing shells stay empty.
* ``"flood"`` (the fallback, ``used_fallback=True``, for open, inconsistently
  oriented or self-overlapping meshes, and for duplicated or coincident faces):
  mark the voxel nearest to every crossing, dilate the marks by one voxel
  (3x3x3) into a barrier that seals holes up to about two voxels wide, and
  flood the exterior from the grid boundary through unmarked voxels
  (6-connected). Then let the exterior grow 4 steps into the barrier, from
  centre to neighbouring centre only where the segment between them crosses
  no surface; centres never reached are inside. On closed meshes this gives
  the same centres as ``"winding"`` (4 steps suffice to cross the barrier's
  outer half; fewer do not at sharp corners), while leaking through a sealed
  hole only dents the solid within 4 voxels of the hole. A hole wider than
  the seal leaves only the thin-rescue surface layer (an open box stays a
  thin-walled box).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import trimesh
from scipy import ndimage

from .render import referenced_vertices, unit_sphere_caster

__all__ = ["VoxelResult", "normalise_for_voxels", "resample_grid", "voxelize"]

# Lattice offset (voxels) per axis: distinct and irrational-looking so that
# probe rays do not pass exactly through edges of axis-aligned geometry. The
# sample points are the voxel centres shifted by it (all three probe lines
# through a sample meet there).
_JITTER = np.array([0.0071, 0.0113, 0.0042])
_STEPS = 4


@dataclass(frozen=True)
class VoxelResult:
    r"""Solid occupancy of one mesh.

    Attributes:
        occupancy: bool grid, index order [x, y, z] (axis 1 = +Y up).
        used_fallback: True when the flood-fill rule was used instead of winding numbers.
        method: ``"winding"`` or ``"flood"``.

    Shapes:
        - **occupancy**: :math:`[R, R, R]`
    """

    occupancy: np.ndarray
    used_fallback: bool
    method: str


def normalise_for_voxels(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    r"""Centre and scale of the voxel normalisation (see the module docstring).

    Normalised vertices :math:`(\mathbf{v} - \mathbf{c})s` lie in
    :math:`[-\tfrac12, \tfrac12]^3`, the longest bounding-box side being
    exactly 1; multiply by :math:`R` and add :math:`R/2` for grid coordinates.

    Args:
        mesh: triangle mesh with at least one face and non-zero extent.

    Returns:
        ``(centre, scale)``: float64 :math:`[3]` and :math:`s = 1/L`.
    """
    used = referenced_vertices(mesh)
    extent = used.max(axis=0) - used.min(axis=0)
    if not extent.max() > 0.0:
        raise ValueError("mesh has zero extent (all referenced vertices coincide)")
    return (used.min(axis=0) + used.max(axis=0)) / 2.0, 1.0 / float(extent.max())


@dataclass
class _Crossings:
    axis: np.ndarray  # [K] axis of the probe line
    col: np.ndarray  # [K, 2] column indices in the two other axes (ascending axis order)
    pos: np.ndarray  # [K] grid coordinate of the crossing along the axis
    sign: np.ndarray  # [K] sign of n . d (+1 leaving an outward-oriented solid)
    ray: np.ndarray  # [K] probe line index in [0, 3 R^2)


def _probe(mesh: trimesh.Trimesh, r: int) -> _Crossings:
    caster, _, _ = unit_sphere_caster(mesh)
    k = r / float(np.ptp(caster.bounds, axis=0).max())  # grid units per unit-sphere unit
    cols = np.arange(r) + 0.5
    cb, cc = np.meshgrid(cols, cols, indexing="ij")
    origins, dirs = [], []
    for a in range(3):
        b, c = [x for x in range(3) if x != a]
        g = np.empty((r * r, 3))
        g[:, a] = -1.0
        g[:, b] = cb.ravel() + _JITTER[b]
        g[:, c] = cc.ravel() + _JITTER[c]
        origins.append((g - r / 2.0) / k)
        d = np.zeros((r * r, 3))
        d[:, a] = 1.0
        dirs.append(d)
    ray, face, t = caster.all_hits(np.concatenate(origins), np.concatenate(dirs), step=1e-3 / k)
    axis = ray // (r * r)
    within = ray % (r * r)
    normals = caster.face_normals[face]
    sign = np.sign(normals[np.arange(len(face)), axis]).astype(np.int64)
    # Positions relative to the jittered lattice, so that the three probe lines
    # through a "centre" all meet at the same point (i, j, k) + 1/2 + jitter.
    pos = t * k - 1.0 - _JITTER[axis]
    return _Crossings(axis=axis, col=np.stack([within // r, within % r], 1), pos=pos, sign=sign, ray=ray)


def _index(axis: np.ndarray, along: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices (x, y, z) of position ``along`` on probe lines of ``axis`` through ``col``."""
    idx = np.empty((len(axis), 3), dtype=np.int64)
    for a in range(3):
        b, c = [x for x in range(3) if x != a]
        sel = axis == a
        idx[sel, a] = along[sel]
        idx[sel, b] = col[sel, 0]
        idx[sel, c] = col[sel, 1]
    return idx[:, 0], idx[:, 1], idx[:, 2]


def _winding_inside(x: _Crossings, r: int) -> np.ndarray:
    # w(centre m) = sum of signs of crossings with pos > m + 1/2: add the sign to
    # centres 0..last, last = ceil(pos - 1/2) - 1, via a difference array.
    last = np.clip(np.ceil(x.pos - 0.5).astype(np.int64) - 1, -1, r - 1)
    diff = np.zeros((3 * r * r, r + 1), dtype=np.int64)
    np.add.at(diff, (x.ray, np.zeros_like(x.ray)), x.sign)
    np.add.at(diff, (x.ray, last + 1), -x.sign)
    w = np.cumsum(diff[:, :r], axis=1).reshape(3, r, r, r)  # [axis, col_b, col_c, along]
    votes = (
        (w[0] != 0).transpose(2, 0, 1).astype(np.int8)  # along x: (x, y, z) <- (y, z, x)
        + (w[1] != 0).transpose(0, 2, 1)  # along y: columns (x, z)
        + (w[2] != 0)  # along z: columns (x, y)
    )
    return votes >= 2


def _flood_inside(x: _Crossings, r: int, steps: int = _STEPS) -> np.ndarray:
    nearest = np.clip(np.floor(x.pos).astype(np.int64), 0, r - 1)
    marks = np.zeros((r, r, r), dtype=bool)
    marks[_index(x.axis, nearest, x.col)] = True
    barrier = ndimage.binary_dilation(marks, structure=np.ones((3, 3, 3), dtype=bool))
    # Stage 1: exterior through unmarked voxels (a segment between two of them
    # never crosses the surface, since every crossed segment has a marked end).
    free = np.pad(~barrier, 1, constant_values=True)
    labels, _ = ndimage.label(free)
    reached = (labels == labels[0, 0, 0])[1:-1, 1:-1, 1:-1]
    allowed = reached | barrier
    # Stage 2: a few steps into the barrier, from centre to neighbouring centre
    # where the segment between them crosses no surface. Few, so that leaking
    # through a sealed hole only dents the solid near the hole instead of
    # running all round the inner side of the barrier.
    open_seg = []  # per axis, segment s joins centre s-1 (or outside) and centre s (or outside)
    for a in range(3):
        shape = [r, r, r]
        shape[a] = r + 1
        o = np.ones(shape, dtype=bool)
        seg = np.clip(np.floor(x.pos[x.axis == a] - 0.5).astype(np.int64) + 1, 0, r)
        idx = [None, None, None]
        idx[a] = seg
        b, c = [y for y in range(3) if y != a]
        idx[b], idx[c] = x.col[x.axis == a, 0], x.col[x.axis == a, 1]
        o[tuple(idx)] = False
        open_seg.append(o)
    for _ in range(steps):
        grown = reached.copy()
        for a in range(3):
            pad = [(1, 1) if y == a else (0, 0) for y in range(3)]  # the outside counts as reached
            padded = np.moveaxis(np.pad(reached, pad, constant_values=True), a, 0)
            o = np.moveaxis(open_seg[a], a, 0)
            g = np.moveaxis(grown, a, 0)  # a view: writes land in grown
            g |= (padded[:r] & o[:r]) | (padded[2:] & o[1:])
        reached = grown & allowed
    return ~reached


def _thin_rescue(x: _Crossings, solid: np.ndarray) -> np.ndarray:
    # A crossing with no solid centre at either end of its segment is surface
    # nothing else accounts for: occupy the centre nearest to it.
    r = solid.shape[0]
    lo = np.floor(x.pos - 0.5).astype(np.int64)
    padded = np.pad(solid, 1, constant_values=False)  # out-of-grid ends count as empty
    ix, iy, iz = _index(x.axis, np.clip(lo, -1, r) + 1, x.col + 1)
    jx, jy, jz = _index(x.axis, np.clip(lo + 1, -1, r) + 1, x.col + 1)
    lonely = ~padded[ix, iy, iz] & ~padded[jx, jy, jz]
    nearest = np.clip(np.floor(x.pos).astype(np.int64), 0, r - 1)
    out = solid.copy()
    out[_index(x.axis[lonely], nearest[lonely], x.col[lonely])] = True
    return out


def voxelize(
    mesh: trimesh.Trimesh,
    resolution: int = 32,
    *,
    method: Literal["auto", "winding", "flood"] = "auto",
) -> VoxelResult:
    r"""Solid occupancy grid of a mesh (rules and normalisation in the module docstring).

    Deterministic; never fails on open meshes, single triangles or flat shapes.

    Args:
        mesh: triangle mesh, +Y up, any scale; may be open, inconsistently
            oriented or a concatenation of interpenetrating closed parts.
        resolution: grid side :math:`R` (>= 1).
        method: ``"auto"`` picks ``"winding"`` when every probe line sees a
            closed consistently oriented surface and ``"flood"`` otherwise;
            the other values force one rule.

    Returns:
        :class:`VoxelResult`.

    Shapes:
        - **output.occupancy**: :math:`[R, R, R]` bool, index order [x, y, z]
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if method not in ("auto", "winding", "flood"):
        raise ValueError(f"method must be 'auto', 'winding' or 'flood', got {method!r}")
    r = int(resolution)
    x = _probe(mesh, r)
    if method == "auto":
        total = np.bincount(x.ray, weights=x.sign, minlength=3 * r * r)
        count = np.bincount(x.ray, minlength=3 * r * r)
        method = "winding" if np.all(total == 0) and np.all(count % 2 == 0) else "flood"
    solid = _winding_inside(x, r) if method == "winding" else _flood_inside(x, r)
    return VoxelResult(occupancy=_thin_rescue(x, solid), used_fallback=method == "flood", method=method)


def resample_grid(occupancy: np.ndarray, resolution: int) -> np.ndarray:
    r"""A shipped ``[d, d, d]`` occupancy grid at another resolution :math:`R` (no mesh involved).

    * :math:`R = d`: the grid itself, unchanged;
    * :math:`d = fR` (downsampling by an integer factor :math:`f`): a voxel is
      occupied iff any of its :math:`f^3` source voxels is (max-pool), so thin
      parts are kept, never dropped;
    * otherwise nearest voxel centre: voxel :math:`i` takes source voxel
      :math:`\lfloor (i + \tfrac12)\, d / R \rfloor` per axis (an integer
      upsampling repeats every voxel :math:`R/d` times).

    Args:
        occupancy: cubic grid, any dtype (non-zero is occupied).
        resolution: :math:`R \ge 1`.

    Returns:
        bool :math:`[R, R, R]`.
    """
    occ = np.asarray(occupancy) != 0
    if occ.ndim != 3 or len(set(occ.shape)) != 1:
        raise ValueError(f"occupancy must be a cubic [d, d, d] grid, got shape {occ.shape}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    d, r = occ.shape[0], int(resolution)
    if r == d:
        return occ
    if d % r == 0:
        f = d // r
        return occ.reshape(r, f, r, f, r, f).any(axis=(1, 3, 5))
    idx = np.floor((np.arange(r) + 0.5) * d / r).astype(np.int64)
    return occ[np.ix_(idx, idx, idx)]
