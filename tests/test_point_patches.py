"""Point-MAE's patches (methods/backbones/point_patches.py): FPS centres, kNN groups, random masking, mini-PointNet."""

from __future__ import annotations

import pytest
import torch

from ssl3d.methods.backbones.knn import knn_indices
from ssl3d.methods.backbones.point_patches import (
    PatchEmbedding, farthest_point_subset, fps_indices, group_patches, random_patch_mask,
)


def _cloud(b: int = 2, n: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def _greedy_fps(cloud: torch.Tensor, m: int, start: int) -> list[int]:
    """Farthest-point sampling by its definition: from ``start``, always the point farthest from those taken."""
    picked, dist = [start], ((cloud - cloud[start]) ** 2).sum(-1)
    while len(picked) < m:
        nxt = int(dist.argmax())
        picked.append(nxt)
        dist = torch.minimum(dist, ((cloud - cloud[nxt]) ** 2).sum(-1))
    return picked


# fpsample's plain FPS below 128 points (it starts at point 0), its bucket kd-tree above (whose first point is
# fpsample's choice: its start_idx indexes the tree's order); either way every next point is the farthest one
@pytest.mark.parametrize("n, m", [(50, 8), (300, 8), (1024, 64)])
def test_fps_centres_are_greedy_farthest_points_of_the_cloud(n, m):
    points = _cloud(n=n)
    idx = fps_indices(points, m)
    assert idx.shape == (2, m) and idx.dtype == torch.long
    for cloud, row in zip(points, idx):
        assert row.tolist() == _greedy_fps(cloud, m, int(row[0]))
    if n < 128:
        assert idx[:, 0].tolist() == [0, 0]


def test_groups_are_the_k_nearest_points_of_each_centre_minus_the_centre():
    points = _cloud(n=40)
    patches, centres = group_patches(points, num_groups=6, group_size=5)
    assert patches.shape == (2, 6, 5, 3) and centres.shape == (2, 6, 3)
    for b in range(2):
        for g in range(6):
            # the centre is a point of the cloud
            assert (points[b] == centres[b, g]).all(dim=1).any()
            # brute force: the 5 nearest points (a continuous random cloud has no ties)
            order = ((points[b] - centres[b, g]) ** 2).sum(-1).argsort()[:5]
            assert torch.allclose(patches[b, g], points[b, order] - centres[b, g])
    assert torch.equal(patches[:, :, 0], torch.zeros(2, 6, 3))  # each centre is its own first neighbour


def test_knn_rows_of_query_points_equal_the_full_rows():
    points = _cloud(n=64)
    rows = torch.tensor([[3, 0, 63, 17], [5, 5, 40, 1]])
    full = knn_indices(points, 7)
    rows_of_full = full.gather(1, rows[..., None].expand(-1, -1, 7))
    assert torch.equal(knn_indices(points, 7, query_index=rows, chunk_size=3), rows_of_full)
    with pytest.raises(ValueError, match="query_index"):
        knn_indices(points, 7, query_index=torch.tensor([[64]]).expand(2, 1))


def test_grouping_refuses_clouds_too_small_for_the_patches():
    with pytest.raises(ValueError, match="num_groups"):
        group_patches(_cloud(n=10), num_groups=4, group_size=12)


def test_farthest_point_subset_keeps_small_clouds_whole():
    points = _cloud(n=30)
    assert farthest_point_subset(points, 30) is points
    subset = farthest_point_subset(points, 10)
    assert subset.shape == (2, 10, 3)
    assert torch.equal(subset, points.gather(1, fps_indices(points, 10)[..., None].expand(-1, -1, 3)))


def test_mask_hides_exactly_floor_ratio_g_patches_per_cloud():
    mask = random_patch_mask(16, 64, 0.6)
    assert mask.dtype == torch.bool and mask.shape == (16, 64)
    assert mask.sum(dim=1).tolist() == [38] * 16  # int(0.6 * 64)
    assert random_patch_mask(3, 10, 0.6).sum(dim=1).tolist() == [6, 6, 6]


def test_masks_differ_between_clouds_and_repeat_under_a_seed():
    first = random_patch_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(3))
    assert len({tuple(row.tolist()) for row in first}) == 8
    assert torch.equal(first, random_patch_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(first, random_patch_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(4)))
    torch.manual_seed(5)
    global_draw = random_patch_mask(8, 64, 0.6)
    torch.manual_seed(5)
    assert torch.equal(global_draw, random_patch_mask(8, 64, 0.6))


def test_mask_ratio_out_of_range_raises():
    with pytest.raises(ValueError, match="mask ratio"):
        random_patch_mask(2, 8, 1.0)


def _official_layout(embed: PatchEmbedding, patches: torch.Tensor) -> torch.Tensor:
    """The official Encoder.forward: 1x1 Conv1d / BatchNorm1d on [BG, C, k], pooled concatenated first."""
    b, g, k, _ = patches.shape
    x = embed.first_conv(patches.reshape(b * g, k, 3).transpose(1, 2))
    x = torch.cat([x.amax(dim=2, keepdim=True).expand(-1, -1, k), x], dim=1)
    return embed.second_conv(x).amax(dim=2).view(b, g, -1)


@pytest.mark.parametrize("train", [False, True])
def test_patch_embedding_equals_the_official_conv_layout(train):
    torch.manual_seed(0)
    embed = PatchEmbedding(24, (8, 16, 32))
    for module in embed.modules():  # non-trivial running statistics for eval mode
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    patches = torch.randn(3, 5, 7, 3)
    embed.train(train)
    reference = _official_layout(embed, patches)
    assert torch.allclose(embed(patches), reference, atol=1e-5)
