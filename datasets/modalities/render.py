r"""Multi-view renders of a mesh by CPU ray casting (embree through ``embreex``; no OpenGL).

Every shape is first normalised into the unit sphere: centred at the centre of
the bounding box of its referenced vertices and scaled so that the largest
vertex norm is 1 (:func:`normalise_unit_sphere`). Cameras follow
:mod:`.cameras`: perspective, at distance 2.5, looking at the origin, with a
field of view in which the unit sphere fits with a 5% margin. All rays of all
views are cast in one embree call.

Shading (``render_views``):

* ``"grey"``: flat Lambertian shading with two opposing directional lights, as
  in CM-CV (Jing et al. 2021, Section 3.1: "two light sources are placed facing
  each other, while the mesh object is in between"). Lights are fixed in the
  camera frame so every view is lit alike: a key light towards
  :math:`\mathbf{l} \propto (-1, 1, 2)` (upper left, viewer side) and a fill
  light towards :math:`-\mathbf{l}`. With the face normal :math:`\mathbf{n}`
  flipped to face the camera (mesh winding is often inconsistent),

  .. math::
      I = 0.15 + 0.65\max(\mathbf{n}\cdot\mathbf{l}, 0)
          + 0.35\max(-\mathbf{n}\cdot\mathbf{l}, 0) \in [0.15, 0.8],

  stored as ``round(255 I)``; the background is white (255), so the object is
  never confused with it.
* ``"depth"``: depth :math:`z` along the optical axis mapped linearly from
  :math:`[d-1, d+1]` (the unit sphere's depth range) to 255..1, i.e. nearer is
  brighter; the background is 0.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import numpy as np
import trimesh

from .cameras import CAMERA_DISTANCE, camera_eye, camera_rays, look_at

__all__ = [
    "RayCaster", "ViewHits", "referenced_vertices", "normalise_unit_sphere", "unit_sphere_caster",
    "cast_views", "render_views", "silhouette", "AMBIENT", "KEY", "FILL", "KEY_LIGHT_CAMERA",
]

AMBIENT, KEY, FILL = 0.15, 0.65, 0.35
KEY_LIGHT_CAMERA: np.ndarray = np.array([-1.0, 1.0, 2.0]) / np.sqrt(6.0)

try:  # embree is what makes rendering fast; without it trimesh's pure-numpy caster is used
    from embreex import rtcore_scene as _rtcore_scene
    from embreex.mesh_construction import TriangleMesh as _EmbreeTriangles
except ImportError:  # pragma: no cover - exercised only where embreex is missing
    _rtcore_scene = None


def referenced_vertices(mesh: trimesh.Trimesh) -> np.ndarray:
    """Vertices used by at least one face, validated (float64 :math:`[M, 3]`); ValueError if none or non-finite."""
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    faces = np.asarray(mesh.faces)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError("mesh must have at least one triangular face")
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True  # O(F), unlike np.unique
    out = vertices[used]
    if not np.all(np.isfinite(out)):
        raise ValueError("mesh has non-finite vertex coordinates")
    return out


def normalise_unit_sphere(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    r"""Centre and scale that put a mesh into the unit sphere.

    .. math::
        \mathbf{c} = \tfrac12(\min_i \mathbf{v}_i + \max_i \mathbf{v}_i),\qquad
        s = 1 / \max_i \lVert \mathbf{v}_i - \mathbf{c} \rVert,

    over the vertices referenced by faces; normalised vertices are
    :math:`(\mathbf{v} - \mathbf{c})\,s`.

    Args:
        mesh: any triangle mesh with at least one face and non-zero extent.

    Returns:
        ``(centre, scale)``: float64 :math:`[3]` and a positive float.
    """
    used = referenced_vertices(mesh)
    centre = (used.min(axis=0) + used.max(axis=0)) / 2.0
    radius = float(np.linalg.norm(used - centre, axis=1).max())
    if not radius > 0.0:
        raise ValueError("mesh has zero extent (all referenced vertices coincide)")
    return centre, 1.0 / radius


class RayCaster:
    r"""First-hit and all-hit ray casting against one triangle mesh.

    Uses an embree scene when ``embreex`` is importable, otherwise trimesh's
    numpy intersector (correct but much slower). Coordinates should be of
    order one (float32 inside embree).

    Args:
        vertices: mesh vertices.
        faces: vertex indices of the triangles.

    Shapes:
        - **vertices**: :math:`[N_v, 3]`
        - **faces**: :math:`[F, 3]`
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        # Plain contiguous arrays: embreex reads numpy subclasses (trimesh's
        # TrackedArray) through a much slower path.
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(faces, dtype=np.int32)
        v = self.vertices.astype(np.float64)
        v0, v1, v2 = (v[self.faces[:, i]] for i in range(3))
        e1, e2 = v1 - v0, v2 - v0
        n = np.empty_like(e1)  # cross product, written out: np.cross is slow
        n[:, 0] = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
        n[:, 1] = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
        n[:, 2] = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        norm = np.sqrt(np.einsum("ij,ij->i", n, n))[:, None]
        #: unit face normals following the face winding (zero for degenerate faces)
        self.face_normals = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0).astype(np.float32)
        used = np.zeros(len(v), dtype=bool)
        used[self.faces.ravel()] = True
        #: [min, max] corners of the bounding box of the referenced vertices
        self.bounds = np.stack([v[used].min(axis=0), v[used].max(axis=0)])
        if _rtcore_scene is not None:
            self._scene = _rtcore_scene.EmbreeScene()
            _EmbreeTriangles(scene=self._scene, vertices=self.vertices, indices=self.faces)
            self._fallback = None
        else:
            from trimesh.ray.ray_triangle import RayMeshIntersector

            self._fallback = RayMeshIntersector(trimesh.Trimesh(self.vertices, self.faces, process=False))

    def first_hit(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Nearest hit of each ray.

        Args:
            origins: ray origins.
            directions: unit ray directions.

        Returns:
            ``(face, t)``: int64 face index (-1 on a miss) and float32 distance
            along the ray (``inf`` on a miss).

        Shapes:
            - **origins**, **directions**: :math:`[N, 3]`
            - **output**: :math:`[N]`, :math:`[N]`
        """
        o = np.ascontiguousarray(origins, dtype=np.float32).reshape(-1, 3)
        d = np.ascontiguousarray(directions, dtype=np.float32).reshape(-1, 3)
        if self._fallback is None:
            res = self._scene.run(o, d, output=1)
            face = res["primID"].astype(np.int64)
            t = res["tfar"].astype(np.float32)
        else:
            tri, ray, loc = self._fallback.intersects_id(o, d, multiple_hits=False, return_locations=True)
            face = np.full(len(o), -1, dtype=np.int64)
            face[ray] = tri
            t = np.full(len(o), np.inf, dtype=np.float32)
            t[ray] = np.einsum("ij,ij->i", loc - o[ray], d[ray])
        miss = face < 0
        face[miss] = -1
        t[miss] = np.inf
        return face, t

    def all_hits(
        self, origins: np.ndarray, directions: np.ndarray, *, step: float = 1e-5, max_rounds: int = 4096
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Every crossing of each ray with the surface.

        Rays are re-cast from just past each hit (``step`` further along),
        so a ray through an edge or vertex shared by several triangles
        reports that crossing once.

        Args:
            origins: ray origins.
            directions: unit ray directions.
            step: advance past a hit, in the caster's units.
            max_rounds: safety bound on the number of re-casts.

        Returns:
            ``(ray, face, t)``: ray index, face index and distance from the
            original origin of every hit, sorted by ray then distance.

        Shapes:
            - **origins**, **directions**: :math:`[N, 3]`
            - **output**: three arrays of :math:`[K]`
        """
        o = np.array(origins, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        travelled = np.zeros(len(o))
        live = np.arange(len(o))
        rays, faces, ts = [], [], []
        for _ in range(max_rounds):
            if len(live) == 0:
                break
            face, t = self.first_hit(o[live], d[live])
            hit = face >= 0
            live = live[hit]
            t = t[hit].astype(np.float64)
            rays.append(live)
            faces.append(face[hit])
            ts.append(travelled[live] + t)
            travelled[live] += t + step
            o[live] += d[live] * (t + step)[:, None]
        ray = np.concatenate(rays) if rays else np.zeros(0, dtype=np.int64)
        face = np.concatenate(faces) if faces else np.zeros(0, dtype=np.int64)
        dist = np.concatenate(ts) if ts else np.zeros(0)
        order = np.lexsort((dist, ray))
        return ray[order], face[order], dist[order]


# One-entry cache: a caching pipeline voxelises, renders and photographs the
# same mesh in a row, and building the BVH of a 100k-face mesh costs ~60 ms.
_CACHE: dict[str, object] = {}


def unit_sphere_caster(mesh: trimesh.Trimesh) -> tuple[RayCaster, np.ndarray, float]:
    """A :class:`RayCaster` on the mesh normalised by :func:`normalise_unit_sphere`.

    The last one built is kept (keyed by the mesh object and its content
    hash), so voxelising, rendering and photographing one mesh build one
    scene.

    Returns:
        ``(caster, centre, scale)``.
    """
    key = (id(mesh), mesh.__hash__())
    ref = _CACHE.get("ref")
    if _CACHE.get("key") == key and ref is not None and ref() is mesh:
        return _CACHE["value"]  # type: ignore[return-value]
    centre, scale = normalise_unit_sphere(mesh)
    vertices = (np.asarray(mesh.vertices, dtype=np.float64) - centre) * scale
    value = (RayCaster(vertices, mesh.faces), centre, scale)
    _CACHE.clear()
    try:
        _CACHE.update(key=key, ref=weakref.ref(mesh), value=value)
    except TypeError:  # pragma: no cover - mesh type without weakref support: don't cache
        pass
    return value


@dataclass
class ViewHits:
    r"""First hits of the pixel rays of several cameras on a unit-sphere-normalised mesh.

    Shapes:
        - **face**: :math:`[V, S, S]` int64, -1 for background
        - **depth**: :math:`[V, S, S]` float32, depth along the optical axis (``inf`` for background)
        - **normal**: :math:`[V, S, S, 3]` float32 unit face normal turned towards the camera (world frame)
        - **ray**: :math:`[V, S, S, 3]` float64 unit ray direction (world frame)
        - **rotation**: :math:`[V, 3, 3]` world-to-camera rotations (see :func:`.cameras.look_at`)
    """

    face: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    ray: np.ndarray
    rotation: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Foreground mask, bool :math:`[V, S, S]`."""
        return self.face >= 0


def cast_views(
    mesh: trimesh.Trimesh,
    cameras: np.ndarray,
    image_size: int,
    *,
    zoom: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> ViewHits:
    """Cast every pixel ray of every camera in one call (see :func:`.cameras.camera_rays`).

    Args:
        mesh: the shape (normalised internally by :func:`normalise_unit_sphere`).
        cameras: unit camera directions.
        image_size: square image side :math:`S`.
        zoom: focal-length factor of a photo-like crop.
        offset: principal-point shift (NDC) of a photo-like crop.

    Returns:
        :class:`ViewHits`.

    Shapes:
        - **cameras**: :math:`[V, 3]` (or :math:`[3]` for one camera)
    """
    cameras = np.atleast_2d(np.asarray(cameras, dtype=np.float64))
    if cameras.ndim != 2 or cameras.shape[1] != 3 or len(cameras) == 0:
        raise ValueError(f"cameras must be unit directions of shape [V, 3], got {cameras.shape}")
    caster, _, _ = unit_sphere_caster(mesh)
    origins, dirs = camera_rays(cameras, image_size, zoom=zoom, offset=offset)
    face, t = caster.first_hit(origins.reshape(-1, 3), dirs.reshape(-1, 3))
    shape = dirs.shape[:3]
    face = face.reshape(shape)
    rotation = np.stack([look_at(eye) for eye in camera_eye(cameras)])
    # depth along the optical axis = t * (ray . forward), forward = -back row
    cos_axis = -np.matmul(dirs.reshape(len(cameras), -1, 3), rotation[:, 2, :, None]).reshape(shape)
    depth = (t.reshape(shape) * cos_axis).astype(np.float32)
    normal = np.zeros(shape + (3,), dtype=np.float32)
    fg = face >= 0
    n = caster.face_normals[face[fg]]
    flip = np.einsum("ij,ij->i", n, dirs[fg]) > 0  # facing away from the camera: turn it round
    n[flip] *= -1.0
    normal[fg] = n
    return ViewHits(face=face, depth=depth, normal=normal, ray=dirs, rotation=rotation)


def render_views(
    mesh: trimesh.Trimesh,
    cameras: np.ndarray,
    image_size: int = 137,
    shading: Literal["grey", "depth"] = "grey",
    *,
    background: int | None = None,
) -> np.ndarray:
    r"""Render a mesh from several cameras (see the module docstring for shading and framing).

    Args:
        mesh: the shape, +Y up, any scale.
        cameras: unit camera directions, e.g. ``camera_rig("ring12")``.
        image_size: square image side :math:`S` (137 for SwitchVAE, 224 for CMIC).
        shading: ``"grey"`` (two-light Lambertian) or ``"depth"``.
        background: background grey level; default 255 for ``"grey"``, 0 for ``"depth"``.

    Returns:
        uint8 images.

    Shapes:
        - **cameras**: :math:`[V, 3]`
        - **output**: :math:`[V, S, S]`
    """
    if shading not in ("grey", "depth"):
        raise ValueError(f"shading must be 'grey' or 'depth', got {shading!r}")
    if background is None:
        background = 255 if shading == "grey" else 0
    if isinstance(background, bool) or not isinstance(background, (int, np.integer)) or not 0 <= background <= 255:
        raise ValueError(f"background must be an integer grey level in [0, 255], got {background!r}")
    hits = cast_views(mesh, cameras, image_size)
    fg = hits.mask
    out = np.full(fg.shape, background, dtype=np.uint8)
    if shading == "grey":
        lights = np.einsum("vcd,c->vd", hits.rotation, KEY_LIGHT_CAMERA)  # camera -> world: R^T l
        view_of = np.broadcast_to(np.arange(fg.shape[0])[:, None, None], fg.shape)[fg]
        ndl = np.einsum("ij,ij->i", hits.normal[fg], lights[view_of])
        value = AMBIENT + KEY * np.maximum(ndl, 0.0) + FILL * np.maximum(-ndl, 0.0)
        out[fg] = np.clip(np.rint(value * 255.0), 0, 255).astype(np.uint8)
    else:
        # nearer is brighter; 1..255 so the object never reads as background 0
        near = np.clip((CAMERA_DISTANCE + 1.0 - hits.depth[fg]) / 2.0, 0.0, 1.0)
        out[fg] = (1.0 + np.rint(near * 254.0)).astype(np.uint8)
    return out


def silhouette(
    mesh: trimesh.Trimesh,
    camera: np.ndarray,
    image_size: int = 137,
    *,
    zoom: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Pixels whose centre ray hits the mesh, from one camera.

    Args:
        mesh: the shape.
        camera: unit camera direction.
        image_size: square image side :math:`S`.
        zoom: focal-length factor (photo-like crop).
        offset: principal-point shift in NDC (photo-like crop).

    Returns:
        bool mask.

    Shapes:
        - **camera**: :math:`[3]`
        - **output**: :math:`[S, S]`
    """
    camera = np.asarray(camera, dtype=np.float64)
    if camera.shape != (3,):
        raise ValueError(f"camera must be one direction of shape [3], got {camera.shape}")
    return cast_views(mesh, camera[None], image_size, zoom=zoom, offset=offset).mask[0]
