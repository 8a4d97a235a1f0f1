r"""How far a retrieved shape is from the ground-truth shape: CMIC Table 1's :math:`d_\mathrm{HAU}` and :math:`d_\mathrm{IoU}`.

CMIC (Lin et al., ICCV 2021, Sec. 4.1 "Evaluation") reports, for the top-1
retrieved shape of every query, "HAU (mean modified Hausdorff Distance) and IoU
(Intersection over Union) as suggested in [15]" ([15] = Grabner et al.,
Location Field Descriptors, 3DV 2019, which takes both from Grabner et al.,
CVPR 2018, [14] in CMIC). CMIC prints no formula; the definitions below are
those of the cited works:

* **modified Hausdorff distance** of two point sets :math:`X` and :math:`Y`
  (Dubuisson and Jain's mean nearest-neighbour distance, made symmetric by
  pooling both directions):

  .. math::
      d_H(X, Y) = \frac{1}{|X| + |Y|}\Big(\sum_{x \in X} \min_{y \in Y} \lVert x - y \rVert_2
                  + \sum_{y \in Y} \min_{x \in X} \lVert x - y \rVert_2\Big)

  on point samples of the two surfaces, each shape normalised on its own
  (:func:`normalise_points`: centred at its bounding-box centre and scaled so
  that its longest bounding-box side is 1, the frame of the voxel grids;
  ``"unit_sphere"`` instead scales the farthest point to radius 1, the frame of
  the project's ``points``). :math:`d_\mathrm{HAU}` is its mean over queries
  (lower is better, a fraction of the shape size as CMIC prints it).
* **voxel IoU** of two occupancy grids of the same resolution:
  :math:`|A \cap B| / |A \cup B|` over occupied voxels (solid occupancy,
  each shape normalised into the grid on its own; two empty grids are an
  error, not a match). :math:`d_\mathrm{IoU}` is its mean over queries
  (higher is better, a fraction, as CMIC prints it).

Shapes are compared in their datasets' canonical orientation (no alignment),
as in the cited works.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["modified_hausdorff", "normalise_points", "voxel_iou", "retrieved_shape_distances"]

Normalisation = Literal["unit_cube", "unit_sphere"]


def normalise_points(points: np.ndarray, how: Normalisation = "unit_cube") -> np.ndarray:
    """Centre ``points`` [N, 3] at their bounding-box centre; scale the longest side (``unit_cube``) or the
    farthest point (``unit_sphere``) to 1. A cloud of one repeated point stays at the origin."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"expected points of shape [N, 3] with N > 0, got {p.shape}")
    centred = p - (p.min(axis=0) + p.max(axis=0)) / 2.0
    if how == "unit_cube":
        scale = float(np.ptp(p, axis=0).max())
    elif how == "unit_sphere":
        scale = float(np.linalg.norm(centred, axis=1).max())
    else:
        raise ValueError(f"unknown normalisation {how!r}; valid: unit_cube, unit_sphere")
    return centred / scale if scale > 0 else centred


def modified_hausdorff(x: np.ndarray, y: np.ndarray) -> float:
    """:math:`d_H(X, Y)` of the module docstring: both directions' nearest-neighbour distances, pooled and averaged."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    for name, p in (("x", x), ("y", y)):
        if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
            raise ValueError(f"{name}: expected points of shape [N, 3] with N > 0, got {p.shape}")
    x_to_y = cKDTree(y).query(x)[0]
    y_to_x = cKDTree(x).query(y)[0]
    return float((x_to_y.sum() + y_to_x.sum()) / (len(x) + len(y)))


def voxel_iou(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two occupancy grids of one shape (any value > 0.5 is occupied)."""
    a = np.asarray(a) > 0.5
    b = np.asarray(b) > 0.5
    if a.shape != b.shape:
        raise ValueError(f"voxel grids differ in shape: {a.shape} vs {b.shape}")
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        raise ValueError("both voxel grids are empty: their IoU is undefined")
    return float(np.logical_and(a, b).sum() / union)


def retrieved_shape_distances(
    truth_points: np.ndarray, truth_voxels: np.ndarray, truth_index: np.ndarray,
    retrieved_points: np.ndarray, retrieved_voxels: np.ndarray, retrieved_index: np.ndarray,
    normalisation: Normalisation = "unit_cube",
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: (:math:`d_H`, voxel IoU) between shape ``truth_index[q]`` of the truth set and shape
    ``retrieved_index[q]`` of the retrieved set (the same arrays when the gallery holds the ground truth).

    Each distinct (truth, retrieved) pair is measured once, however many queries share it.

    Shapes:
        - **truth_points** :math:`[S, N, 3]`, **truth_voxels** :math:`[S, R, R, R]`, **truth_index** :math:`[Q]`.
        - **retrieved_points** :math:`[G, M, 3]`, **retrieved_voxels** :math:`[G, R, R, R]`, **retrieved_index** :math:`[Q]`.
        - returns two float64 arrays :math:`[Q]`.
    """
    truth_index = np.asarray(truth_index, dtype=np.int64)
    retrieved_index = np.asarray(retrieved_index, dtype=np.int64)
    if truth_index.shape != retrieved_index.shape or truth_index.ndim != 1:
        raise ValueError(f"truth_index and retrieved_index must be [Q] arrays, got {truth_index.shape} and {retrieved_index.shape}")
    if len(truth_points) != len(truth_voxels) or len(retrieved_points) != len(retrieved_voxels):
        raise ValueError("points and voxels must hold the same shapes")
    if truth_index.size and (truth_index.min() < 0 or truth_index.max() >= len(truth_points)
                             or retrieved_index.min() < 0 or retrieved_index.max() >= len(retrieved_points)):
        raise ValueError("a shape index lies outside its shape set")
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    hau = np.empty(len(truth_index))
    iou = np.empty(len(truth_index))
    for q, key in enumerate(zip(truth_index.tolist(), retrieved_index.tolist())):
        if key not in pairs:
            t, r = key
            pairs[key] = (
                modified_hausdorff(normalise_points(truth_points[t], normalisation),
                                   normalise_points(retrieved_points[r], normalisation)),
                voxel_iou(truth_voxels[t], retrieved_voxels[r]),
            )
        hau[q], iou[q] = pairs[key]
    return hau, iou
