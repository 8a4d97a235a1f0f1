r"""Closed-mesh primitives for the procedural ``synth`` generator.

Every builder returns a :data:`Prim`, a pair ``(vertices, faces)`` of plain
numpy arrays (float64 ``[n, 3]``, int64 ``[m, 3]``) describing one closed,
consistently wound surface with outward normals and no zero-area faces. The
generator in :mod:`ssl3d.datasets.synth.shapes` concatenates many of them into
one :class:`trimesh.Trimesh` at the end; working on bare arrays until then
keeps a whole shape at well under a millisecond of numpy work.

Rotationally symmetric parts (legs, stems, bottles, mugs, fuselages) are all
made by :func:`lathe`, which revolves a profile about +Y; boxes and spheres
come from cached :mod:`trimesh.creation` templates; :func:`prism` extrudes a
convex polygon (wings, car bodies) and :func:`arc_tube` sweeps a circle
along an arc (handles). Templates are cached per tessellation, so repeated
calls only pay for an affine transform.

:class:`Assembler` collects the labelled primitives of one shape, owns its
random draws, applies the per-part nuisances (size jitter, dropped parts)
and the whole-shape ones (anisotropic scale, rotation about +Y), and offers
the sub-assemblies several categories share (leg sets, pedestals, handles).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence, TypeVar

import numpy as np
import trimesh

T = TypeVar("T")
Prim = tuple[np.ndarray, np.ndarray]
"""``(vertices float64 [n, 3], faces int64 [m, 3])`` of one closed surface."""

_AXES = {"x": 0, "y": 1, "z": 2}


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    r"""Signed enclosed volume by the divergence theorem.

    .. math::
        V = \frac{1}{6} \sum_{f} \mathbf{v}_{f,0} \cdot
            (\mathbf{v}_{f,1} \times \mathbf{v}_{f,2})

    Positive iff the closed surface is wound with outward normals.

    Args:
        vertices: float ``[n, 3]``.
        faces: int ``[m, 3]``.

    Returns:
        The signed volume.
    """
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def _outward(vertices: np.ndarray, faces: np.ndarray) -> Prim:
    # Builders below do not track handedness by hand; one volume sign check
    # fixes the winding of the whole closed surface at once.
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return np.asarray(vertices, dtype=np.float64), faces


def transform(prim: Prim, rotation: np.ndarray | None = None, translation: Sequence[float] = (0, 0, 0)) -> Prim:
    """Rotate (about the origin) then translate a primitive.

    Args:
        prim: the primitive.
        rotation: proper rotation matrix ``[3, 3]``, or ``None``.
        translation: offset added after rotating.

    Returns:
        A new primitive; faces are shared, winding stays outward.
    """
    v, f = prim
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).T
    return v + np.asarray(translation, dtype=np.float64), f


def tilt_x(prim: Prim, angle: float, pivot: Sequence[float]) -> Prim:
    """Rotate about the x axis through ``pivot``; positive ``angle`` leans +Y towards -Z (a backrest)."""
    p = np.asarray(pivot, dtype=np.float64)
    return (prim[0] - p) @ rotation("x", -angle).T + p, prim[1]


def rect_feet(hw: float, hd: float, n: int = 4) -> list[tuple[float, float]]:
    """``(x, z)`` leg positions at the corners of a ``2hw x 2hd`` rectangle (``n=6`` adds two mid-side legs)."""
    pts = [(-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd)]
    return pts + [(0.0, -hd), (0.0, hd)] if n == 6 else pts


def circle_feet(rx: float, rz: float, n: int, phase: float = 0.0) -> list[tuple[float, float]]:
    """``n`` evenly spaced ``(x, z)`` leg positions on an ellipse with semi-axes ``rx``, ``rz``."""
    t = 2 * np.pi * np.arange(n) / n + phase
    return [(float(x), float(z)) for x, z in zip(rx * np.cos(t), rz * np.sin(t))]


def rotation(axis: str, angle: float) -> np.ndarray:
    """Right-handed rotation matrix by ``angle`` radians about ``"x"``, ``"y"`` or ``"z"``."""
    if axis not in _AXES:
        raise ValueError(f"axis must be one of 'x', 'y', 'z', got {axis!r}")
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != _AXES[axis]]
    r = np.eye(3)
    # For y the cyclic order is (z, x), hence the sign swap.
    if axis == "y":
        i, j = j, i
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def align_y(direction: Sequence[float]) -> np.ndarray:
    """Rotation taking +Y onto the unit vector along ``direction`` (Rodrigues formula)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    y = np.array([0.0, 1.0, 0.0])
    c = float(d @ y)
    if c < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])  # half turn about x
    k = np.cross(y, d)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + kx + kx @ kx / (1 + c)


