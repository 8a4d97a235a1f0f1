"""Tests of camera rigs, the pinhole projection and ray-cast renders against analytic answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import trimesh

from ssl3d.datasets.modalities.cameras import (
    CAMERA_DISTANCE,
    TAN_HALF_FOV,
    camera_rays,
    camera_rig,
    look_at,
    project_points,
)
from ssl3d.datasets.modalities.render import (
    AMBIENT,
    FILL,
    KEY,
    normalise_unit_sphere,
    render_views,
    silhouette,
)

D = CAMERA_DISTANCE


# ----------------------------------------------------------------------------- rigs


def test_ring12_and_first8_geometry():
    ring = camera_rig("ring12")
    assert ring.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)
    np.testing.assert_allclose(np.degrees(np.arcsin(ring[:, 1])), 30.0)  # elevation above the XZ plane
    azimuth = np.degrees(np.arctan2(ring[:, 0], ring[:, 2]))
    np.testing.assert_allclose(np.mod(np.diff(azimuth), 360.0), 30.0)
    assert azimuth[0] == pytest.approx(0.0)
    np.testing.assert_array_equal(camera_rig("first8"), ring[:8])


def test_dodeca20_is_a_regular_dodecahedron():
    pts = camera_rig("dodeca20")
    assert pts.shape == (20, 3)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0)
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    nearest = np.sort(dist, axis=1)[:, 1:5]
    # edge length of a regular dodecahedron with circumradius 1
    edge = 4.0 / (math.sqrt(3.0) * (1.0 + math.sqrt(5.0)))
    np.testing.assert_allclose(nearest[:, :3], edge, rtol=1e-12)  # 3 neighbours each, equidistant
    assert (nearest[:, 3] > edge * 1.5).all()
    assert len({tuple(np.round(p, 9)) for p in pts}) == 20


def test_random_rig_ranges_and_determinism():
    a = camera_rig("random", n_views=500, seed=3)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0)
    azimuth = np.mod(np.degrees(np.arctan2(a[:, 0], a[:, 2])), 360.0)
    polar = np.degrees(np.arccos(a[:, 1]))
    assert azimuth.min() >= 10.0 and azimuth.max() <= 340.0
    assert polar.min() >= 10.0 and polar.max() <= 165.0
    # the ranges are actually used, not a corner of them
    assert azimuth.min() < 20.0 and azimuth.max() > 330.0 and polar.min() < 20 and polar.max() > 155
    np.testing.assert_array_equal(a, camera_rig("random", n_views=500, seed=3))
    assert not np.allclose(a, camera_rig("random", n_views=500, seed=4))


def test_rig_bad_arguments():
    with pytest.raises(ValueError, match="n_views"):
        camera_rig("random")
    with pytest.raises(ValueError, match="n_views"):
        camera_rig("random", n_views=0)
    with pytest.raises(ValueError, match="exactly 12"):
        camera_rig("ring12", n_views=8)
    with pytest.raises(ValueError, match="ring12"):
        camera_rig("ring24")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- projection


@pytest.mark.parametrize("eye", [(0.0, 0.0, 2.5), (1.0, 2.0, -0.5), (0.0, 3.0, 0.0), (0.0, -2.0, 0.0)])
def test_look_at_is_a_rotation_facing_the_target(eye):
    rot = look_at(np.array(eye))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    forward = -np.asarray(eye) / np.linalg.norm(eye)
    np.testing.assert_allclose(rot @ forward, [0.0, 0.0, -1.0], atol=1e-12)
    if abs(forward[1]) < 0.99:  # world up shows as camera up
        up_cam = rot @ np.array([0.0, 1.0, 0.0])
        assert abs(up_cam[0]) < 1e-12 and up_cam[1] > 0


def test_projection_inverts_pixel_rays():
    cam = camera_rig("ring12")[4]
    for zoom, offset in [(1.0, (0.0, 0.0)), (1.3, (0.1, -0.05))]:
        origins, dirs = camera_rays(cam[None], 9, zoom=zoom, offset=offset)
        points = origins[0] + 1.7 * dirs[0]  # a point on each pixel's ray
        uv, depth = project_points(points.reshape(-1, 3), cam, 9, zoom=zoom, offset=offset)
        j, i = np.meshgrid(np.arange(9), np.arange(9))
        np.testing.assert_allclose(uv[:, 0], j.ravel() + 0.5, atol=1e-9)
        np.testing.assert_allclose(uv[:, 1], i.ravel() + 0.5, atol=1e-9)
        assert (depth > 0).all()
    # the unit sphere fits in the frame: its tangent cone is inside the field of view
    assert 1.0 / math.sqrt(D**2 - 1.0) < TAN_HALF_FOV


# ----------------------------------------------------------------------------- renders


def box_rectangle(extents, size, zoom=1.0, offset=(0.0, 0.0)):
    """Analytic silhouette of a centred box seen head-on from +Z: its front face."""
    half = np.asarray(extents) / 2.0
    scale = 1.0 / np.linalg.norm(half)  # unit-sphere normalisation of a centred box
    depth = D - half[2] * scale  # the front face is the nearest, hence largest, rectangle
    x_lim = half[0] * scale / depth / TAN_HALF_FOV * zoom
    y_lim = half[1] * scale / depth / TAN_HALF_FOV * zoom
    ndc = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    cols = np.abs(ndc - offset[0]) < x_lim
    rows = np.abs(-ndc - offset[1]) < y_lim
    # no pixel centre within 1e-6 of an edge, so the answer is unambiguous
    assert np.min(np.abs(np.abs(ndc - offset[0]) - x_lim)) > 1e-6
    assert np.min(np.abs(np.abs(-ndc - offset[1]) - y_lim)) > 1e-6
    return rows[:, None] & cols[None, :]


@pytest.mark.parametrize("zoom, offset", [(1.0, (0.0, 0.0)), (1.3, (0.1, -0.07)), (0.8, (-0.05, 0.12))])
def test_box_silhouette_matches_projection(zoom, offset):
    extents = (1.0, 0.6, 0.45)
    box = trimesh.creation.box(extents).apply_translation([5.0, 1.0, -2.0])  # normalisation recentres it
    sil = silhouette(box, np.array([0.0, 0.0, 1.0]), 101, zoom=zoom, offset=offset)
    assert sil.dtype == bool and sil.shape == (101, 101)
    expected = box_rectangle(extents, 101, zoom, offset)
    np.testing.assert_array_equal(sil, expected)
    assert 0 < expected.sum() < expected.size


def test_grey_shading_matches_lambert_with_two_lights():
    box = trimesh.creation.box((1.0, 0.8, 0.6))
    # head-on: only the front face (camera-frame normal +z) is visible
    img = render_views(box, np.array([[0.0, 0.0, 1.0]]), 64)[0]
    key = np.array([-1.0, 1.0, 2.0]) / math.sqrt(6.0)
    front = AMBIENT + KEY * max(key[2], 0) + FILL * max(-key[2], 0)
    fg = img != 255
    assert set(np.unique(img[fg])) == {round(front * 255)}
    np.testing.assert_array_equal(fg, box_rectangle((1.0, 0.8, 0.6), 64))
    # an oblique camera: every visible face has its own hand-computed grey; the
    # +x face is seen at 70 degrees on the right, where the key light misses it
    cam = np.array([0.34, 0.2, 0.92])
    cam /= np.linalg.norm(cam)
    img = render_views(box, cam[None], 96)[0]
    rot = look_at(cam * D)
    expected = set()
    signs = []
    half = np.array([0.5, 0.4, 0.3])
    half_n = half / np.linalg.norm(half)  # the box after unit-sphere normalisation
    for n in np.vstack([np.eye(3), -np.eye(3)]):
        if n @ (cam * D) > np.abs(n) @ half_n:  # the eye is outside that face's plane: visible
            ndl = (rot @ n) @ key
            signs.append(ndl)
            expected.add(round((AMBIENT + KEY * max(ndl, 0) + FILL * max(-ndl, 0)) * 255))
    assert min(signs) < 0 < max(signs)  # both lights are exercised
    assert set(np.unique(img)) - {255} == expected
    # inconsistent winding does not matter: normals are turned towards the camera
    flipped = box.copy()
    flipped.invert()
    np.testing.assert_array_equal(render_views(flipped, cam[None], 96)[0], img)


def test_depth_is_monotone_in_distance():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    size = 64
    depth_img = render_views(sphere, np.array([[0.0, 0.0, 1.0]]), size, "depth")[0]
    origins, dirs = camera_rays(np.array([[0.0, 0.0, 1.0]]), size)
    o, d = origins[0].reshape(-1, 3), dirs[0].reshape(-1, 3)
    # analytic ray / unit sphere intersection: |o + t d| = 1
    b = np.einsum("ij,ij->i", o, d)
    disc = b**2 - (np.einsum("ij,ij->i", o, o) - 1.0)
    hit = disc > 1e-2  # away from the rim, where the faceted sphere differs
    t = -b[hit] - np.sqrt(disc[hit])
    z = t * -d[hit, 2]  # depth along the optical axis (-z)
    expected = 1 + np.rint((D + 1 - z) / 2 * 254)
    got = depth_img.reshape(-1)[hit].astype(float)
    assert np.abs(got - expected).max() <= 1
    assert hit.sum() > 2000
    assert (depth_img.reshape(-1)[disc < -1e-3] == 0).all()  # background
    # two boxes at different distances: the nearer one is brighter everywhere
    near = trimesh.creation.box((0.4, 0.4, 0.4)).apply_translation([-0.4, 0.0, 0.5])
    far = trimesh.creation.box((0.4, 0.4, 0.4)).apply_translation([0.4, 0.0, -0.5])
    img = render_views(trimesh.util.concatenate([near, far]), np.array([[0.0, 0.0, 1.0]]), 64, "depth")[0]
    left, right = img[:, :32], img[:, 32:]
    assert left[left > 0].min() > right[right > 0].max()


def test_views_shapes_dtypes_ranges_and_differences():
    parts = [
        trimesh.creation.box((1.0, 0.3, 0.4)),
        trimesh.creation.cylinder(0.15, 0.8).apply_translation([0.35, 0.4, 0.1]),
        trimesh.creation.icosphere(2, radius=0.25).apply_translation([-0.4, 0.3, -0.1]),
    ]
    shape = trimesh.util.concatenate(parts)
    cams = camera_rig("ring12")
    grey = render_views(shape, cams, 137)
    depth = render_views(shape, cams, 137, shading="depth")
    for img in (grey, depth):
        assert img.shape == (12, 137, 137) and img.dtype == np.uint8
    fg = grey != 255
    np.testing.assert_array_equal(fg, depth > 0)  # same silhouettes
    assert grey[fg].min() >= round(AMBIENT * 255) and grey[fg].max() <= round((AMBIENT + KEY) * 255)
    assert ((fg.sum(axis=(1, 2)) > 500) & (fg.sum(axis=(1, 2)) < 0.6 * 137**2)).all()
    for i, j in itertools.combinations(range(12), 2):
        assert (grey[i] != grey[j]).mean() > 0.01, (i, j)
    # a sphere looks the same from everywhere (up to its facets, lights move with the camera)
    ball = render_views(trimesh.creation.icosphere(4), cams[[0, 5]], 64).astype(int)
    np.testing.assert_array_equal(ball[0] == 255, ball[1] == 255)
    assert np.abs(ball[0] - ball[1]).mean() < 3


def test_render_invariant_to_scale_and_translation_and_tracks_mesh_edits():
    mesh = trimesh.util.concatenate(
        [trimesh.creation.box((1.0, 0.3, 0.4)), trimesh.creation.cone(0.3, 0.6).apply_translation([0.3, 0.2, 0])]
    )
    cams = camera_rig("first8")
    a = render_views(mesh, cams, 48)
    moved = mesh.copy().apply_scale(13.0).apply_translation([100.0, -40.0, 7.0])
    assert (render_views(moved, cams, 48) != a).mean() < 0.002
    centre, scale = normalise_unit_sphere(moved)
    np.testing.assert_allclose(centre, moved.bounds.mean(axis=0))
    assert np.linalg.norm((moved.vertices - centre) * scale, axis=1).max() == pytest.approx(1.0)
    # editing the mesh in place must not reuse a stale ray-casting scene
    mesh.vertices[:, 0] *= 0.3
    assert (render_views(mesh, cams, 48) != a).mean() > 0.01


def test_render_bad_arguments():
    box = trimesh.creation.box()
    cams = camera_rig("first8")
    with pytest.raises(ValueError, match="shading"):
        render_views(box, cams, 32, shading="phong")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size"):
        render_views(box, cams, 0)
    with pytest.raises(ValueError, match="cameras"):
        render_views(box, np.zeros((4, 2)), 32)
    with pytest.raises(ValueError, match="non-zero"):
        render_views(box, np.zeros((1, 3)), 32)
    with pytest.raises(ValueError, match="background"):
        render_views(box, cams, 32, background=300)
    with pytest.raises(ValueError, match="zoom"):
        silhouette(box, cams[0], 32, zoom=0.0)
    with pytest.raises(ValueError, match="face"):
        render_views(trimesh.Trimesh(np.zeros((3, 3)), np.zeros((0, 3), dtype=int)), cams, 32)


@pytest.mark.shared_data
def test_real_mesh_vertices_project_into_the_silhouette(shared_data):
    mesh = trimesh.load(shared_data / "modelnet_off" / "toilet_0345.off", force="mesh")
    centre, scale = normalise_unit_sphere(mesh)
    verts = (mesh.vertices - centre) * scale
    cams = camera_rig("ring12")
    views = render_views(mesh, cams, 137)
    for cam, img in zip(cams[::3], views[::3]):
        uv, depth = project_points(verts, cam, 137)
        assert (depth > 0).all() and (uv > 0).all() and (uv < 137).all()  # the whole shape is in frame
        fg = np.pad(img != 255, 1)
        near = np.zeros(len(uv), dtype=bool)
        col, row = np.floor(uv).astype(int).T
        for di, dj in itertools.product((0, 1, 2), repeat=2):  # within one pixel of the silhouette
            near |= fg[row + di, col + dj]
        assert near.all()


def test_numpy_fallback_caster_agrees_with_embree(monkeypatch):
    from ssl3d.datasets.modalities import render

    mesh = trimesh.creation.icosphere(2)
    rng = np.random.default_rng(0)
    origins = np.tile([0.0, 0.0, 3.0], (200, 1))
    dirs = rng.normal(size=(200, 3)) * 0.3 + [0.0, 0.0, -1.0]
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    fast = render.RayCaster(mesh.vertices, mesh.faces)
    monkeypatch.setattr(render, "_rtcore_scene", None)  # as where embreex is not installed
    slow = render.RayCaster(mesh.vertices, mesh.faces)
    f1, t1 = fast.first_hit(origins, dirs)
    f2, t2 = slow.first_hit(origins, dirs)
    np.testing.assert_array_equal(f1, f2)
    assert 20 < (f1 >= 0).sum() < 200
    np.testing.assert_allclose(t1[f1 >= 0], t2[f2 >= 0], atol=1e-5)
    assert np.isinf(t2[f2 < 0]).all()
    ray1, face1, d1 = fast.all_hits(origins, dirs)
    ray2, face2, d2 = slow.all_hits(origins, dirs)
    np.testing.assert_array_equal(ray1, ray2)
    np.testing.assert_allclose(d1, d2, atol=1e-5)
    assert np.bincount(ray1).max() == 2  # in and out of the sphere
