r"""Losses of CMIC (Lin et al., ICCV 2021): Eq. 4-6 and the triplet variant of Sec. 4.3.

``query`` holds the query embeddings :math:`v_i^q` :math:`(B, D)`; ``shape`` either one embedding per
shape :math:`(B, D)`, shared by all queries, or the query-specific ones, ``shape[i, j]`` :math:`= v_{ji}^r`
:math:`(B, B, D)`. Shape :math:`i` is query :math:`i`'s ground truth, so a batch must not hold a shape
twice. Embeddings are L2-normalised first, as the released encoders' outputs are; ``normalize=False``
takes them as given (e.g. the released attention's merged vectors, of norm :math:`\le 1`).
Equations and departures: docs/methods.md#cmic
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "instance_contrastive",
    "category_contrastive",
    "instance_triplet",
    "category_triplet",
    "cmic_triplet",
    "CMICLoss",
]


def _pairwise(query: Tensor, shape: Tensor, normalize: bool, squared_distance: bool = False) -> Tensor:
    """[B, B] matrix over (query i, shape j): dot products or squared distances."""
    if query.dim() != 2 or query.shape[0] == 0:
        raise ValueError(f"query must have shape [B, D] with B >= 1, got {tuple(query.shape)}")
    b, d = query.shape
    if shape.shape not in ((b, d), (b, b, d)):
        raise ValueError(f"shape must have shape [B, D] = {(b, d)} or query-specific [B, B, D] = "
                         f"{(b, b, d)}, got {tuple(shape.shape)}")
    if normalize:
        query, shape = F.normalize(query, dim=-1), F.normalize(shape, dim=-1)
    if shape.dim() == 2:
        shape = shape.unsqueeze(0)  # broadcast: the same shape embeddings for every query
    q = query.unsqueeze(1)
    if squared_distance:
        return (q - shape).pow(2).sum(dim=-1)
    return (q * shape).sum(dim=-1)


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau (temperature) must be > 0, got {tau}")


def _check_labels(labels: Tensor, b: int) -> Tensor:
    if not torch.is_tensor(labels) or labels.shape != (b,) or labels.is_floating_point():
        got = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape [B] = [{b}], got {got}")
    return labels


def instance_contrastive(query: Tensor, shape: Tensor, tau: float = 0.1, normalize: bool = True) -> Tensor:
    r"""Instance-level contrastive loss, CMIC Eq. (4) (InfoNCE, query to
    shape), averaged over the batch:

    .. math::
        \mathcal{L}_{inst} = -\frac{1}{B}\sum_{i \in B}\log
        \frac{\exp(v_i^q \cdot v_{ii}^r / \tau)}
        {\sum_{j \in B}\exp(v_i^q \cdot v_{ji}^r / \tau)}

    The positive of query :math:`i` is shape :math:`i`; the other
    :math:`B - 1` shapes are negatives.

    Args:
        query (torch.Tensor): query-image embeddings :math:`v^q`.
        shape (torch.Tensor): shape embeddings, shared or query-specific.
        tau (float, optional): temperature :math:`\tau > 0`. (default: :obj:`0.1`)
        normalize (bool, optional): L2-normalise embeddings first.
            (default: :obj:`True`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`, ``shape[i, j]`` =
          :math:`v_{ji}^r`
        - **output:** :math:`()`
    """
    _check_tau(tau)
    logits = _pairwise(query, shape, normalize) / tau
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def category_contrastive(
    query: Tensor,
    shape: Tensor,
    labels: Tensor,
    tau: float = 0.1,
    include_instance: bool = True,
    normalize: bool = True,
) -> Tensor:
    r"""Category-level contrastive loss, CMIC Eq. (5) (supervised-contrastive
    form of Khosla et al. 2020, cross-modal), averaged over the valid queries:

    .. math::
        \mathcal{L}_{cats} = \frac{1}{|V|}\sum_{i \in V} \frac{-1}{|P(i)|}
        \sum_{p \in P(i)} \log \frac{\exp(v_i^q \cdot v_{pi}^r / \tau)}
        {\sum_{j \in A(i)} \exp(v_i^q \cdot v_{ji}^r / \tau)}

    * ``include_instance=True`` (Table 4's better setting, 78.9% vs 76.7%):
      the ground-truth shape is kept in numerator and denominator,
      :math:`P(i) = \{j : y_j = y_i\}` (including :math:`i`), :math:`A(i) = B`.
    * ``include_instance=False``: :math:`\exp(v_i^q \cdot v_{ii}^r/\tau)` is
      removed from both, :math:`P(i) = \{j \ne i : y_j = y_i\}`,
      :math:`A(i) = B \setminus \{i\}` (the text of Eq. (5) removes it from
      :math:`P(i)` only; Table 4 describes removing it from both).

    :math:`V` holds the queries with at least one positive and at least one
    negative (:math:`y_j \ne y_i`):

    * with ``include_instance=False`` a query alone in its category has no
      positive and is skipped;
    * with ``include_instance=True`` such a query keeps
      :math:`P(i) = \{i\}`, so its term equals its instance term;
    * in a single-category batch no query has a negative: the category term
      is degenerate (it would only push all same-category shapes to equal
      similarity) and the loss is 0, as in CMIC's single-category datasets
      ("N/A" in Table 2) and the released code.

    If :math:`V` is empty the loss is an exact 0 that still back-propagates
    (zero gradients, never NaN).

    Args:
        query (torch.Tensor): query-image embeddings :math:`v^q`.
        shape (torch.Tensor): shape embeddings, shared or query-specific.
        labels (torch.Tensor): category of each (query, shape) pair.
        tau (float, optional): temperature :math:`\tau > 0`. (default: :obj:`0.1`)
        include_instance (bool, optional): keep the ground-truth shape in
            numerator and denominator. (default: :obj:`True`)
        normalize (bool, optional): L2-normalise embeddings first.
            (default: :obj:`True`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`
        - **labels:** :math:`(B,)` integer
        - **output:** :math:`()`
    """
    _check_tau(tau)
    scores = _pairwise(query, shape, normalize) / tau
    b = scores.shape[0]
    labels = _check_labels(labels, b).to(scores.device)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    pos = same if include_instance else same & ~eye
    if not include_instance:
        # A finite fill (not -inf) keeps rows that lose every entry free of NaN.
        scores = scores.masked_fill(eye, torch.finfo(scores.dtype).min)
    log_prob = scores - torch.logsumexp(scores, dim=1, keepdim=True)
    n_pos = pos.sum(dim=1)
    per_query = -torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / n_pos.clamp_min(1)
    valid = (n_pos > 0) & (~same).any(dim=1)
    return (per_query * valid).sum() / valid.sum().clamp_min(1)


def instance_triplet(query: Tensor, shape: Tensor, margin: float = 0.2, normalize: bool = True) -> Tensor:
    r"""Instance-level triplet loss of CMIC's Section 4.3 ablation: for each
    query all hard and semi-hard negatives of the batch (FaceNet, Schroff et
    al. 2015), i.e. all shapes :math:`j \ne i` violating the margin:

    .. math::
        \mathcal{L}_{inst}^{tri} = \frac{1}{|T|}\sum_{(i, j) \in T}
        \left(d_{ii} - d_{ij} + m\right),\quad
        T = \{(i, j) : j \ne i,\ d_{ij} < d_{ii} + m\},\quad
        d_{ij} = \|v_i^q - v_{ji}^r\|_2^2

    (:math:`d_{ij} < d_{ii}`: hard; :math:`d_{ii} \le d_{ij} < d_{ii} + m`:
    semi-hard).  Averaging over the active triplets only keeps easy triplets
    from diluting the loss; with no active triplet the loss is 0.

    Args:
        query (torch.Tensor): query-image embeddings.
        shape (torch.Tensor): shape embeddings, shared or query-specific.
        margin (float, optional): margin :math:`m \geq 0`; the paper gives
            none, 0.2 is FaceNet's on unit vectors. (default: :obj:`0.2`)
        normalize (bool, optional): L2-normalise embeddings first.
            (default: :obj:`True`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`
        - **output:** :math:`()`
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    dist = _pairwise(query, shape, normalize, squared_distance=True)
    off = ~torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
    hinge = F.relu(dist.diagonal().unsqueeze(1) - dist + margin) * off
    return hinge.sum() / (hinge > 0).sum().clamp_min(1)


def category_triplet(
    query: Tensor,
    shape: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    include_instance: bool = True,
    normalize: bool = True,
) -> Tensor:
    r"""Category-level triplet loss of CMIC's Section 4.3 ablation: one triplet
    per query from the *farthest* shape of its category and the *nearest*
    shape of another category (batch-hard mining, Hermans et al. 2017):

    .. math::
        \mathcal{L}_{cats}^{tri} = \frac{1}{|V|}\sum_{i \in V}
        \max\Big(\max_{p \in P(i)} d_{ip} - \min_{n : y_n \ne y_i} d_{in} + m,\ 0\Big)

    with :math:`d` and :math:`P(i)` as in :func:`instance_triplet` and
    :func:`category_contrastive` (``include_instance`` decides whether the
    ground-truth shape may be the positive).  Queries without a positive or
    without a negative are skipped (:math:`V`); if none is left the loss is 0.

    Args:
        query (torch.Tensor): query-image embeddings.
        shape (torch.Tensor): shape embeddings, shared or query-specific.
        labels (torch.Tensor): category of each (query, shape) pair.
        margin (float, optional): margin :math:`m \geq 0`. (default: :obj:`0.2`)
        include_instance (bool, optional): let the ground-truth shape be the
            category positive. (default: :obj:`True`)
        normalize (bool, optional): L2-normalise embeddings first.
            (default: :obj:`True`)

    Returns:
        torch.Tensor: scalar loss.

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`
        - **labels:** :math:`(B,)` integer
        - **output:** :math:`()`
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    dist = _pairwise(query, shape, normalize, squared_distance=True)
    b = dist.shape[0]
    labels = _check_labels(labels, b).to(dist.device)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    pos = same if include_instance else same & ~torch.eye(b, dtype=torch.bool, device=dist.device)
    neg = ~same
    # Finite fills (distances are >= 0) so that skipped rows never make NaN.
    hardest_pos = dist.masked_fill(~pos, -1.0).max(dim=1).values
    hardest_neg = dist.masked_fill(~neg, torch.finfo(dist.dtype).max).min(dim=1).values
    valid = pos.any(dim=1) & neg.any(dim=1)
    per_query = F.relu(hardest_pos - hardest_neg + margin) * valid
    return per_query.sum() / valid.sum().clamp_min(1)


def cmic_triplet(
    query: Tensor,
    shape: Tensor,
    labels: Optional[Tensor] = None,
    margin: float = 0.2,
    beta1: float = 0.2,
    include_instance: bool = True,
    normalize: bool = True,
) -> Dict[str, Tensor]:
    r"""Triplet counterpart of the Instance-Category loss (CMIC Section 4.3,
    Table 2 "Triplet" rows):

    .. math::
        \mathcal{L}^{tri} = \mathcal{L}_{inst}^{tri} + \beta_1\,\mathcal{L}_{cats}^{tri}

    from :func:`instance_triplet` and :func:`category_triplet`.  The paper
    states the mining but neither the margin nor the weight; :math:`\beta_1`
    is assumed to be the contrastive loss's 0.2.  ``labels=None`` drops the
    category term (single-category datasets).

    Returns:
        dict: scalars ``inst``, ``cats``, ``total``.

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`
        - **labels:** :math:`(B,)` integer, optional
    """
    if not beta1 >= 0:
        raise ValueError(f"beta1 must be >= 0, got {beta1}")
    inst = instance_triplet(query, shape, margin, normalize)
    if labels is None:
        cats = torch.zeros((), dtype=inst.dtype, device=inst.device)
    else:
        cats = category_triplet(query, shape, labels, margin, include_instance, normalize)
    return {"inst": inst, "cats": cats, "total": inst + beta1 * cats}


class CMICLoss(nn.Module):
    r"""CMIC's Instance-Category loss, Eq. (6):

    .. math::
        \mathcal{L}_{total} = \mathcal{L}_{inst} + \beta_1\,\mathcal{L}_{cats}

    with :func:`instance_contrastive` (Eq. (4)) and
    :func:`category_contrastive` (Eq. (5)); :math:`\tau = 0.1` and
    :math:`\beta_1 = 0.2` as in Section 4.1.  ``instance="triplet"`` swaps in
    the triplet variant of Section 4.3 (:func:`cmic_triplet`).  Calling with
    ``labels=None`` drops the category term (single-category datasets such as
    the car sets, "N/A" in Table 2).

    Args:
        tau (float, optional): temperature. (default: :obj:`0.1`)
        beta1 (float, optional): category-loss weight :math:`\geq 0`.
            (default: :obj:`0.2`)
        include_instance (bool, optional): keep the ground-truth shape in the
            category loss (Table 4). (default: :obj:`True`)
        normalize (bool, optional): L2-normalise embeddings. (default: :obj:`True`)
        instance (str, optional): ``"contrastive"`` or ``"triplet"``.
            (default: :obj:`"contrastive"`)
        margin (float, optional): triplet margin, used only with
            ``instance="triplet"``. (default: :obj:`0.2`)

    Shapes:
        - **query:** :math:`(B, D)`
        - **shape:** :math:`(B, D)` or :math:`(B, B, D)`, ``shape[i, j]`` =
          embedding of shape :math:`j` for query :math:`i`
        - **labels:** :math:`(B,)` integer, optional
        - **output:** dict of scalars ``inst``, ``cats``, ``total``
    """

    def __init__(self, tau: float = 0.1, beta1: float = 0.2, include_instance: bool = True,
                 normalize: bool = True, instance: str = "contrastive", margin: float = 0.2) -> None:
        super().__init__()
        _check_tau(tau)
        if not beta1 >= 0:
            raise ValueError(f"beta1 must be >= 0, got {beta1}")
        if instance not in ("contrastive", "triplet"):
            raise ValueError(f"instance must be 'contrastive' or 'triplet', got {instance!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.tau, self.beta1, self.margin = float(tau), float(beta1), float(margin)
        self.include_instance, self.normalize = bool(include_instance), bool(normalize)
        self.instance = instance

    def forward(self, query: Tensor, shape: Tensor, labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
        if self.instance == "triplet":
            return cmic_triplet(query, shape, labels, self.margin, self.beta1, self.include_instance,
                                self.normalize)
        inst = instance_contrastive(query, shape, self.tau, self.normalize)
        if labels is None:
            cats = torch.zeros((), dtype=inst.dtype, device=inst.device)
        else:
            cats = category_contrastive(query, shape, labels, self.tau, self.include_instance, self.normalize)
        return {"inst": inst, "cats": cats, "total": inst + self.beta1 * cats}

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, beta1={self.beta1}, include_instance={self.include_instance}, "
                f"normalize={self.normalize}, instance={self.instance!r}, margin={self.margin}")