@lru_cache(maxsize=None)
def _box_template() -> Prim:
    m = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return _outward(np.array(m.vertices), np.array(m.faces))


@lru_cache(maxsize=None)
def _sphere_template(subdivisions: int) -> Prim:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return _outward(np.array(m.vertices), np.array(m.faces))


@lru_cache(maxsize=128)
def _torus_template(major: float, sections: int, tube_sections: int) -> Prim:
    m = trimesh.creation.torus(major_radius=major, minor_radius=1.0,
                               major_sections=sections, minor_sections=tube_sections)
    # trimesh puts the ring in the xy plane; the generator wants it lying flat (xz).
    return _outward(np.array(m.vertices) @ rotation("x", -np.pi / 2).T, np.array(m.faces))


def box(size: Sequence[float], center: Sequence[float] = (0, 0, 0), rot: np.ndarray | None = None) -> Prim:
    """Box with edge lengths ``size`` (before ``rot``) centred at ``center``."""
    v, f = _box_template()
    return transform((v * np.asarray(size, dtype=np.float64), f), rot, center)


def ellipsoid(radii: Sequence[float], center: Sequence[float] = (0, 0, 0), subdivisions: int = 1) -> Prim:
    """Icosphere (``subdivisions`` 1 -> 80 faces, 2 -> 320) scaled to semi-axes ``radii``."""
    v, f = _sphere_template(subdivisions)
    return v * np.asarray(radii, dtype=np.float64) + np.asarray(center, dtype=np.float64), f


def ring(major: float, tube: float, center: Sequence[float] = (0, 0, 0), sections: int = 16,
         tube_sections: int = 6) -> Prim:
    """Horizontal torus (axis +Y) with ring radius ``major`` and tube radius ``tube``."""
    if not 0 < tube < major:
        raise ValueError(f"ring needs 0 < tube < major, got tube={tube}, major={major}")
    v, f = _torus_template(round(major / tube, 6), sections, tube_sections)
    return v * tube + np.asarray(center, dtype=np.float64), f


