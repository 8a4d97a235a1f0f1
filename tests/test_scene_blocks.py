"""Block cutting of rooms and the whole-room merge (datasets/scene_blocks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ssl3d.datasets.scene_blocks import (
    Block, block_input, column_members, evaluation_blocks, merge_block_scores, training_blocks,
)
from ssl3d.datasets.synth_scenes.rooms import generate_room


def _room(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([0.3, -1.0, 0.0], [4.1, 2.5, 3.0], (n, 3))  # 3.8 m x 3.5 m: the last columns are partial


@pytest.mark.parametrize("n_points", [64, 100, 4096])
def test_evaluation_blocks_cover_every_point_exactly_once(n_points: int) -> None:
    xyz = _room()
    blocks = evaluation_blocks(xyz, 1.0, 1.0, n_points, np.random.default_rng(1))
    valid = np.concatenate([b.indices[b.valid] for b in blocks])
    assert np.array_equal(np.sort(valid), np.arange(len(xyz)))  # each point valid in exactly one block
    assert all(len(b.indices) == n_points for b in blocks)
    # fill-up points repeat points of the block's own column
    shifted = xyz - xyz.min(axis=0)
    for b in blocks:
        assert np.all(np.abs(shifted[b.indices, :2] - b.centre) <= 0.5 + 1e-9)


def test_evaluation_blocks_of_a_generated_room_cover_it() -> None:
    points, labels = generate_room(5, 0, density=30)
    blocks = evaluation_blocks(points[:, :3], 1.0, 1.0, 128, np.random.default_rng(0))
    valid = np.concatenate([b.indices[b.valid] for b in blocks])
    assert np.array_equal(np.sort(valid), np.arange(len(points)))


def test_columns_partition_the_floor_plan() -> None:
    xyz = _room()
    cols = column_members(xyz, 1.0, 1.0)
    assert len(cols) == 4 * 4  # ceil(3.8) x ceil(3.5) columns
    assert np.array_equal(np.sort(np.concatenate([m for m, _ in cols])), np.arange(len(xyz)))
    shifted = xyz - xyz.min(axis=0)
    for members, (cx, cy) in cols:  # every member lies in its column (the last column is closed)
        assert np.all(np.abs(shifted[members, 0] - cx) <= 0.5 + 1e-9)
        assert np.all(np.abs(shifted[members, 1] - cy) <= 0.5 + 1e-9)


def test_overlapping_columns_merge_summed_scores() -> None:
    xyz = _room(800)
    blocks = evaluation_blocks(xyz, 1.0, 0.5, 50, np.random.default_rng(0))
    hits = np.zeros(len(xyz), int)
    for b in blocks:
        np.add.at(hits, b.indices[b.valid], 1)
    assert hits.min() >= 1 and hits.max() > 1  # overlap: interior points are in up to 4 columns
    # scores that vote class 1 everywhere except one block voting class 0 strongly for its points
    scores = [np.tile([0.0, 1.0], (50, 1)) for _ in blocks]
    scores[0] = np.tile([10.0, 0.0], (50, 1))
    pred = merge_block_scores(len(xyz), blocks, scores)
    first = blocks[0].indices[blocks[0].valid]
    assert np.all(pred[first] == 0)
    assert np.all(np.delete(pred, first) == 1)


def test_merge_names_uncovered_points() -> None:
    block = Block(np.array([0, 1]), np.array([True, False]), (0.5, 0.5))
    with pytest.raises(ValueError, match="1 of 2 room points are in no evaluation block"):
        merge_block_scores(2, [block], [np.ones((2, 3))])


def test_training_blocks_sample_dense_columns_only() -> None:
    xyz = np.concatenate([_room(2000), [[10.0, 10.0, 0.0]]])  # a lone point makes sparse columns
    blocks = training_blocks(xyz, 1.0, 1.0, 256, np.random.default_rng(0), min_points=20)
    assert blocks and all(len(b.indices) == 256 and b.valid.all() for b in blocks)
    assert len(xyz) - 1 not in np.concatenate([b.indices for b in blocks])
    again = training_blocks(xyz, 1.0, 1.0, 256, np.random.default_rng(0), min_points=20)
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(blocks, again))


def test_block_input_is_the_s3dis_nine_channels() -> None:
    xyz = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 2.0], [1.5, 2.5, 1.0]])
    rgb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    block = Block(np.array([2, 0]), np.ones(2, bool), (0.5, 0.5))
    x = block_input(xyz, rgb, block, channels=9)
    # room shifted to the origin: point 2 -> (0.5, 0.5, 1.0); extent (2, 2, 2)
    assert np.allclose(x[0], [0.0, 0.0, 1.0, 0, 0, 1, 0.25, 0.25, 0.5])
    assert np.allclose(x[1], [-0.5, -0.5, 0.0, 1, 0, 0, 0.0, 0.0, 0.0])
    assert np.allclose(block_input(xyz, rgb, block, channels=3), x[:, :3])
    with pytest.raises(ValueError, match="channels must be 3 or 9"):
        block_input(xyz, rgb, block, channels=6)


def test_bad_block_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="stride must be in"):
        evaluation_blocks(_room(10), 1.0, 1.5, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_points must be a positive integer"):
        training_blocks(_room(10), 1.0, 1.0, 0, np.random.default_rng(0))
