r"""Point-cloud augmentations, batched on torch's global generator (the trainer re-seeds it every epoch).

* :func:`rotate_jitter`: rotation about +Y plus Gaussian jitter (CM-CV, Sec. 4.1);
* CrossPoint's chain (Afham et al., CVPR 2022, Sec. 3.1; the released ``datasets/data.py``), applied in
  this order: :func:`normalize_unit_sphere`, :func:`random_scale`, :func:`rotate_y`,
  :func:`random_translate`, :func:`clipped_jitter`, :func:`random_input_dropout`.

Every function takes and returns clouds :math:`(B, N, 3)` and draws independently per cloud.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "clipped_jitter", "normalize_unit_sphere", "random_input_dropout", "random_scale", "random_translate",
    "rotate_jitter", "rotate_y",
]


def _check_clouds(points: Tensor) -> None:
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        raise ValueError(f"points must be [B, N, 3] with N >= 1; got {tuple(points.shape)}")


def rotate_y(points: Tensor) -> Tensor:
    r""":math:`p' = p R_y(\theta)^\top`, :math:`\theta \sim U[0, 2\pi)` per cloud, about +Y (the up axis)."""
    theta = torch.rand(points.shape[0], device=points.device) * (2 * math.pi)
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)
    return points @ rot.transpose(1, 2).to(points.dtype)


def rotate_jitter(points: Tensor, sigma: float) -> Tensor:
    r"""Sec. 4.1: :math:`p' = p R_y(\theta)^\top + \epsilon`, :math:`\theta \sim U[0, 2\pi)` about +Y, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)`.

    Shapes:
        - **points:** :math:`(B, N, 3)` -> :math:`(B, N, 3)`
    """
    return rotate_y(points) + sigma * torch.randn_like(points)


def normalize_unit_sphere(points: Tensor) -> Tensor:
    r"""Centre every cloud on its centroid and divide by its largest radius: :math:`\max_i \lVert p_i \rVert = 1`.

    A cloud of one repeated point stays at the origin (its radius 0 is left undivided).
    """
    _check_clouds(points)
    centred = points - points.mean(dim=1, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=1, keepdim=True).unsqueeze(-1)
    return centred / torch.where(radius > 0, radius, torch.ones_like(radius))


def random_scale(points: Tensor, low: float, high: float) -> Tensor:
    r"""Isotropic scale :math:`s \sim U[\text{low}, \text{high}]`, one factor per cloud (CrossPoint: [0.5, 2])."""
    _check_clouds(points)
    if not 0 < low <= high:
        raise ValueError(f"scale range must satisfy 0 < low <= high; got [{low}, {high}]")
    s = low + (high - low) * torch.rand(points.shape[0], 1, 1, device=points.device, dtype=points.dtype)
    return points * s


def random_translate(points: Tensor, fraction: float) -> Tensor:
    r"""Shift by :math:`t_a \sim U[-f, f] \cdot (\max_i p_{ia} - \min_i p_{ia})` on each axis :math:`a`.

    The offset is relative to the cloud's bounding-box extent on that axis, as CrossPoint's
    ``PointcloudTranslate`` (:math:`f = 0.5`); one offset per cloud.
    """
    _check_clouds(points)
    if not fraction >= 0:
        raise ValueError(f"translate fraction must be >= 0; got {fraction}")
    extent = points.amax(dim=1, keepdim=True) - points.amin(dim=1, keepdim=True)
    u = torch.rand(points.shape[0], 1, 3, device=points.device, dtype=points.dtype)
    return points + (2 * u - 1) * fraction * extent


def clipped_jitter(points: Tensor, std: float, clip: float) -> Tensor:
    r"""Add :math:`\mathrm{clip}(\epsilon, -c, c)`, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)` per coordinate.

    CrossPoint: :math:`\sigma = 0.01`, :math:`c = 0.05`.
    """
    _check_clouds(points)
    if not (std >= 0 and clip >= 0):
        raise ValueError(f"jitter std and clip must be >= 0; got std={std}, clip={clip}")
    return points + (std * torch.randn_like(points)).clamp(-clip, clip)


def random_input_dropout(points: Tensor, max_ratio: float) -> Tensor:
    r"""Replace a random fraction of each cloud's points by its first point (PointNet++'s input dropout).

    Per cloud a ratio :math:`r \sim U[0, \text{max\_ratio})` is drawn and every point with
    :math:`u_i \le r`, :math:`u_i \sim U[0, 1)`, becomes a copy of point 0, so the count :math:`N`
    is kept (CrossPoint: ``max_ratio`` 0.875).
    """
    _check_clouds(points)
    if not 0 <= max_ratio < 1:
        raise ValueError(f"max_ratio must be in [0, 1); got {max_ratio}")
    b, n, _ = points.shape
    ratio = max_ratio * torch.rand(b, 1, device=points.device)
    drop = torch.rand(b, n, device=points.device) <= ratio
    return torch.where(drop.unsqueeze(-1), points[:, :1].expand_as(points), points)
