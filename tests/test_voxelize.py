"""Tests of solid voxelisation against analytic occupancy of simple solids."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from ssl3d.datasets.modalities.voxelize import VoxelResult, normalise_for_voxels, voxelize

R = 32


def centres_grid(r: int = R) -> np.ndarray:
    """Voxel centres in grid units, [r, r, r, 3], index order [x, y, z]."""
    c = np.arange(r) + 0.5
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def to_grid(mesh: trimesh.Trimesh, points: np.ndarray, r: int = R) -> np.ndarray:
    """World points -> grid coordinates, with the normalisation computed independently."""
    lo, hi = mesh.bounds
    return (np.asarray(points) - (lo + hi) / 2) / (hi - lo).max() * r + r / 2


def inside_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((points > lo) & (points < hi), axis=-1)


def test_sphere_volume_within_3_percent():
    res = voxelize(trimesh.creation.icosphere(subdivisions=4), R)
    assert isinstance(res, VoxelResult)
    assert res.occupancy.shape == (R, R, R) and res.occupancy.dtype == bool
    expected = 4.0 / 3.0 * np.pi * (R / 2) ** 3
    assert abs(res.occupancy.sum() - expected) / expected < 0.03
    assert res.method == "winding" and not res.used_fallback
    # and it is a ball about the grid centre: every centre deeper than one voxel inside is set
    d = np.linalg.norm(centres_grid() - R / 2, axis=-1)
    assert res.occupancy[d < R / 2 - 1].all()
    assert not res.occupancy[d > R / 2 + 1].any()


@pytest.mark.parametrize("extents", [(2.0, 1.0, 0.5), (2.0, 0.9, 0.37), (0.6, 2.0, 1.3)])
def test_axis_aligned_box_exact(extents):
    box = trimesh.creation.box(extents).apply_translation([3.0, -1.0, 0.25])
    res = voxelize(box, R)
    g = to_grid(box, box.bounds)
    expected = inside_box(centres_grid(), g[0], g[1])
    np.testing.assert_array_equal(res.occupancy, expected)
    # index order [x, y, z]: the longest side spans the grid along its own axis
    longest = int(np.argmax(extents))
    assert res.occupancy.any(axis=tuple(a for a in range(3) if a != longest)).all()
    if extents == (2.0, 1.0, 0.5):
        assert res.occupancy.sum() == 32 * 16 * 8


def test_interpenetrating_boxes_union_is_solid():
    b1 = trimesh.creation.box((1.0, 1.0, 1.0))
    b2 = trimesh.creation.box((1.0, 0.8, 1.2)).apply_translation([0.45, 0.3, 0.15])
    union = trimesh.util.concatenate([b1, b2])
    res = voxelize(union, R)
    c = centres_grid()
    g1, g2 = to_grid(union, b1.bounds), to_grid(union, b2.bounds)
    expected = inside_box(c, *g1) | inside_box(c, *g2)
    np.testing.assert_array_equal(res.occupancy, expected)
    assert not res.used_fallback
    # the overlap (where ray parity alone would say "outside") is filled
    assert res.occupancy[inside_box(c, *g1) & inside_box(c, *g2)].all()


def test_inward_shell_leaves_cavity_empty_but_flood_fills_it():
    outer = trimesh.creation.icosphere(subdivisions=3)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    inner.invert()  # a cavity: inner wall facing inwards
    hollow = trimesh.util.concatenate([outer, inner])
    full = voxelize(outer, R).occupancy.sum()
    res = voxelize(hollow, R)
    assert res.method == "winding"
    assert abs(res.occupancy.sum() / full - (1 - 0.5**3)) < 0.03
    assert not res.occupancy[R // 2, R // 2, R // 2]
    assert voxelize(hollow, R, method="flood").occupancy.sum() == full


def test_flood_fallback_agrees_with_winding_on_closed_mesh():
    mesh = trimesh.creation.capsule(height=1.0, radius=0.4).apply_transform(
        trimesh.transformations.rotation_matrix(0.6, [1.0, 0.3, 0.0])
    )
    w = voxelize(mesh, R, method="winding").occupancy
    f = voxelize(mesh, R, method="flood")
    assert f.used_fallback and f.method == "flood"
    assert (w ^ f.occupancy).sum() <= 0.005 * w.sum()


def test_open_box_does_not_crash_and_reports_fallback():
    box = trimesh.creation.box((1.0, 0.8, 0.6))
    top = np.where(box.face_normals[:, 1] > 0.5)[0]
    open_box = box.copy()
    open_box.update_faces(~np.isin(np.arange(len(box.faces)), top))
    res = voxelize(open_box, R)
    assert res.used_fallback and res.method == "flood"
    g = to_grid(open_box, open_box.bounds)  # y from 3.2 to 28.8
    # the open container is not filled...
    deep = inside_box(centres_grid(), g[0] + 2, g[1] - 2)
    assert not res.occupancy[deep].any()
    # ...but its walls are there as one thin layer: the bottom covers the whole footprint
    bottom = int(np.floor(g[0][1]))
    footprint = res.occupancy.any(axis=1)
    assert footprint.sum() == 32 * 20  # x over the whole grid, z 6.4..25.6 holds centres 6.5..25.5
    assert (res.occupancy[:, bottom - 1 : bottom + 1, :].any(axis=1) == footprint).all()


def test_small_hole_is_sealed():
    box = trimesh.creation.box((1.0, 0.7, 0.9)).subdivide().subdivide().subdivide().subdivide()
    holed = box.copy()
    holed.update_faces(np.arange(len(box.faces)) != 5)  # one face of 1/16 x 1/16 units: < 1 voxel
    closed = voxelize(box, R)
    res = voxelize(holed, R)
    assert res.used_fallback
    assert (res.occupancy ^ closed.occupancy).sum() <= 0.02 * closed.occupancy.sum()


def test_single_triangle_is_one_thin_layer():
    tri = trimesh.Trimesh([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0, 1, 2]], process=False)
    res = voxelize(tri, R)
    assert res.used_fallback
    # The triangle lies in the plane y = R/2, a voxel boundary: one layer on
    # either side of it is set. Columns through centres (i + 1/2, k + 1/2)
    # cross it iff i + k + 1 < R.
    layers = np.where(res.occupancy.any(axis=(0, 2)))[0]
    assert len(layers) == 1 and layers[0] in (R // 2 - 1, R // 2)
    i, k = np.meshgrid(np.arange(R), np.arange(R), indexing="ij")
    np.testing.assert_array_equal(res.occupancy[:, layers[0], :], i + k + 1 < R)


def test_flat_shapes_do_not_crash():
    square = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    res = voxelize(square, R)
    assert res.occupancy.sum() == R * R and res.occupancy.any(axis=(0, 2)).sum() == 1
    flat_box = trimesh.creation.box((1.0, 0.0, 0.5))  # zero-area side faces
    assert voxelize(flat_box, R).occupancy.sum() == R * R // 2
    segment = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0.5, 0, 0]], [[0, 1, 2]], process=False)
    assert voxelize(segment, R).occupancy.sum() <= R  # degenerate: may be empty, must not fail


def test_normalisation_and_invariance():
    parts = [
        trimesh.creation.box((1.0, 0.3, 0.4)),
        trimesh.creation.cylinder(0.2, 0.9).apply_translation([0.3, 0.4, 0]),
    ]
    mesh = trimesh.util.concatenate(parts)
    centre, scale = normalise_for_voxels(mesh)
    lo, hi = mesh.bounds
    np.testing.assert_allclose(centre, (lo + hi) / 2)
    assert scale == pytest.approx(1.0 / (hi - lo).max())
    # an unreferenced far-away vertex is ignored
    extra = trimesh.Trimesh(np.vstack([mesh.vertices, [[50.0, 50.0, 50.0]]]), mesh.faces, process=False)
    np.testing.assert_allclose(normalise_for_voxels(extra)[0], centre)
    a = voxelize(mesh, 24).occupancy
    moved = mesh.copy().apply_scale(7.0).apply_translation([10.0, -3.0, 2.0])
    b = voxelize(moved, 24).occupancy
    assert (a ^ b).sum() <= 0.005 * a.sum()
    np.testing.assert_array_equal(voxelize(mesh, 24).occupancy, a)  # deterministic


def test_bad_arguments():
    box = trimesh.creation.box()
    for r in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="resolution"):
            voxelize(box, r)
    with pytest.raises(ValueError, match="method"):
        voxelize(box, 8, method="parity")
    with pytest.raises(ValueError, match="face"):
        voxelize(trimesh.Trimesh(np.zeros((3, 3)), np.zeros((0, 3), dtype=int)), 8)
    with pytest.raises(ValueError, match="extent"):
        voxelize(trimesh.Trimesh(np.ones((3, 3)), [[0, 1, 2]], process=False), 8)


def assert_surface_covered(mesh: trimesh.Trimesh, occupancy: np.ndarray, r: int = R) -> None:
    """Every surface point lies in an occupied voxel or next to one (26-neighbourhood)."""
    pts = np.vstack([mesh.vertices, trimesh.sample.sample_surface(mesh, 4000, seed=0)[0]])
    idx = np.clip(np.floor(to_grid(mesh, pts, r)).astype(int), 0, r - 1)
    near = np.pad(occupancy, 1)
    hit = np.zeros(len(idx), dtype=bool)
    for d in np.array(np.meshgrid([0, 1, 2], [0, 1, 2], [0, 1, 2])).reshape(3, -1).T:
        hit |= near[idx[:, 0] + d[0], idx[:, 1] + d[1], idx[:, 2] + d[2]]
    assert hit.all(), f"{(~hit).sum()} surface points far from any occupied voxel"


def test_surface_is_always_covered():
    tri = trimesh.Trimesh([[0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.1, 0.7, 1.0]], [[0, 1, 2]], process=False)
    sheet = trimesh.creation.box((1.0, 0.5, 0.8))
    sheet.update_faces(sheet.face_normals[:, 2] < 0.5)  # open at the front
    rod = trimesh.creation.cylinder(0.01, 1.0).apply_transform(trimesh.transformations.rotation_matrix(0.7, [1, 1, 0]))
    for mesh in (tri, sheet, rod, trimesh.creation.icosphere(3)):
        assert_surface_covered(mesh, voxelize(mesh, R).occupancy)


@pytest.mark.shared_data
def test_real_modelnet_mesh(shared_data):
    mesh = trimesh.load(shared_data / "modelnet_off" / "toilet_0345.off", force="mesh")
    res = voxelize(mesh, R)
    assert res.used_fallback  # duplicated faces make it non-manifold
    assert_surface_covered(mesh, res.occupancy)
    assert 0.05 < res.occupancy.mean() < 0.6
