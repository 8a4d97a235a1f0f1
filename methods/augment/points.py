"""Point-cloud augmentation: random rotation about the up axis plus Gaussian jitter (CM-CV, Sec. 4.1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["rotate_jitter"]


def rotate_jitter(points: Tensor, sigma: float) -> Tensor:
    r"""Sec. 4.1: :math:`p' = p R_y(\theta)^\top + \epsilon`, :math:`\theta \sim U[0, 2\pi)` about +Y, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)`.

    Shapes:
        - **points:** :math:`(B, N, 3)` -> :math:`(B, N, 3)`
    """
    theta = torch.rand(points.shape[0], device=points.device) * (2 * math.pi)
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)
    return points @ rot.transpose(1, 2) + sigma * torch.randn_like(points)