def lathe(profile: Sequence[tuple[float, float]], sections: int = 16, phase: float = 0.0) -> Prim:
    r"""Solid of revolution about +Y from a closed half-profile.

    The profile is a polyline of ``(r, y)`` points that starts and ends on
    the axis (:math:`r_0 = r_{K-1} = 0`) with :math:`r > 0` in between, so the
    revolved surface is closed: two pole vertices, :math:`K-2` rings of
    ``sections`` vertices, :math:`2S(K-2)` faces. Ring :math:`k` sits at angle
    :math:`\theta_k = 2\pi k / S + \text{phase}` (``sections=4``,
    ``phase=pi/4`` gives an axis-aligned square prism).

    Args:
        profile: ``K >= 3`` points ``(r, y)``; consecutive points must differ.
        sections: number of angular sections (>= 3).
        phase: angular offset of the first section in radians.

    Returns:
        The closed primitive with outward winding.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
        raise ValueError(f"profile must be K >= 3 points (r, y), got shape {p.shape}")
    if p[0, 0] != 0 or p[-1, 0] != 0 or np.any(p[1:-1, 0] <= 0):
        raise ValueError("profile must start and end on the axis (r = 0) with r > 0 in between")
    if np.any(np.linalg.norm(np.diff(p, axis=0), axis=1) <= 0) or sections < 3:
        raise ValueError("profile points must be distinct in sequence and sections >= 3")
    rings = p[1:-1]
    k = len(rings)
    theta = 2 * np.pi * np.arange(sections) / sections + phase
    ring_v = np.stack([rings[:, :1] * np.cos(theta), np.repeat(rings[:, 1:], sections, 1),
                       rings[:, :1] * np.sin(theta)], axis=-1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, p[0, 1], 0.0]], ring_v, [[0.0, p[-1, 1], 0.0]]])
    s = np.arange(sections)
    s1 = (s + 1) % sections
    top = 1 + k * sections
    faces = [np.stack([np.zeros(sections, np.int64), 1 + s1, 1 + s], 1)]
    for i in range(k - 1):
        a, b = 1 + i * sections, 1 + (i + 1) * sections
        faces += [np.stack([a + s, a + s1, b + s1], 1), np.stack([a + s, b + s1, b + s], 1)]
    last = 1 + (k - 1) * sections
    faces.append(np.stack([np.full(sections, top), last + s, last + s1], 1))
    return _outward(verts, np.concatenate(faces))


@lru_cache(maxsize=None)
def _unit_cylinder(sections: int, phase: float) -> Prim:
    return lathe([(0, 0), (1, 0), (1, 1), (0, 1)], sections, phase)


def cylinder(p0: Sequence[float], p1: Sequence[float], radius: float, sections: int = 12,
             square: bool = False) -> Prim:
    """Cylinder of ``radius`` from point ``p0`` to ``p1``.

    With ``square=True`` it is a square prism of side ``2 * radius`` instead
    (4 sections; axis-aligned when the axis is vertical).
    """
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    length = float(np.linalg.norm(p1 - p0))
    if length <= 0 or radius <= 0:
        raise ValueError(f"cylinder needs p0 != p1 and radius > 0, got length {length}, radius {radius}")
    v, f = _unit_cylinder(4, np.pi / 4) if square else _unit_cylinder(sections, 0.0)
    r = radius * np.sqrt(2) if square else radius
    return transform((v * np.array([r, length, r]), f), align_y(p1 - p0), p0)


def frustum(p0: Sequence[float], p1: Sequence[float], r0: float, r1: float, sections: int = 16) -> Prim:
    """Truncated cone from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``); both radii > 0."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    length = float(np.linalg.norm(p1 - p0))
    v, f = lathe([(0, 0), (r0, 0), (r1, length), (0, length)], sections)
    return transform((v, f), align_y(p1 - p0), p0)


def prism(polygon: Sequence[tuple[float, float]], depth: float, axis: str = "z",
          center: float = 0.0) -> Prim:
    """Extrude a strictly convex polygon along ``axis`` over ``center +- depth / 2``.

    Polygon coordinates are ``(x, y)`` for ``axis="z"``, ``(z, y)`` for
    ``axis="x"`` and ``(x, z)`` for ``axis="y"``; either orientation is
    accepted. Caps are fan-triangulated, which is why the polygon must be
    strictly convex (no three collinear corners).
    """
    poly = np.asarray(polygon, dtype=np.float64)
    n = len(poly)
    if poly.ndim != 2 or poly.shape[1] != 2 or n < 3 or depth <= 0:
        raise ValueError(f"prism needs >= 3 (u, v) corners and depth > 0, got {poly.shape}, {depth}")
    lo, hi = center - depth / 2, center + depth / 2
    uvw = np.concatenate([np.c_[poly, np.full(n, lo)], np.c_[poly, np.full(n, hi)]])
    cols = {"z": [0, 1, 2], "x": [2, 1, 0], "y": [0, 2, 1]}[axis]
    i = np.arange(n)
    j = (i + 1) % n
    fan = np.arange(1, n - 1)
    faces = np.concatenate([
        np.stack([np.zeros(n - 2, np.int64), fan + 1, fan], 1),
        np.stack([np.full(n - 2, n), n + fan, n + fan + 1], 1),
        np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1),
    ])
    return _outward(uvw[:, cols], faces)


