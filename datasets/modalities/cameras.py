r"""Camera rigs and the pinhole projection shared by :mod:`render` and :mod:`photo`.

Conventions (the project frame is right-handed with **+Y up**):

* A camera is given by a unit *direction* :math:`\mathbf{c}` from the origin;
  it sits at :math:`\mathbf{e} = d\,\mathbf{c}` with :math:`d` =
  :data:`CAMERA_DISTANCE` = 2.5 and looks at the origin, with world +Y as its
  up hint (world -Z when looking straight up or down, where +Y is degenerate).
* Azimuth :math:`\phi` is measured in the XZ plane from +Z towards +X and
  elevation :math:`\theta` from the XZ plane towards +Y, so
  :math:`\mathbf{c} = (\cos\theta\sin\phi,\ \sin\theta,\ \cos\theta\cos\phi)`.
  Azimuth 0 looks at the shape's +Z side.
* The camera frame has x to the right, y up and z pointing *back* towards the
  viewer (OpenGL style); the camera looks along -z.
* The field of view is fixed so that the unit sphere (every shape is normalised
  into it before rendering) fits in the frame with a 5% margin:
  :math:`\tan(\mathrm{fov}/2)` = :data:`TAN_HALF_FOV`
  :math:`= 1.05 / \sqrt{d^2 - 1}` (about 49.3 degrees).
* Pixels: row ``i`` from the top, column ``j`` from the left, pixel ``(i, j)``
  covers the continuous coordinates :math:`u \in [j, j+1)`,
  :math:`v \in [i, i+1)`; rays go through pixel centres.

A photo-like crop is modelled exactly as a change of intrinsics: ``zoom``
scales the focal length (``zoom > 1`` magnifies) and ``offset`` shifts the
image in normalised device coordinates (NDC, both axes in [-1, 1], +x right,
+y up). Cropping a window of a perspective image and resizing it is exactly
such a change, so a mask obtained by ray casting under the changed intrinsics
is the silhouette of the cropped image, pixel for pixel.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = [
    "CAMERA_DISTANCE",
    "TAN_HALF_FOV",
    "RIG_NAMES",
    "direction_from_angles",
    "camera_rig",
    "rig_size",
    "look_at",
    "camera_eye",
    "camera_rays",
    "project_points",
]

CAMERA_DISTANCE: float = 2.5
TAN_HALF_FOV: float = 1.05 / math.sqrt(CAMERA_DISTANCE**2 - 1.0)
RIG_NAMES: tuple[str, ...] = ("ring12", "first8", "dodeca20", "random")

RigName = Literal["ring12", "first8", "dodeca20", "random"]


def direction_from_angles(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    r"""Unit camera directions from azimuth and elevation (degrees).

    .. math::
        \mathbf{c} = (\cos\theta\sin\phi,\ \sin\theta,\ \cos\theta\cos\phi)

    Args:
        azimuth_deg: azimuth :math:`\phi` from +Z towards +X.
        elevation_deg: elevation :math:`\theta` above the XZ plane.

    Returns:
        float64 unit vectors.

    Shapes:
        - **azimuth_deg**, **elevation_deg**: :math:`[V]` (broadcastable)
        - **output**: :math:`[V, 3]`
    """
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    az, el = np.broadcast_arrays(az, el)
    return np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)


def _dodecahedron() -> np.ndarray:
    # The 20 vertices of a regular dodecahedron: the 8 cube corners plus 12 on
    # the three golden rectangles; all have norm sqrt(3) before normalising.
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    cube = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    rect = []
    for a in (-1, 1):
        for b in (-1, 1):
            rect.append((0.0, a / phi, b * phi))
            rect.append((a / phi, b * phi, 0.0))
            rect.append((a * phi, 0.0, b / phi))
    pts = np.asarray(cube + rect, dtype=np.float64)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def camera_rig(name: RigName, *, n_views: int | None = None, seed: int = 0) -> np.ndarray:
    r"""Unit directions of a named camera rig (camera position = direction * distance).

    * ``ring12``: azimuths 0, 30, ..., 330 degrees at 30 degrees elevation
      (MVCNN's 12-view setting).
    * ``first8``: the first 8 cameras of ``ring12`` (SwitchVAE uses only those).
    * ``dodeca20``: the 20 vertices of a regular dodecahedron.
    * ``random``: azimuth uniform in [10, 340] degrees and polar angle (from +Y)
      uniform in [10, 165] degrees, as in CM-CV (Jing et al. 2021, Section 3.1
      "Multi-view image generation"); drawn from ``np.random.default_rng(seed)``.

    Args:
        name: one of :data:`RIG_NAMES`.
        n_views: required for ``random``; for the fixed rigs it may be given
            only as the rig's own size.
        seed: seed of the ``random`` rig (ignored by the fixed rigs).

    Returns:
        float64 unit directions.

    Shapes:
        - **output**: :math:`[V, 3]`
    """
    if name == "ring12" or name == "first8":
        dirs = direction_from_angles(np.arange(12) * 30.0, np.full(12, 30.0))
        if name == "first8":
            dirs = dirs[:8]
    elif name == "dodeca20":
        dirs = _dodecahedron()
    elif name == "random":
        if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
            raise ValueError(f"camera_rig('random') needs n_views >= 1, got {n_views!r}")
        rng = np.random.default_rng(seed)
        az = rng.uniform(10.0, 340.0, size=int(n_views))
        polar = rng.uniform(10.0, 165.0, size=int(n_views))
        return direction_from_angles(az, 90.0 - polar)
    else:
        raise ValueError(f"unknown camera rig {name!r}; valid: {', '.join(RIG_NAMES)}")
    if n_views is not None and n_views != len(dirs):
        raise ValueError(f"rig {name!r} has exactly {len(dirs)} views, got n_views={n_views}")
    return dirs


def rig_size(name: RigName, n_views: int | None = None) -> int:
    """How many views the rig ``name`` has (``random``: ``n_views``, which it then requires)."""
    if name == "random":
        if n_views is None:
            raise ValueError("the random rig has as many views as n_views; give n_views")
        return int(n_views)
    return len(camera_rig(name))


def look_at(
    eye: np.ndarray,
    target: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    up: np.ndarray | tuple[float, float, float] = (0.0, 1.0, 0.0),
) -> np.ndarray:
    r"""World-to-camera rotation of a camera at ``eye`` looking at ``target``.

    The rows of the result are the camera's right, up and back axes in world
    coordinates, so :math:`\mathbf{p}_{cam} = R(\mathbf{p} - \mathbf{e})`, and
    points in front of the camera have negative camera z. When ``up`` is
    parallel to the viewing direction, world -Z (or +X if that is parallel
    too) is used as the up hint instead.

    Args:
        eye: camera position.
        target: point looked at.
        up: up hint (world +Y by default).

    Returns:
        float64 rotation matrix.

    Shapes:
        - **eye**, **target**, **up**: :math:`[3]`
        - **output**: :math:`[3, 3]`
    """
    eye = np.asarray(eye, dtype=np.float64)
    back = eye - np.asarray(target, dtype=np.float64)
    norm = np.linalg.norm(back)
    if eye.shape != (3,) or not np.isfinite(norm) or norm < 1e-12:
        raise ValueError("look_at needs finite 3-vectors with eye != target")
    back = back / norm
    for hint in (np.asarray(up, dtype=np.float64), np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])):
        right = np.cross(hint, back)
        if np.linalg.norm(right) > 1e-9 * max(np.linalg.norm(hint), 1e-300):
            break
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    return np.stack([right, cam_up, back])


def camera_eye(direction: np.ndarray, distance: float = CAMERA_DISTANCE) -> np.ndarray:
    """Camera position ``distance * direction / |direction|``; rejects zero or non-finite directions."""
    direction = np.asarray(direction, dtype=np.float64)
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    if direction.shape[-1:] != (3,) or not np.all(np.isfinite(norm)) or np.any(norm < 1e-12):
        raise ValueError("camera directions must be finite, non-zero 3-vectors")
    return direction / norm * distance


def _check_intrinsics(image_size: int, zoom: float, offset: tuple[float, float]) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if not (isinstance(zoom, (int, float, np.number)) and math.isfinite(zoom) and zoom > 0):
        raise ValueError(f"zoom must be a positive finite number, got {zoom!r}")
    if len(offset) != 2 or not all(math.isfinite(o) for o in offset):
        raise ValueError(f"offset must be two finite NDC numbers, got {offset!r}")


def camera_rays(
    directions: np.ndarray,
    image_size: int,
    *,
    zoom: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    r"""Ray origins and unit directions through every pixel centre of every camera.

    Pixel centre :math:`(u, v) = (j + \tfrac12, i + \tfrac12)` has NDC
    :math:`x = 2u/W - 1`, :math:`y = 1 - 2v/H`, and its camera-frame ray is
    :math:`\big((x - o_x)\,t/z,\ (y - o_y)\,t/z,\ -1\big)` with
    :math:`t` = :data:`TAN_HALF_FOV`, zoom :math:`z`, offset :math:`o`.

    Args:
        directions: unit camera directions (e.g. from :func:`camera_rig`).
        image_size: square image side :math:`S` in pixels.
        zoom: focal-length factor (> 1 magnifies).
        offset: principal-point shift in NDC.

    Returns:
        ``(origins, dirs)``, float64 world-space rays, row-major pixel order.

    Shapes:
        - **directions**: :math:`[V, 3]`
        - **output**: two arrays of :math:`[V, S, S, 3]`
    """
    _check_intrinsics(image_size, zoom, offset)
    eyes = camera_eye(np.atleast_2d(directions))
    s = int(image_size)
    centres = (np.arange(s, dtype=np.float64) + 0.5) * (2.0 / s) - 1.0
    xs = (centres - offset[0]) * (TAN_HALF_FOV / zoom)
    ys = (-centres - offset[1]) * (TAN_HALF_FOV / zoom)  # rows go down, NDC y goes up
    cam = np.empty((s, s, 3))
    cam[..., 0] = xs[None, :]
    cam[..., 1] = ys[:, None]
    cam[..., 2] = -1.0
    cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
    rots = np.stack([look_at(e) for e in eyes])  # [V, 3, 3]
    dirs = np.matmul(cam.reshape(1, s * s, 3), rots).reshape(len(eyes), s, s, 3)  # world = R^T cam
    origins = np.broadcast_to(eyes[:, None, None, :], dirs.shape)
    return origins, dirs


def project_points(
    points: np.ndarray,
    direction: np.ndarray,
    image_size: int,
    *,
    zoom: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    r"""Project world points into the continuous pixel coordinates of one camera.

    Inverse of :func:`camera_rays`: with camera-frame point
    :math:`(x_c, y_c, z_c)`, NDC :math:`x = z\,x_c / (-z_c\,t) + o_x` (likewise
    y) and :math:`u = (x + 1) S / 2`, :math:`v = (1 - y) S / 2`.

    Args:
        points: world points (already in the normalised unit-sphere frame).
        direction: unit camera direction.
        image_size: square image side :math:`S`.
        zoom: focal-length factor.
        offset: principal-point shift in NDC.

    Returns:
        ``(uv, depth)``: pixel coordinates ``(u, v)`` = (column, row) and depth
        :math:`-z_c` along the optical axis (positive in front of the camera).

    Shapes:
        - **points**: :math:`[N, 3]`
        - **output**: :math:`[N, 2]` and :math:`[N]`
    """
    _check_intrinsics(image_size, zoom, offset)
    eye = camera_eye(np.asarray(direction, dtype=np.float64))
    cam = (np.asarray(points, dtype=np.float64) - eye) @ look_at(eye).T
    depth = -cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = zoom * cam[:, 0] / (depth * TAN_HALF_FOV) + offset[0]
        y = zoom * cam[:, 1] / (depth * TAN_HALF_FOV) + offset[1]
    s = float(image_size)
    return np.stack([(x + 1.0) * s / 2.0, (1.0 - y) * s / 2.0], axis=1), depth
