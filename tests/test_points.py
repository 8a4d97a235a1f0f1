"""The points modality: sampling on the surface, FPS, unit-sphere normalisation, labels."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.modalities.points import (
    farthest_point_indices, normalize_unit_sphere, sample_mesh_points, subsample_points,
)


def test_points_of_a_cube_lie_on_its_faces():
    cube = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    out = sample_mesh_points(cube, 512, np.random.default_rng(0))
    # bbox-centred and scaled: the cube's faces sit at +-h, with h*sqrt(3) just above 1 (the farthest
    # sampled point is near, not exactly at, a corner)
    h = np.abs(out["points"]).max()
    assert 1 / np.sqrt(3) <= h < 1.05 / np.sqrt(3)
    pts = out["points"] / h
    # every point has one coordinate at +-1 (on a face) and all lie within the cube
    assert np.all(np.abs(pts) <= 1 + 1e-5)
    assert np.allclose(np.abs(pts).max(axis=1), 1.0, atol=1e-5)
    # normals are the outward face normals: +-e_k where |p_k| = 1
    k = np.abs(pts).argmax(axis=1)
    assert np.allclose(out["normals"][np.arange(len(pts)), k], np.sign(pts[np.arange(len(pts)), k]), atol=1e-5)


def test_normalisation_centre_and_radius():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(200, 3)) * [3, 1, 0.5] + [10, -4, 2]
    pts, centre, scale = normalize_unit_sphere(raw)
    assert np.isclose(np.linalg.norm(pts, axis=1).max(), 1.0, atol=1e-6)
    assert np.allclose((pts.min(0) + pts.max(0)) / 2, 0, atol=1e-6)
    assert np.allclose(pts * scale + centre, raw, atol=1e-4)
    with pytest.raises(ValueError):
        normalize_unit_sphere(np.zeros((0, 3)))


def test_fps_is_spread_and_deterministic():
    rng = np.random.default_rng(2)
    # a dense blob plus 4 far corners: FPS must pick the corners among the first samples
    blob = rng.normal(0, 0.01, size=(1000, 3))
    corners = np.array([[5, 0, 0], [-5, 0, 0], [0, 5, 0], [0, -5, 0]], dtype=float)
    pts = np.concatenate([blob, corners])
    idx = farthest_point_indices(pts, 6, start=0)
    assert set(range(1000, 1004)) <= set(idx.tolist())
    assert np.array_equal(idx, farthest_point_indices(pts, 6, start=0))
    assert len(farthest_point_indices(pts[:3], 5)) == 5  # fewer points than asked: wraps around


@pytest.mark.parametrize("n_cloud", [6, 50, 127])
def test_fps_of_clouds_smaller_than_the_bucket_tree(n_cloud):
    # fpsample's bucket FPS asserts 2**h <= n_pts (h = 7): a cloud of fewer than 128 points that
    # still has more than n_points used to crash the cache build with an AssertionError
    rng = np.random.default_rng(n_cloud)
    cloud = np.concatenate([rng.normal(0, 0.01, size=(n_cloud - 2, 3)), [[4.0, 0, 0], [-4.0, 0, 0]]])
    idx = farthest_point_indices(cloud, 4, start=0)
    assert len(idx) == 4 and len(set(idx.tolist())) == 4
    assert {n_cloud - 2, n_cloud - 1} <= set(idx.tolist())  # the two far points come first
    assert np.array_equal(idx, farthest_point_indices(cloud, 4, start=0))
    assert subsample_points(cloud, 4)["points"].shape == (4, 3)


def test_part_labels_follow_faces_and_sampling_is_seeded():
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = trimesh.creation.box(extents=(1, 1, 1))
    b.apply_translation([3, 0, 0])
    mesh = trimesh.util.concatenate([a, b])
    face_part = np.r_[np.zeros(len(a.faces), int), np.full(len(b.faces), 5)]
    out = sample_mesh_points(mesh, 300, np.random.default_rng(3), face_part=face_part)
    x = out["points"][:, 0]
    assert set(np.unique(out["point_labels"])) == {0, 5}
    assert np.all(out["point_labels"][x < 0] == 0) and np.all(out["point_labels"][x > 0] == 5)
    again = sample_mesh_points(mesh, 300, np.random.default_rng(3), face_part=face_part)
    assert np.array_equal(out["points"], again["points"])
    assert out["points"].dtype == np.float32 and out["point_labels"].dtype == np.int64


def test_noise_and_bad_meshes():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    clean = sample_mesh_points(sphere, 256, np.random.default_rng(4))
    noisy = sample_mesh_points(sphere, 256, np.random.default_rng(4), noise_std=0.05)
    radial = np.linalg.norm(noisy["points"], axis=1) - np.linalg.norm(clean["points"], axis=1)
    assert 0.02 < radial.std() < 0.08
    empty = trimesh.Trimesh(vertices=np.zeros((3, 3)), faces=[[0, 1, 2]], process=False)
    with pytest.raises(DataFileError, match="no faces with positive area"):
        sample_mesh_points(empty, 16, np.random.default_rng(0), name="empty.off")


def test_subsample_points_for_point_datasets():
    rng = np.random.default_rng(5)
    pts = rng.uniform(-2, 2, size=(2048, 3))
    out = subsample_points(pts, 1024, normals=pts / np.linalg.norm(pts, axis=1, keepdims=True),
                           labels=np.arange(2048))
    assert out["points"].shape == (1024, 3) and np.isclose(np.linalg.norm(out["points"], axis=1).max(), 1)
    assert len(np.unique(out["point_labels"])) == 1024
