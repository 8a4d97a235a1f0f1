r"""Random anisotropic scale and translation of point clouds (Point-MAE's pretraining augmentation).

The official ``PointcloudScaleAndTranslate``: per cloud, :math:`p' = p \odot s + t` with
:math:`s \sim U[2/3, 3/2]^3` and :math:`t \sim U[-0.2, 0.2]^3`, the same for every point.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SCALE_RANGE", "SHIFT_RANGE", "scale_translate"]

#: per-axis scale range
SCALE_RANGE = (2.0 / 3.0, 3.0 / 2.0)
#: per-axis translation range (symmetric)
SHIFT_RANGE = 0.2


def scale_translate(points: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r""":math:`p' = p \odot s + t` per cloud (module docstring), drawn from ``generator`` (``None``: torch's global).

    Shapes:
        - **points:** :math:`(B, N, 3)` -> :math:`(B, N, 3)`
    """
    b = points.shape[0]
    low, high = SCALE_RANGE
    scale = low + (high - low) * torch.rand(b, 1, 3, generator=generator)
    shift = SHIFT_RANGE * (2.0 * torch.rand(b, 1, 3, generator=generator) - 1.0)
    return points * scale.to(points) + shift.to(points)
