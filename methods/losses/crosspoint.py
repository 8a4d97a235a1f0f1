r"""Losses of CrossPoint (Afham et al., CVPR 2022): NT-Xent within and across modalities.

Sec. 3.1 (Eq. 1-2): intra-modal instance discrimination (IMID) between the projections
:math:`z^{t_1}, z^{t_2}` of two augmentations of each cloud. Sec. 3.2 (Eq. 3-4): cross-modal
instance discrimination (CMID) between each cloud's prototype :math:`z = \tfrac12 (z^{t_1} + z^{t_2})`
and the projection :math:`h` of a rendered view of the same shape. Sec. 3.3 (Eq. 5): the sum.
Both terms are the released code's ``lightly`` ``NTXentLoss(temperature=0.1)`` (no memory bank).
Equations and departures: docs/methods.md#crosspoint
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossPointLoss", "nt_xent"]


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    r"""Symmetric NT-Xent (SimCLR; CrossPoint Eq. 1-2 and 3-4), averaged over the :math:`2B` anchors.

    With :math:`u = a / \lVert a \rVert`, :math:`v = b / \lVert b \rVert` and
    :math:`s(x, y) = x^\top y / \tau`, the anchor :math:`u_i` gets

    .. math::
        \ell(u_i) = -\log \frac{e^{s(u_i, v_i)}}
        {\sum_{k} e^{s(u_i, v_k)} + \sum_{k \ne i} e^{s(u_i, u_k)}}

    and :math:`v_i` the same with the roles of :math:`u, v` swapped; the loss is
    :math:`\frac{1}{2B}\sum_i (\ell(u_i) + \ell(v_i))`. Each anchor's candidates are the other
    :math:`2B - 1` embeddings of the batch: the positive and :math:`2B - 2` negatives from both sides.

    Args:
        a: embeddings of one side (the first augmentation, or the point prototypes).
        b: the other side, row :math:`i` the positive of row :math:`i` of ``a``.
        temperature: :math:`\tau > 0`.

    Shapes:
        - **a, b:** :math:`(B, D)`, :math:`B \ge 1` -> **output:** :math:`()`
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if a.dim() != 2 or a.shape[0] == 0 or a.shape != b.shape:
        raise ValueError(f"a and b must share one shape [B, D] with B >= 1; got {tuple(a.shape)}, {tuple(b.shape)}")
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=1)
    logits = z @ z.t() / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # an embedding is never its own candidate
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


class CrossPointLoss(nn.Module):
    r"""CrossPoint's objective, Eq. 5: :math:`L = L_{imid} + L_{cmid}`.

    .. math::
        L_{imid} = \mathrm{NTXent}(z^{t_1}, z^{t_2}), \qquad
        L_{cmid} = \mathrm{NTXent}\big(\tfrac12 (z^{t_1} + z^{t_2}),\ h\big)

    (:func:`nt_xent`, one temperature for both, 0.1 in the released code). The prototype is the
    mean of the two *unnormalised* projections, as in the code; :func:`nt_xent` normalises it.

    Shapes:
        - **z1, z2:** :math:`(B, D)` projections of the two augmented clouds
        - **h:** :math:`(B, D)` projections of one rendered view per shape
        - **output:** dict of scalars ``imid``, ``cmid``, ``total``
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor, h: Tensor) -> Dict[str, Tensor]:
        imid = nt_xent(z1, z2, self.temperature)
        cmid = nt_xent(0.5 * (z1 + z2), h, self.temperature)
        return {"imid": imid, "cmid": cmid, "total": imid + cmid}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