def arc_tube(radius: float, tube: float, angle: float, sections: int = 10, tube_sections: int = 8) -> Prim:
    r"""Closed tube of radius ``tube`` swept along a circular arc (a handle).

    The arc lies in the xy plane on the circle of ``radius`` about the
    origin, spanning :math:`\phi \in [-\text{angle}/2, \text{angle}/2]`
    around +x, so the handle bulges towards +x. Both ends are capped.

    Args:
        radius: arc radius (> ``tube``).
        tube: tube radius.
        angle: swept angle in radians, in ``(0, 2pi)``.
        sections: segments along the arc.
        tube_sections: segments around the tube.
    """
    if not (0 < tube < radius and 0 < angle < 2 * np.pi):
        raise ValueError("arc_tube needs 0 < tube < radius and 0 < angle < 2*pi")
    phi = np.linspace(-angle / 2, angle / 2, sections + 1)
    psi = 2 * np.pi * np.arange(tube_sections) / tube_sections
    rr = radius + tube * np.cos(psi)[None, :]
    ring_v = np.stack([rr * np.cos(phi)[:, None], rr * np.sin(phi)[:, None],
                       np.broadcast_to(tube * np.sin(psi), (len(phi), tube_sections))], -1).reshape(-1, 3)
    ends = radius * np.array([[np.cos(phi[0]), np.sin(phi[0]), 0], [np.cos(phi[-1]), np.sin(phi[-1]), 0]])
    verts = np.concatenate([ring_v, ends])
    t = np.arange(tube_sections)
    t1 = (t + 1) % tube_sections
    c0, c1 = len(ring_v), len(ring_v) + 1
    last = sections * tube_sections
    faces = [np.stack([np.full(tube_sections, c0), t1, t], 1),
             np.stack([np.full(tube_sections, c1), last + t, last + t1], 1)]
    for k in range(sections):
        a, b = k * tube_sections, (k + 1) * tube_sections
        faces += [np.stack([a + t, a + t1, b + t1], 1), np.stack([a + t, b + t1, b + t], 1)]
    return _outward(verts, np.concatenate(faces))


