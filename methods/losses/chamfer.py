r"""The L2 Chamfer distance between sets of point sets (Point-MAE, Pang et al., ECCV 2022, Sec. 3.3).

For a predicted set :math:`A` and a true set :math:`B` of one patch,

.. math:: d(A, B) = \frac{1}{|A|} \sum_{a \in A} \min_{b \in B} \lVert a - b \rVert_2^2
                  + \frac{1}{|B|} \sum_{b \in B} \min_{a \in A} \lVert a - b \rVert_2^2,

with **squared** distances and the two directions **summed**, not averaged: the official
``ChamferDistanceL2`` (``extensions/chamfer_dist``: the CUDA kernel returns squared nearest
distances; the module returns ``mean(dist1) + mean(dist2)``, each mean over every point of every
patch). All patches hold the same number of points, so that is the mean of :math:`d` over patches.
Exact nearest neighbours in plain PyTorch, computed in float32 even under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ChamferL2Loss", "chamfer_l2"]


def chamfer_l2(pred: Tensor, target: Tensor) -> Tensor:
    r"""Per-set L2 Chamfer distance :math:`d(A_i, B_i)` (module docstring).

    Shapes:
        - **pred:** :math:`(P, n, 3)`; **target:** :math:`(P, m, 3)`
        - **output:** :math:`(P,)`
    """
    if pred.dim() != 3 or target.dim() != 3 or pred.shape[0] != target.shape[0] or pred.shape[2] != target.shape[2]:
        raise ValueError(f"pred and target must be [P, n, C] and [P, m, C] with the same P and C; "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError("every set needs at least one point")
    with torch.autocast(pred.device.type, enabled=False):
        diff = pred.float().unsqueeze(2) - target.float().unsqueeze(1)  # [P, n, m, C]: exact, no expansion trick
        dist = diff.pow(2).sum(dim=-1)
        return dist.amin(dim=2).mean(dim=1) + dist.amin(dim=1).mean(dim=1)


class ChamferL2Loss(nn.Module):
    r"""Sec. 3.3, Eq. 6: the L2 Chamfer distance averaged over the predicted / true patch pairs.

    Shapes:
        - **pred:** :math:`(P, n, 3)`; **target:** :math:`(P, m, 3)`
        - **output:** scalar
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return chamfer_l2(pred, target).mean()
