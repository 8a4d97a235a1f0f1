r"""Rooms -> 1 m x 1 m blocks -> the S3DIS 9-channel input, and block predictions -> whole-room labels.

The DGCNN S3DIS reference (Wang et al., TOG 2019, Sec. 5.3, following
PointNet's ``indoor3d_util.room2blocks``, Qi et al. 2017, Sec. 5.3 and
supplementary) cuts every room into vertical columns of ``block_size`` x
``block_size`` metres on the floor plane (z is up), slid with ``stride``,
samples ``n_points`` points per column and feeds each point as 9 channels

.. math::
    [\,x - c_x,\; y - c_y,\; z,\; r,\; g,\; b,\; x / X,\; y / Y,\; z / Z\,]

with :math:`(c_x, c_y)` the column centre, colours in :math:`[0, 1]`, the
room shifted to start at the origin and :math:`(X, Y, Z)` its extent (the
"normalised room coordinates").

Two cuttings:

* :func:`training_blocks`: every column with at least ``min_points`` points
  gives one block of ``n_points`` points drawn without replacement (with
  replacement when the column has fewer), as in the reference;
* :func:`evaluation_blocks`: every point of every column is used. A column's
  points are shuffled and split into chunks of ``n_points``; the last chunk is
  filled up with repeated points of the column, marked not ``valid``. With
  ``stride == block_size`` the columns tile the floor plan, so every point of
  the room is a valid point of exactly one block (tested);
  with a smaller stride a point is valid in several blocks and
  :func:`merge_block_scores` sums its class scores over them.

All functions are pure numpy and take the random generator explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Block", "block_input", "column_members", "evaluation_blocks", "merge_block_scores", "training_blocks"]


@dataclass(frozen=True)
class Block:
    """One block of a room: which room points it holds and where its column sits.

    Args:
        indices: int64 ``[n_points]`` positions of the block's points in the room arrays.
        valid: bool ``[n_points]``; False marks fill-up repeats (evaluation blocks only) that must not be scored.
        centre: ``(c_x, c_y)`` of the column, in the room's shifted frame.
    """

    indices: np.ndarray
    valid: np.ndarray
    centre: tuple[float, float]


def _check(block_size: float, stride: float, n_points: int) -> None:
    if not block_size > 0:
        raise ValueError(f"block_size must be > 0; got {block_size}")
    if not 0 < stride <= block_size:
        raise ValueError(f"stride must be in (0, block_size={block_size}]; got {stride}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer; got {n_points!r}")


def _origins(extent: float, block_size: float, stride: float) -> np.ndarray:
    # enough origins that the last column reaches the far wall (one column when the room is narrower)
    n = max(1, math.ceil(max(extent - block_size, 0.0) / stride - 1e-9) + 1)
    return np.arange(n) * stride


def column_members(xyz: np.ndarray, block_size: float, stride: float) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Point indices and centre of every non-empty column of a room (shifted so its minimum is the origin).

    With ``stride == block_size`` columns are half-open ``[o, o + block_size)`` except the last one of each
    axis, which is closed, so they partition the room's points exactly.
    """
    _check(block_size, stride, 1)
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise ValueError(f"xyz must be a non-empty [N, 3] array; got shape {xyz.shape}")
    shifted = xyz - xyz.min(axis=0)
    extent = shifted.max(axis=0)
    columns = []
    xs, ys = _origins(extent[0], block_size, stride), _origins(extent[1], block_size, stride)
    for i, ox in enumerate(xs):
        in_x = (shifted[:, 0] >= ox) & ((shifted[:, 0] < ox + block_size) | (i == len(xs) - 1))
        for j, oy in enumerate(ys):
            in_y = (shifted[:, 1] >= oy) & ((shifted[:, 1] < oy + block_size) | (j == len(ys) - 1))
            members = np.flatnonzero(in_x & in_y)
            if len(members):
                columns.append((members, (float(ox + block_size / 2), float(oy + block_size / 2))))
    return columns


def training_blocks(xyz: np.ndarray, block_size: float, stride: float, n_points: int, rng: np.random.Generator,
                    min_points: int = 100) -> list[Block]:
    """One block of ``n_points`` sampled points per column holding at least ``min_points`` points."""
    _check(block_size, stride, n_points)
    blocks = []
    for members, centre in column_members(xyz, block_size, stride):
        if len(members) < min_points:
            continue
        pick = rng.choice(len(members), n_points, replace=len(members) < n_points)
        blocks.append(Block(members[pick], np.ones(n_points, dtype=bool), centre))
    return blocks


def evaluation_blocks(xyz: np.ndarray, block_size: float, stride: float, n_points: int,
                      rng: np.random.Generator) -> list[Block]:
    """Blocks using every point of every column (see the module docstring); fill-ups are marked not valid."""
    _check(block_size, stride, n_points)
    blocks = []
    for members, centre in column_members(xyz, block_size, stride):
        order = members[rng.permutation(len(members))]
        for start in range(0, len(order), n_points):
            chunk = order[start:start + n_points]
            valid = np.ones(n_points, dtype=bool)
            if len(chunk) < n_points:
                fill = rng.choice(order, n_points - len(chunk), replace=len(order) < n_points - len(chunk))
                valid[len(chunk):] = False
                chunk = np.concatenate([chunk, fill])
            blocks.append(Block(chunk.astype(np.int64), valid, centre))
    return blocks


def block_input(xyz: np.ndarray, rgb: np.ndarray, block: Block, channels: int = 9) -> np.ndarray:
    """The network input of one block: ``[n_points, 9]`` (S3DIS convention, module docstring) or its first 3.

    Args:
        xyz: float ``[N, 3]`` room coordinates (z up), any origin.
        rgb: float ``[N, 3]`` colours in ``[0, 1]``.
        block: the block.
        channels: 9 (xyz centred on the column, rgb, normalised room xyz) or 3 (centred xyz only).
    """
    if channels not in (3, 9):
        raise ValueError(f"channels must be 3 or 9; got {channels}")
    lo = xyz.min(axis=0)
    extent = np.maximum(xyz.max(axis=0) - lo, 1e-6)
    p = xyz[block.indices] - lo
    local = p.copy()
    local[:, 0] -= block.centre[0]
    local[:, 1] -= block.centre[1]
    if channels == 3:
        return local.astype(np.float32)
    return np.concatenate([local, rgb[block.indices], p / extent], axis=1).astype(np.float32)


def merge_block_scores(n_room_points: int, blocks: list[Block], scores: list[np.ndarray]) -> np.ndarray:
    """Whole-room labels: per point, the argmax of its class scores summed over the blocks where it is valid.

    Args:
        n_room_points: N, points of the room.
        blocks: the room's evaluation blocks.
        scores: per block, float ``[n_points, K]`` class scores (e.g. softmax probabilities).

    Returns:
        int64 ``[N]`` predicted class of every point.

    Raises:
        ValueError: a point is valid in no block (the blocks do not cover the room).
    """
    if len(blocks) != len(scores) or not blocks:
        raise ValueError(f"need one score array per block and at least one block; got {len(blocks)} and {len(scores)}")
    k = scores[0].shape[1]
    total = np.zeros((n_room_points, k), dtype=np.float64)
    hits = np.zeros(n_room_points, dtype=np.int64)
    for block, score in zip(blocks, scores):
        idx = block.indices[block.valid]
        np.add.at(total, idx, score[block.valid])
        np.add.at(hits, idx, 1)
    if (hits == 0).any():
        raise ValueError(f"{int((hits == 0).sum())} of {n_room_points} room points are in no evaluation block")
    return total.argmax(axis=1).astype(np.int64)