class Assembler:
    """Collects labelled primitives of one shape and applies the nuisances.

    Design code calls the draw helpers (:meth:`u`, :meth:`chance`,
    :meth:`pick`) and :meth:`add`; every random number comes from the one
    ``rng``, in call order, so a seed fixes the shape. Nuisance draws are
    made whether or not the nuisance is enabled, so toggling one never
    shifts the design draws that follow.

    Args:
        parts: the category's local part names, in global-id order.
        mandatory: part names that are never dropped.
        first_id: global id of ``parts[0]``.
        rng: the generator's random source.
        part_jitter: relative per-axis size jitter of each primitive.
    """

    def __init__(self, parts: Sequence[str], mandatory: Sequence[str], first_id: int,
                 rng: np.random.Generator, part_jitter: float) -> None:
        self.parts, self.mandatory = tuple(parts), frozenset(mandatory)
        self.first_id, self.rng, self.part_jitter = first_id, rng, part_jitter
        self._items: list[tuple[np.ndarray, np.ndarray, int]] = []

    def u(self, lo: float, hi: float) -> float:
        """Uniform draw in ``[lo, hi)``."""
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        """Bernoulli draw with success probability ``p``."""
        return bool(self.rng.random() < p)

    def pick(self, options: Sequence[T], probs: Sequence[float]) -> T:
        """One of ``options`` drawn with probabilities ``probs``."""
        return options[int(self.rng.choice(len(options), p=np.asarray(probs) / np.sum(probs)))]

    def add(self, part: str, prim: Prim, anchor: Sequence[float] | None = None) -> None:
        r"""Add one primitive labelled ``part``, size-jittered about ``anchor``.

        The jitter scales the primitive per axis by :math:`1 + j\,u`,
        :math:`u \sim U(-1, 1)^3`, about ``anchor`` (default: its bounding-box
        centre), so a leg jittered about its top stays attached to its seat.
        """
        u = self.rng.uniform(-1.0, 1.0, 3)
        v, f = prim
        c = (v.min(0) + v.max(0)) / 2 if anchor is None else np.asarray(anchor, dtype=np.float64)
        self._items.append(((v - c) * (1.0 + self.part_jitter * u) + c, f, self.parts.index(part)))

    def finish(self, drop_prob: float, aniso: float, rotate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Drop optional parts, scale per axis, rotate about +Y and concatenate.

        Returns:
            ``(vertices float64 [n, 3], faces int64 [m, 3], face_part int64 [m])``
            with face_part in global part ids.
        """
        drop_u = self.rng.random(len(self.parts))
        scale = 1.0 + aniso * self.rng.uniform(-1.0, 1.0, 3)
        angle = self.rng.uniform(0.0, 2 * np.pi)
        dropped = {i for i, name in enumerate(self.parts) if name not in self.mandatory and drop_u[i] < drop_prob}
        verts, faces, labels, offset = [], [], [], 0
        for v, f, part in self._items:
            if part in dropped:
                continue
            verts.append(v)
            faces.append(f + offset)
            labels.append(np.full(len(f), self.first_id + part, dtype=np.int64))
            offset += len(v)
        v = np.concatenate(verts) * scale
        if rotate:
            v = v @ rotation("y", angle).T
        return v, np.concatenate(faces), np.concatenate(labels)

    # ------------------------------------------------ sub-assemblies shared by categories
    def legs(self, part: str, feet: Sequence[tuple[float, float]], top: float, thick: float,
             square: bool = False, splay: float = 0.0) -> None:
        """Legs from ``(x, top, z)`` to the floor, feet pushed radially outwards by angle ``splay``."""
        for x, z in feet:
            r = float(np.hypot(x, z))
            k = 1.0 + (top * np.tan(splay) / r if r > 0 else 0.0)
            self.add(part, cylinder((k * x, 0.0, k * z), (x, top, z), thick, 12, square), anchor=(x, top, z))

    def pedestal(self, part: str, top: float, col_r: float, reach: float, feet: int, foot_t: float) -> None:
        """Central column up to ``top`` on ``feet`` radial feet of length ``reach``, or on a disc if ``feet == 0``."""
        self.add(part, cylinder((0, foot_t * 0.5, 0), (0, top, 0), col_r, 12), anchor=(0, top, 0))
        if feet == 0:
            self.add(part, cylinder((0, 0, 0), (0, foot_t, 0), reach, 20))
        for t in 2 * np.pi * np.arange(feet) / max(feet, 1):
            c = (reach / 2 * np.cos(t), foot_t / 2, reach / 2 * np.sin(t))
            self.add(part, box((reach, foot_t, foot_t * 1.6), c, rotation("y", -t)))

    def handle(self, part: str, x_wall: float, y_mid: float, height: float, reach: float, tube: float) -> None:
        """C-shaped handle of ``height`` sticking out ``reach`` on the +x side of a wall at ``x_wall``."""
        d = 0.25  # ends overshoot the half circle so they sink slightly into the wall
        radius = height / (2 * np.cos(d))
        v, f = arc_tube(radius, min(tube, 0.5 * radius), np.pi + 2 * d, 10, 8)
        self.add(part, (v * np.array([reach / radius, 1.0, 1.0]) + np.array([x_wall, y_mid, 0.0]), f))
