"""Surfaces from occupancy grids, grid resampling and the Z-up -> Y-up grid rotation, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.modelnet import z_up_to_y_up, z_up_to_y_up_grid
from ssl3d.datasets.modalities.surface import occupancy_surface
from ssl3d.datasets.modalities.voxelize import resample_grid


def ball(d: int, radius: float) -> np.ndarray:
    c = np.arange(d) + 0.5 - d / 2
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    return x**2 + y**2 + z**2 <= radius**2


def test_voxelised_sphere_gives_a_watertight_outward_surface_of_the_ball_volume():
    mesh = occupancy_surface(ball(32, 12.0))
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 12**3, rel=0.02)  # positive: outward faces
    assert np.allclose(mesh.bounds, [[-12.5, -12.5, -12.5], [12.5, 12.5, 12.5]], atol=0.5)


def test_box_touching_the_grid_border_is_closed_with_its_volume_and_extent():
    grid = np.zeros((16, 16, 16), dtype=bool)
    grid[0:6, 0:10, 0:16] = True  # touches three faces of the grid: padding closes it
    mesh = occupancy_surface(grid)
    assert mesh.is_watertight
    # faces lie half-way between occupied and empty centres: the box's true faces, except near edges (rounded)
    np.testing.assert_allclose(mesh.bounds, [[-8, -8, -8], [-2, 2, 8]], atol=1e-6)
    assert mesh.volume == pytest.approx(6 * 10 * 16, rel=0.05)


def test_one_voxel_rods_and_single_voxels_survive_smoothing():
    rod = np.zeros((8, 8, 8), dtype=bool)
    rod[3, :, 3] = True
    mesh = occupancy_surface(rod)
    assert mesh.is_watertight and mesh.body_count == 1 and mesh.volume > 0.2 * 8
    assert mesh.extents[1] > 7.0  # the rod's full length
    single = np.zeros((4, 4, 4), dtype=bool)
    single[1, 2, 1] = True
    one = occupancy_surface(single)
    assert one.is_watertight and one.volume > 0
    np.testing.assert_allclose(one.centroid, [1.5 - 2, 2.5 - 2, 1.5 - 2], atol=1e-6)


def test_two_boxes_one_voxel_apart_stay_two_bodies():
    grid = np.zeros((12, 12, 12), dtype=bool)
    grid[1:5, 1:11, 1:11] = True
    grid[6:10, 1:11, 1:11] = True  # one empty voxel layer between them
    assert occupancy_surface(grid).body_count == 2


def test_empty_grid_is_a_data_file_error_naming_the_file():
    with pytest.raises(DataFileError, match="chair_0001.binvox: occupancy grid is empty"):
        occupancy_surface(np.zeros((4, 4, 4)), name="chair_0001.binvox")


def test_resample_identity_max_pool_and_nearest():
    rng = np.random.default_rng(0)
    grid = rng.random((8, 8, 8)) < 0.05
    np.testing.assert_array_equal(resample_grid(grid, 8), grid)
    pooled = resample_grid(grid, 4)  # factor 2: any occupied voxel of each 2x2x2 block
    expected = np.array([[[grid[2 * i:2 * i + 2, 2 * j:2 * j + 2, 2 * k:2 * k + 2].any() for k in range(4)]
                          for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(pooled, expected)
    lone = np.zeros((8, 8, 8), dtype=bool)
    lone[5, 0, 7] = True
    assert np.argwhere(resample_grid(lone, 2)).tolist() == [[1, 0, 1]]  # a single voxel is never lost
    nearest = resample_grid(grid, 3)  # 8 -> 3: source index floor((i + 1/2) * 8 / 3) = 1, 4, 6
    np.testing.assert_array_equal(nearest, grid[np.ix_([1, 4, 6], [1, 4, 6], [1, 4, 6])])
    np.testing.assert_array_equal(resample_grid(grid, 16), grid.repeat(2, 0).repeat(2, 1).repeat(2, 2))
    with pytest.raises(ValueError, match="cubic"):
        resample_grid(np.zeros((2, 3, 2)), 2)


def test_grid_rotation_moves_voxel_centres_like_the_mesh_rotation():
    rng = np.random.default_rng(1)
    grid = rng.random((6, 6, 6)) < 0.2
    rotated = z_up_to_y_up_grid(grid)
    centre = lambda g: np.argwhere(g) + 0.5 - 3.0  # noqa: E731  voxel centres about the grid centre
    moved = z_up_to_y_up(centre(grid))
    expected = sorted(map(tuple, np.round(moved, 6)))
    assert sorted(map(tuple, np.round(centre(rotated), 6))) == expected
    # a flat top at high file z ends up at high y (axis 1)
    top = np.zeros((4, 4, 4), dtype=bool)
    top[:, :, 3] = True
    assert z_up_to_y_up_grid(top)[:, 3, :].all() and z_up_to_y_up_grid(top).sum() == 16
