"""The ``points`` modality: area-weighted dense sampling, farthest-point sampling, unit sphere.

Every dataset produces points the same way, so that numbers are comparable:

1. draw ``n_dense`` points uniformly by area on the mesh surface (each point
   keeps the normal and part id of the face it lies on);
2. reduce them to ``n_points`` by farthest-point sampling (FPS), which covers
   the surface evenly instead of clumping where random samples happen to fall;
3. centre the cloud at its bounding-box centre and scale it so the farthest
   point lies on the unit sphere.

*Shapes*: points / normals float32 [N, 3], point_labels int64 [N].
"""

from __future__ import annotations

import fpsample
import numpy as np
import trimesh

from ssl3d.datasets.errors import DataFileError

#: height of fpsample's bucket kd-tree; every cache so far was built with 7, so changing it changes the points
_BUCKET_HEIGHT = 7


def normalize_unit_sphere(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre at the bounding-box centre and scale into the unit sphere.

    Returns:
        (normalised points, centre [3], scale) with ``normalised = (points - centre) / scale``.
    """
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"expected points of shape [N, 3] with N > 0, got {points.shape}")
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    centred = points - centre
    scale = float(np.linalg.norm(centred, axis=1).max())
    if scale <= 0:
        scale = 1.0  # a single repeated point: leave it at the origin
    return (centred / scale).astype(np.float32), centre, scale


def farthest_point_indices(points: np.ndarray, n_points: int, start: int = 0) -> np.ndarray:
    """Indices of ``n_points`` farthest-point samples of ``points`` [M, 3] (deterministic given ``start``).

    When ``M < n_points`` the indices wrap around (points are repeated), so the
    output always has exactly ``n_points`` entries.
    """
    m = len(points)
    if n_points <= 0:
        raise ValueError(f"n_points must be positive, got {n_points}")
    if m <= n_points:
        return np.resize(np.arange(m), n_points)
    cloud = np.ascontiguousarray(points, dtype=np.float32)
    if m < 2**_BUCKET_HEIGHT:
        # the bucket tree needs at least 2**h points; tiny clouds are cheap for plain FPS
        idx = fpsample.fps_sampling(cloud, n_points, start_idx=start)
    else:
        idx = fpsample.bucket_fps_kdline_sampling(cloud, n_points, h=_BUCKET_HEIGHT, start_idx=start)
    return np.asarray(idx, dtype=np.int64)


def sample_mesh_points(
    mesh: trimesh.Trimesh,
    n_points: int,
    rng: np.random.Generator,
    *,
    face_part: np.ndarray | None = None,
    n_dense: int | None = None,
    noise_std: float = 0.0,
    name: str = "mesh",
) -> dict[str, np.ndarray]:
    """Points, normals and part labels of a mesh surface, ready for the data contract.

    Args:
        mesh: the shape (any scale and position).
        n_points: points kept after FPS.
        rng: randomness for the dense sample, the FPS start and the noise.
        face_part: optional int part id per face; gives ``point_labels``.
        n_dense: size of the dense area-weighted sample (default ``8 * n_points``).
        noise_std: Gaussian surface noise added after normalisation (scanner-like), in unit-sphere units.
        name: used in error messages.

    Returns:
        ``{"points", "normals"}`` (+ ``"point_labels"`` when ``face_part`` is given).
    """
    if len(mesh.faces) == 0 or mesh.area <= 0:
        raise DataFileError(name, "mesh has no faces with positive area; cannot sample points")
    if face_part is not None and len(face_part) != len(mesh.faces):
        raise ValueError(f"{name}: face_part has {len(face_part)} entries for {len(mesh.faces)} faces")
    n_dense = n_dense or 8 * n_points
    dense, face_idx = trimesh.sample.sample_surface(mesh, n_dense, seed=int(rng.integers(2**31)))
    keep = farthest_point_indices(dense, n_points, start=int(rng.integers(len(dense))))
    points, _, _ = normalize_unit_sphere(np.asarray(dense[keep]))
    faces = face_idx[keep]
    out = {"points": points, "normals": np.asarray(mesh.face_normals[faces], dtype=np.float32)}
    if face_part is not None:
        out["point_labels"] = np.asarray(face_part, dtype=np.int64)[faces]
    if noise_std > 0:
        out["points"] = (points + rng.normal(0.0, noise_std, size=points.shape)).astype(np.float32)
    return out


def subsample_points(points: np.ndarray, n_points: int, *, normals: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """FPS + unit-sphere normalisation for datasets that ship point clouds instead of meshes."""
    keep = farthest_point_indices(points, n_points)
    out = {"points": normalize_unit_sphere(np.asarray(points[keep], dtype=np.float64))[0]}
    if normals is not None:
        out["normals"] = np.asarray(normals[keep], dtype=np.float32)
    if labels is not None:
        out["point_labels"] = np.asarray(labels[keep], dtype=np.int64)
    return out
