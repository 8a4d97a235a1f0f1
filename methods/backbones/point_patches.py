r"""Point patches for masked point modelling (Point-MAE, Pang et al., ECCV 2022, Sec. 3.1).

A cloud becomes :math:`G` patches: centres by farthest-point sampling (Eq. 1), each centre's
:math:`k` nearest points (Eq. 2) expressed relative to it; a random subset of the patches is
masked per cloud; a mini-PointNet turns every patch into a token. Farthest-point sampling is the
data pipeline's (``fpsample``, :func:`ssl3d.datasets.modalities.points.farthest_point_indices`) and
the neighbours are :func:`ssl3d.methods.backbones.knn.knn_indices`'s, so no CUDA extension is needed.
Paper-to-code map: docs/methods.md#point-mae
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl3d.datasets.modalities.points import farthest_point_indices
from ssl3d.methods.backbones.knn import knn_indices

__all__ = ["PatchEmbedding", "farthest_point_subset", "fps_indices", "group_patches", "random_patch_mask"]


@torch.no_grad()
def fps_indices(points: Tensor, m: int) -> Tensor:
    r"""Farthest-point sample of :math:`m` points per cloud (the data pipeline's ``fpsample``, asked to start at 0).

    ``fpsample`` starts at point 0 below 128 points; above, its bucket kd-tree reads the start as an index
    in the tree's order, so the first centre is another fixed point. ``pointnet2_ops`` (the official code)
    starts at point 0 of the file's order, itself arbitrary: either is a farthest-point sample.

    Shapes:
        - **points:** :math:`(B, N, C)` (the first 3 channels are the coordinates) -> :math:`(B, m)` long
    """
    if not 1 <= m <= points.shape[1]:
        raise ValueError(f"cannot sample {m} farthest points from clouds of {points.shape[1]} points")
    clouds = points[..., :3].detach().float().cpu().numpy()
    picked = np.stack([farthest_point_indices(cloud, m, start=0) for cloud in clouds])
    return torch.from_numpy(picked).to(points.device)


def farthest_point_subset(points: Tensor, m: int) -> Tensor:
    r"""The clouds reduced to :math:`m` farthest-point samples; clouds of at most :math:`m` points are returned whole.

    Shapes:
        - **points:** :math:`(B, N, C)` -> :math:`(B, \min(m, N), C)`
    """
    if points.shape[1] <= m:
        return points
    idx = fps_indices(points, m)
    return points.gather(1, idx.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


def group_patches(points: Tensor, num_groups: int, group_size: int) -> tuple[Tensor, Tensor]:
    r"""Eq. 1-2: :math:`CT = \mathrm{FPS}(X)`, :math:`P = \mathrm{KNN}(X, CT)`, each patch minus its centre.

    Centres are points of the cloud, so a centre is its own first neighbour.

    Returns:
        ``(patches, centres)``.

    Shapes:
        - **points:** :math:`(B, N, 3)`
        - **output:** :math:`(B, G, k, 3)`, :math:`(B, G, 3)`
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3]; got {tuple(points.shape)}")
    n = points.shape[1]
    if num_groups > n or group_size > n:
        raise ValueError(f"clouds of {n} points cannot make {num_groups} patches of {group_size} points; "
                         "lower method.num_groups / method.group_size or raise data.n_points")
    b = points.shape[0]
    centre_idx = fps_indices(points, num_groups)  # [B, G]
    centres = points.gather(1, centre_idx.unsqueeze(-1).expand(-1, -1, 3))
    neighbours = knn_indices(points, group_size, query_index=centre_idx)  # [B, G, k], sorted by distance
    patches = points.gather(1, neighbours.reshape(b, -1, 1).expand(-1, -1, 3)).view(b, num_groups, group_size, 3)
    return patches - centres.unsqueeze(2), centres


def random_patch_mask(batch: int, num_groups: int, ratio: float, *, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> Tensor:
    r"""Sec. 3.1, random masking: exactly :math:`\lfloor r G \rfloor` patches masked per cloud, drawn anew per cloud.

    ``True`` marks a masked patch. The draws come from ``generator`` (torch's global one when ``None``).

    Shapes:
        - **output:** :math:`(B, G)` bool
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"mask ratio must be in [0, 1); got {ratio}")
    num_masked = int(ratio * num_groups)  # the official code's int(mask_ratio * G)
    order = torch.rand(batch, num_groups, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, num_groups, dtype=torch.bool)
    mask.scatter_(1, order[:, :num_masked], True)
    return mask.to(device)


class PatchEmbedding(nn.Module):
    r"""Sec. 3.1, embedding: a mini-PointNet per patch (the official ``Encoder``; its layer names).

    ``first_conv`` (shared MLP 3 -> h1 -> h2), max-pool, the pooled feature concatenated to every
    point's, ``second_conv`` (2 h2 -> h3 -> D), max-pool: one :math:`D`-dim token per patch. The
    layers are the official ``Conv1d`` / ``BatchNorm1d`` modules (same tensors), applied points-last.

    Args:
        dim: token width :math:`D`.
        hidden: ``(h1, h2, h3)``; the paper's code uses ``(128, 256, 512)``.

    Shapes:
        - **patches:** :math:`(B, G, k, 3)` -> :math:`(B, G, D)`
    """

    def __init__(self, dim: int, hidden: tuple[int, int, int] = (128, 256, 512)) -> None:
        super().__init__()
        h1, h2, h3 = hidden
        self.first_conv = nn.Sequential(nn.Conv1d(3, h1, 1), nn.BatchNorm1d(h1), nn.ReLU(inplace=True),
                                        nn.Conv1d(h1, h2, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(2 * h2, h3, 1), nn.BatchNorm1d(h3), nn.ReLU(inplace=True),
                                         nn.Conv1d(h3, dim, 1))
        self.dim = dim

    def forward(self, patches: Tensor) -> Tensor:
        b, g, k, _ = patches.shape
        x = _pointwise(self.first_conv, patches.reshape(b * g, k, 3))  # [BG, k, h2]
        pooled = x.amax(dim=1, keepdim=True)
        x = _pointwise(self.second_conv, torch.cat([pooled.expand(-1, k, -1), x], dim=-1))  # [BG, k, D]
        return x.amax(dim=1).view(b, g, self.dim)


def _pointwise(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``Conv1d(1x1) -> BatchNorm1d -> ReLU -> Conv1d(1x1)`` on points-last ``[M, k, C]``: the 1x1 convolutions as
    matrix products (1.6x faster than ``conv1d`` on a CPU), BatchNorm over all ``M k`` points as on ``[M, C, k]``."""
    conv_in, norm, act, conv_out = layers
    m, k, _ = x.shape
    x = F.linear(x, conv_in.weight.squeeze(-1), conv_in.bias)
    x = act(norm(x.reshape(m * k, -1))).view(m, k, -1)
    return F.linear(x, conv_out.weight.squeeze(-1), conv_out.bias)
