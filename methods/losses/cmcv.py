r"""Losses of CM-CV (Jing et al., CVPR Workshops 2021, Sec. 3.3, Eq. 1-3, Algorithm 1).

The cross-view triplet on the image features and the cross-modality cross-entropy of the fusion
head on the three (view, cloud) pairs. Equations and departures: docs/methods.md#cm-cv
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["cross_view_triplet", "cross_modality_ce", "CMCVLoss", "DEFAULT_PAIR_LABELS"]

#: Labels of the pairs (img_1, p), (img_2, p), (img_3, p): same, same, different.
DEFAULT_PAIR_LABELS = (1, 1, 0)


def cross_view_triplet(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    normalize: bool = False,
) -> Tensor:
    r"""Cross-view triplet loss, CM-CV Eq. (1) (FaceNet-style, Schroff et al.
    2015), averaged over the batch:

    .. math::
        \mathcal{L}_{triplet} = \frac{1}{B}\sum_{b=1}^{B}
        \max\left(\|f_1^{(b)} - f_2^{(b)}\|_2^2 - \|f_1^{(b)} - f_3^{(b)}\|_2^2
        + \alpha,\ 0\right)

    with anchor :math:`f_1`, positive :math:`f_2` (another view of the same
    object) and negative :math:`f_3` (a view of another object).

    The paper uses the raw 512-d global-average-pooled ResNet18 features
    (Section 3.2) and mentions no normalisation; its Table 2 reports mean
    negative-pair distances up to 12.07, impossible for unit vectors (at most
    2), so features are *not* normalised by default.  ``normalize=True``
    L2-normalises them first (FaceNet's setting) for experiments.

    Args:
        anchor (torch.Tensor): features of :math:`img_1`.
        positive (torch.Tensor): features of :math:`img_2`.
        negative (torch.Tensor): features of :math:`img_3`.
        margin (float, optional): the margin :math:`\alpha \geq 0`.
            (default: :obj:`1.0`)
        normalize (bool, optional): L2-normalise the features first.
            (default: :obj:`False`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **anchor, positive, negative:** :math:`(B, D)`
        - **output:** :math:`()`
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if anchor.dim() != 2 or anchor.shape[0] == 0:
        raise ValueError(f"anchor must have shape [B, D] with B >= 1, got {tuple(anchor.shape)}")
    if positive.shape != anchor.shape or negative.shape != anchor.shape:
        raise ValueError(f"anchor, positive and negative must share one shape [B, D], got "
                         f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}")
    if normalize:
        anchor, positive, negative = (F.normalize(x, dim=-1) for x in (anchor, positive, negative))
    d_pos = (anchor - positive).pow(2).sum(dim=-1)
    d_neg = (anchor - negative).pow(2).sum(dim=-1)
    return F.relu(d_pos - d_neg + margin).mean()


def cross_modality_ce(logits: Tensor, labels: Optional[Tensor] = None) -> Tensor:
    r"""Cross-modality correspondence loss, CM-CV Eq. (2): binary
    cross-entropy of the fusion head over the :math:`K` (image, point cloud)
    pairs of a sample, summed over the pairs as in Eq. (2) and averaged over
    the batch:

    .. math::
        \mathcal{L}_{cross} = -\frac{1}{B}\sum_{b=1}^{B}\sum_{j=1}^{K}
        \left(y_j^{(b)}\log\hat y_j^{(b)} + (1 - y_j^{(b)})\log(1 - \hat y_j^{(b)})\right)

    with :math:`K = 3` and :math:`y = (1, 1, 0)` in the paper.  Since the
    paper's :math:`F_f` ends in a 2-unit layer (Section 3.2), ``logits`` may be
    two-class scores, :math:`\hat y = \mathrm{softmax}(\text{logits})_1`
    (class 1 = "same object"); a single logit per pair,
    :math:`\hat y = \sigma(\text{logit})`, is accepted too.  Both are computed
    from logits in a numerically stable way.

    Args:
        logits (torch.Tensor): fusion-head outputs, :math:`(B, K, 2)` or
            :math:`(B, K)`.
        labels (torch.Tensor, optional): pair labels in :math:`\{0, 1\}`,
            :math:`(B, K)` or :math:`(K,)`. (default: :obj:`None`, i.e.
            :math:`(1, 1, 0)`, which needs :math:`K = 3`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **logits:** :math:`(B, K, 2)` or :math:`(B, K)`
        - **labels:** :math:`(B, K)` or :math:`(K,)`
        - **output:** :math:`()`
    """
    if logits.dim() == 3 and logits.shape[-1] == 2:
        pair_shape, two_class = logits.shape[:2], True
    elif logits.dim() == 2:
        pair_shape, two_class = logits.shape, False
    else:
        raise ValueError(f"logits must have shape [B, K, 2] (two-class scores) or [B, K] "
                         f"(one logit per pair), got {tuple(logits.shape)}")
    if pair_shape[0] == 0 or pair_shape[1] == 0:
        raise ValueError(f"logits must hold at least one sample and one pair, "
                         f"got {tuple(logits.shape)}")
    if labels is None:
        if pair_shape[1] != len(DEFAULT_PAIR_LABELS):
            raise ValueError(f"default labels (1, 1, 0) need K = 3 pairs, got K = {pair_shape[1]}; pass labels")
        labels = torch.tensor(DEFAULT_PAIR_LABELS, device=logits.device)
    if labels.dim() == 1:
        labels = labels.unsqueeze(0)
    try:
        labels = labels.to(logits.device).expand(pair_shape)
    except RuntimeError:
        raise ValueError(f"labels of shape {tuple(labels.shape)} do not match the pairs "
                         f"{tuple(pair_shape)}; use [B, K] or [K]") from None
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 (different objects) or 1 (same object)")
    if two_class:
        nll = F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1).long(), reduction="none")
    else:
        nll = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return nll.reshape(pair_shape).sum(dim=1).mean()


