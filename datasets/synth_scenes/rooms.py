r"""Seeded generator of S3DIS-like rooms: structure, openings and furniture from the synth object generator.

A room is a box of ``W x D x H`` metres (z up, floor at z = 0) whose surfaces
are sampled at ``density`` points per square metre, each point with a colour
and one of the 13 S3DIS classes (:data:`~ssl3d.datasets.scene_dataset.S3DIS_CLASSES`):

* **structure**: ``floor``, ``ceiling``, four ``wall`` planes; a ``beam``
  (a box under the ceiling across the room) and a ``column`` (a box from
  floor to ceiling against a wall); the ceiling points hidden by the beam
  and the wall points hidden by the column are left out, as a scanner
  would not see them;
* **openings**: one ``door`` (0.8-1.0 m x 2.0-2.1 m, the door leaf set 5 cm
  into the wall opening) and 1-2 ``window`` planes (glass 8 cm into the
  wall); wall points inside the openings are removed; a ``board`` (a
  whiteboard 2 cm in front of a wall) hides the wall behind it;
* **furniture**: meshes of the synth object generator
  (:func:`~ssl3d.datasets.synth.shapes.generate_shape`) scaled to real sizes,
  turned upright (synth is +Y up) and rotated by a multiple of 90 degrees:
  ``table``, ``chair``, ``sofa``, ``bookcase`` (synth ``shelf``) and
  ``clutter`` (synth ``lamp``, ``mug``, ``bottle``: on tables or the floor).
  Footprints are axis-aligned rectangles placed by rejection sampling so
  that no two pieces, the column and the space in front of the door
  intersect; clutter on a table must fit on its top and not overlap other
  clutter there.

Colours: a per-class base colour, shifted per object instance and per area
palette, plus per-point noise, so colour helps but does not decide a class.

The six areas (:data:`AREA_STYLES`) differ in room sizes, heights and
furniture mixes (offices, conference rooms, lounges, storage-like rooms),
so training on one area and testing on area 5 is a real domain shift, as in
S3DIS. Every room holds every structural class; every area's first three room
kinds include an office and a lounge, so three rooms hold every furniture class.
Everything is drawn from one ``numpy`` generator seeded by (seed, area,
room), so a room never depends on other rooms or settings.

Version :data:`SCENES_VERSION` enters every cache key; bump it when any output changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ssl3d.datasets.scene_dataset import S3DIS_CLASSES
from ssl3d.datasets.synth.shapes import Nuisance, generate_shape

__all__ = ["AREA_STYLES", "AreaStyle", "SCENES_VERSION", "generate_room"]

SCENES_VERSION = "1"

_C = {name: i for i, name in enumerate(S3DIS_CLASSES)}
#: base colour (rgb in [0, 1]) of every class
_BASE_RGB = {
    "ceiling": (0.85, 0.85, 0.82), "floor": (0.55, 0.45, 0.35), "wall": (0.80, 0.78, 0.70), "beam": (0.75, 0.74, 0.70),
    "column": (0.70, 0.70, 0.66), "window": (0.55, 0.70, 0.85), "door": (0.50, 0.35, 0.25), "table": (0.60, 0.45, 0.30),
    "chair": (0.25, 0.25, 0.35), "sofa": (0.45, 0.20, 0.20), "bookcase": (0.50, 0.40, 0.30), "board": (0.95, 0.95, 0.95),
    "clutter": (0.40, 0.60, 0.40),
}
#: furniture class -> (synth categories, height range in metres)
_FURNITURE = {
    "table": (("table",), (0.70, 0.78)),
    "chair": (("chair",), (0.80, 1.00)),
    "sofa": (("sofa",), (0.75, 0.90)),
    "bookcase": (("shelf",), (1.40, 2.00)),
}
_CLUTTER = {"lamp": (0.35, 0.60), "mug": (0.09, 0.12), "bottle": (0.22, 0.32)}
#: synth's clean upright designs; the room supplies position and rotation
_UPRIGHT = Nuisance(rotate_up=False, aniso_scale=0.1, part_jitter=0.1, drop_part_prob=0.1)


@dataclass(frozen=True)
class AreaStyle:
    """How the rooms of one area look.

    Args:
        width: range of the room's x extent, metres.
        depth: range of the y extent, metres.
        height: range of the ceiling height, metres.
        kinds: room kinds cycled through (see :data:`_KINDS`); the first rooms take each once.
        tint: palette shift added to every colour of the area.
    """

    width: tuple[float, float]
    depth: tuple[float, float]
    height: tuple[float, float]
    kinds: tuple[str, ...]
    tint: tuple[float, float, float]


#: room kind -> counts (min, max) of tables, chairs, sofas, bookcases, clutter objects
_KINDS = {
    "office": {"table": (1, 2), "chair": (2, 3), "sofa": (0, 0), "bookcase": (1, 2), "clutter": (2, 4)},
    "conference": {"table": (1, 1), "chair": (4, 6), "sofa": (0, 0), "bookcase": (0, 1), "clutter": (1, 3)},
    "lounge": {"table": (1, 1), "chair": (0, 1), "sofa": (1, 2), "bookcase": (0, 1), "clutter": (2, 3)},
    "storage": {"table": (0, 1), "chair": (0, 1), "sofa": (0, 1), "bookcase": (2, 3), "clutter": (4, 6)},
}

AREA_STYLES: dict[int, AreaStyle] = {
    1: AreaStyle((3.5, 4.5), (3.5, 4.5), (2.6, 2.9), ("office", "lounge", "conference", "storage"), (0.00, 0.00, 0.00)),
    2: AreaStyle((4.5, 6.0), (4.0, 5.5), (3.0, 3.6), ("lounge", "conference", "office", "storage"), (0.05, 0.02, -0.03)),
    3: AreaStyle((3.0, 4.0), (3.5, 4.5), (2.5, 2.8), ("lounge", "office", "storage", "conference"), (-0.03, 0.00, 0.04)),
    4: AreaStyle((3.5, 5.0), (3.0, 4.0), (2.7, 3.0), ("storage", "office", "lounge", "conference"), (0.03, -0.02, 0.00)),
    5: AreaStyle((3.5, 5.0), (3.5, 5.0), (2.7, 3.1), ("office", "conference", "lounge", "storage"), (-0.02, 0.03, -0.02)),
    6: AreaStyle((3.0, 4.5), (3.0, 4.0), (2.6, 2.9), ("office", "storage", "lounge", "conference"), (0.00, -0.03, 0.03)),
}


class _Room:
    """Accumulates labelled, coloured points of one room."""

    def __init__(self, rng: np.random.Generator, density: float, tint: np.ndarray) -> None:
        self.rng, self.density, self.tint = rng, density, tint
        self.points: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.colours: list[np.ndarray] = []

    def _count(self, area: float) -> int:
        return max(1, int(round(area * self.density)))

    def add(self, xyz: np.ndarray, cls: str) -> None:
        if len(xyz) == 0:
            return
        base = np.asarray(_BASE_RGB[cls]) + self.tint + self.rng.uniform(-0.08, 0.08, 3)  # per instance
        rgb = np.clip(base + self.rng.normal(0, 0.04, (len(xyz), 3)), 0, 1)
        self.points.append(xyz)
        self.labels.append(np.full(len(xyz), _C[cls], dtype=np.int64))
        self.colours.append(rgb)

    def rect(self, origin, u, v, keep=None) -> np.ndarray:
        """Points on the parallelogram origin + s u + t v (s, t in [0, 1]); ``keep`` filters them."""
        origin, u, v = (np.asarray(a, dtype=np.float64) for a in (origin, u, v))
        n = self._count(float(np.linalg.norm(np.cross(u, v))))
        st = self.rng.random((n, 2))
        xyz = origin + st[:, :1] * u + st[:, 1:] * v
        return xyz if keep is None else xyz[keep(xyz)]

    def box(self, lo, hi, cls: str, faces=("x0", "x1", "y0", "y1", "z0", "z1")) -> None:
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        d = hi - lo
        ex, ey, ez = np.diag(d)
        spans = {"x0": (lo, ey, ez), "x1": (lo + ex, ey, ez), "y0": (lo, ex, ez), "y1": (lo + ey, ex, ez),
                 "z0": (lo, ex, ey), "z1": (lo + ez, ex, ey)}
        for f in faces:
            self.add(self.rect(*spans[f]), cls)

    def mesh(self, mesh: trimesh.Trimesh, cls: str) -> None:
        area = mesh.area_faces
        n = self._count(float(area.sum()))
        face = self.rng.choice(len(area), n, p=area / area.sum())
        r = self.rng.random((n, 2))
        flip = r.sum(axis=1) > 1
        r[flip] = 1 - r[flip]
        tri = mesh.triangles[face]
        self.add(tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0]), cls)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.concatenate(self.points)
        rgb = np.concatenate(self.colours)
        return np.concatenate([xyz, rgb], axis=1).astype(np.float32), np.concatenate(self.labels)


def _object(category: str, height: float, rng: np.random.Generator) -> trimesh.Trimesh:
    """A synth object turned z-up, scaled to ``height``, rotated k * 90 degrees, footprint from the origin."""
    mesh, _ = generate_shape(category, rng, _UPRIGHT)
    v = mesh.vertices[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])  # +Y up -> +Z up (x, -z, y)
    v = v * (height / max(np.ptp(v[:, 2]), 1e-6))
    quarter = int(rng.integers(4))
    for _ in range(quarter):
        v = np.stack([-v[:, 1], v[:, 0], v[:, 2]], axis=1)
    v = v - v.min(axis=0)
    return trimesh.Trimesh(vertices=v, faces=mesh.faces, process=False, validate=False)


def _overlaps(rect, others, gap: float = 0.05) -> bool:
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in others)


def _place(size_xy, region, taken, rng, tries: int = 60):
    """A free lower-left corner for a footprint of ``size_xy`` inside ``region`` (x0, y0, x1, y1), or None."""
    (sx, sy), (rx0, ry0, rx1, ry1) = size_xy, region
    if sx > rx1 - rx0 or sy > ry1 - ry0:
        return None
    for _ in range(tries):
        x, y = rng.uniform(rx0, rx1 - sx), rng.uniform(ry0, ry1 - sy)
        if not _overlaps((x, y, x + sx, y + sy), taken):
            return x, y
    return None


def generate_room(area: int, index: int, seed: int = 0, density: float = 250.0) -> tuple[np.ndarray, np.ndarray]:
    """Room ``index`` of ``area``: float32 ``[N, 6]`` xyz (metres, z up) + rgb in [0, 1], int64 ``[N]`` labels.

    Args:
        area: 1..6, picks the :data:`AREA_STYLES` entry.
        index: room number within the area (0, 1, ...); room ``index`` has kind ``kinds[index % 4]``.
        seed: the dataset seed.
        density: surface points per square metre.
    """
    if area not in AREA_STYLES:
        raise ValueError(f"area must be one of {sorted(AREA_STYLES)}; got {area}")
    if not density > 0:
        raise ValueError(f"density must be > 0; got {density}")
    style = AREA_STYLES[area]
    rng = np.random.default_rng([seed, area, index])
    w, d, h = (float(rng.uniform(*r)) for r in (style.width, style.depth, style.height))
    room = _Room(rng, density, np.asarray(style.tint))
    # openings on the walls y = 0 (door), y = d (windows), x = w (board); the column stands at x = 0
    door_w, door_h = rng.uniform(0.8, 1.0), rng.uniform(2.0, 2.1)
    door_x = rng.uniform(0.3, w - door_w - 0.3)
    n_win = int(rng.integers(1, 3))
    win_w = min(rng.uniform(1.0, 1.6), (w - 0.4) / n_win - 0.2)
    win_x = [0.2 + k * (w - 0.4) / n_win + rng.uniform(0, (w - 0.4) / n_win - win_w) for k in range(n_win)]
    win_z = (rng.uniform(0.8, 1.0), min(h - 0.3, rng.uniform(2.0, 2.3)))
    board_w, board_y = rng.uniform(1.2, 2.0), rng.uniform(0.3, d - 2.3)
    col_s, col_y = rng.uniform(0.3, 0.5), rng.uniform(0.5, d - 1.0)
    beam_x, beam_w, beam_h = rng.uniform(1.0, w - 1.0), rng.uniform(0.25, 0.4), rng.uniform(0.3, 0.45)

    room.add(room.rect((0, 0, 0), (w, 0, 0), (0, d, 0)), "floor")
    room.add(room.rect((0, 0, h), (w, 0, 0), (0, d, 0),
                       keep=lambda p: (p[:, 0] < beam_x) | (p[:, 0] > beam_x + beam_w)), "ceiling")
    room.add(room.rect((0, 0, 0), (w, 0, 0), (0, 0, h),
                       keep=lambda p: ~((p[:, 0] > door_x) & (p[:, 0] < door_x + door_w) & (p[:, 2] < door_h))), "wall")
    in_win = lambda p: np.any([(p[:, 0] > x) & (p[:, 0] < x + win_w) for x in win_x], axis=0) & (
        p[:, 2] > win_z[0]) & (p[:, 2] < win_z[1])
    room.add(room.rect((0, d, 0), (w, 0, 0), (0, 0, h), keep=lambda p: ~in_win(p)), "wall")
    room.add(room.rect((0, 0, 0), (0, d, 0), (0, 0, h),
                       keep=lambda p: ~((p[:, 1] > col_y) & (p[:, 1] < col_y + col_s))), "wall")
    room.add(room.rect((w, 0, 0), (0, d, 0), (0, 0, h),
                       keep=lambda p: ~((p[:, 1] > board_y) & (p[:, 1] < board_y + board_w) & (p[:, 2] > 0.9)
                                        & (p[:, 2] < 2.0))), "wall")
    room.add(room.rect((door_x, 0.05, 0), (door_w, 0, 0), (0, 0, door_h)), "door")
    for x in win_x:
        room.add(room.rect((x, d - 0.08, win_z[0]), (win_w, 0, 0), (0, 0, win_z[1] - win_z[0])), "window")
    room.add(room.rect((w - 0.02, board_y, 0.9), (0, board_w, 0), (0, 0, 1.1)), "board")
    room.box((beam_x, 0, h - beam_h), (beam_x + beam_w, d, h), "beam", faces=("x0", "x1", "z0"))
    room.box((0, col_y, 0), (col_s, col_y + col_s, h), "column", faces=("x1", "y0", "y1"))

    taken = [(0, col_y, col_s, col_y + col_s), (door_x - 0.1, 0, door_x + door_w + 0.1, 1.0)]
    inside = (0.05, 0.05, w - 0.05, d - 0.05)
    kind = _KINDS[style.kinds[index % len(style.kinds)]]
    tops = []  # (footprint, top height) of placed tables, for clutter
    for cls in ("table", "bookcase", "sofa", "chair"):
        categories, heights = _FURNITURE[cls]
        lo, hi = kind[cls]
        for _ in range(int(rng.integers(lo, hi + 1))):
            mesh = _object(categories[int(rng.integers(len(categories)))], float(rng.uniform(*heights)), rng)
            size = mesh.vertices.max(axis=0)
            spot = _place(size[:2], inside, taken, rng)
            if spot is None:
                continue
            taken.append((spot[0], spot[1], spot[0] + size[0], spot[1] + size[1]))
            mesh.apply_translation((spot[0], spot[1], 0.0))
            room.mesh(mesh, cls)
            if cls == "table":
                tops.append(([*spot, spot[0] + size[0], spot[1] + size[1]], float(size[2]), []))
    lo, hi = kind["clutter"]
    for _ in range(int(rng.integers(lo, hi + 1))):
        category = ("lamp", "mug", "bottle")[int(rng.integers(3))]
        mesh = _object(category, float(rng.uniform(*_CLUTTER[category])), rng)
        size = mesh.vertices.max(axis=0)
        on_table = tops and rng.random() < 0.6
        if on_table:
            rect, z, on_top = tops[int(rng.integers(len(tops)))]
            spot = _place(size[:2], rect, on_top, rng)
            if spot is not None:
                on_top.append((spot[0], spot[1], spot[0] + size[0], spot[1] + size[1]))
        else:
            z, spot = 0.0, _place(size[:2], inside, taken, rng)
            if spot is not None:
                taken.append((spot[0], spot[1], spot[0] + size[0], spot[1] + size[1]))
        if spot is not None:
            mesh.apply_translation((spot[0], spot[1], z))
            room.mesh(mesh, "clutter")
    return room.finish()