class CMCVLoss(nn.Module):
    r"""Full CM-CV objective, Eq. (3):

    .. math::
        \mathcal{L}_{self} = \mathcal{L}_{triplet} + \beta\,\mathcal{L}_{cross}

    with :math:`\mathcal{L}_{triplet}` from :func:`cross_view_triplet`
    (Eq. (1)) and :math:`\mathcal{L}_{cross}` from :func:`cross_modality_ce`
    (Eq. (2)).  The paper gives no values for :math:`\alpha` or :math:`\beta`;
    the defaults :math:`\alpha = 1` (on squared distances of unnormalised
    features, whose trained positive/negative distances are about 2.6/4.3 in
    Table 2) and :math:`\beta = 1` (equal weight) are this benchmark's choice.

    With ``cross_view=False`` the triplet term is left out of the total
    (:math:`\beta\,\mathcal{L}_{cross}`, so the flag changes nothing else): this
    is the ``cm`` ablation (":math:`F_p`-CM" in Tables 1-5), trained with the
    cross-modality correspondence only.  The triplet value is still returned,
    detached, for monitoring.

    Args:
        alpha (float, optional): triplet margin :math:`\alpha \geq 0`.
            (default: :obj:`1.0`)
        beta (float, optional): weight :math:`\beta \geq 0` of the
            cross-modality term. (default: :obj:`1.0`)
        cross_view (bool, optional): include the cross-view triplet term.
            (default: :obj:`True`)
        normalize (bool, optional): L2-normalise image features in the
            triplet term (not in the paper). (default: :obj:`False`)

    Shapes:
        - **f1, f2, f3:** :math:`(B, D)` image features of
          :math:`img_1, img_2, img_3`
        - **logits:** :math:`(B, 3, 2)` or :math:`(B, 3)` fusion-head outputs
          for the pairs :math:`(img_j, p)`
        - **labels:** :math:`(B, 3)` or :math:`(3,)`, optional
        - **output:** dict of scalars ``triplet``, ``cross``, ``total``
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, cross_view: bool = True,
                 normalize: bool = False) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha (triplet margin) must be >= 0, got {alpha}")
        if not beta >= 0:
            raise ValueError(f"beta (cross-modality weight) must be >= 0, got {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.cross_view = bool(cross_view)
        self.normalize = bool(normalize)

    def forward(self, f1: Tensor, f2: Tensor, f3: Tensor, logits: Tensor,
                labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
        triplet = cross_view_triplet(f1, f2, f3, self.alpha, self.normalize)
        cross = cross_modality_ce(logits, labels)
        if logits.shape[0] != f1.shape[0]:
            raise ValueError(f"logits and features must have the same batch size, got "
                             f"{logits.shape[0]} and {f1.shape[0]}")
        if self.cross_view:
            total = triplet + self.beta * cross
        else:
            total = self.beta * cross
            triplet = triplet.detach()
        return {"triplet": triplet, "cross": cross, "total": total}

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, cross_view={self.cross_view}, "
                f"normalize={self.normalize}")
