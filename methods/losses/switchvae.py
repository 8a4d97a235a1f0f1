r"""Loss terms of SwitchVAE (Wu et al., IEEE TMM 2023, arXiv 2301.04612): Sec. 3.3, Eq. 1-4, and the beta-TCVAE KL of Sec. 4.4.

Every term is a per-sample sum averaged over the batch, as in the official code, so the terms'
relative scale matches it. Equations and departures: docs/methods.md#switchvae
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["weighted_bce", "gaussian_kl", "latent_contrastive", "beta_tc_kl", "kl_anneal_weight", "SwitchVAELoss"]

_REDUCTIONS = ("mean", "sum", "none")
# Same clamp as the official code (K.clip(sigmoid(x), 1e-7, 1 - 1e-7)).
_PROB_EPS = 1e-7


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_latents(name: str, *tensors: Tensor) -> None:
    first = tensors[0]
    if first.dim() != 2:
        raise ValueError(f"{name}: expected latents of shape [B, D], got {tuple(first.shape)}")
    for t in tensors[1:]:
        if t.shape != first.shape:
            raise ValueError(
                f"{name}: all latent tensors must have the same shape [B, D], "
                f"got {tuple(first.shape)} and {tuple(t.shape)}"
            )


def weighted_bce(
    probs_or_logits: Tensor,
    target: Tensor,
    gamma: float = 0.8,
    from_logits: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""Weighted binary cross-entropy of SwitchVAE (Section 3.3, Eq. 2).

    .. math::
        L_{recon}(x, \hat{x}) = \sum_k \left[ -\gamma\, x_k \log \hat{x}_k
            - (1-\gamma)(1-x_k) \log(1-\hat{x}_k) \right]

    :math:`\gamma` weights the occupied voxels (missing one is a false
    negative) and :math:`1-\gamma` the empty ones (false positives). The paper
    and the official code use :math:`\gamma = 0.8` ("80/20" weights). With
    :math:`\gamma = 0.5` the loss is half the plain BCE.

    With ``from_logits=True`` the loss is evaluated in the stable form
    :math:`\gamma x_k\,\mathrm{softplus}(-s_k) + (1-\gamma)(1-x_k)\,
    \mathrm{softplus}(s_k)` with :math:`\hat{x}_k = \sigma(s_k)`; with
    probabilities, :math:`\hat{x}_k` is clamped to :math:`[10^{-7}, 1-10^{-7}]`
    as the official code does.

    Args:
        probs_or_logits (Tensor): decoder output, logits or probabilities.
        target (Tensor): ground-truth occupancy in :math:`[0, 1]`, same shape.
        gamma (float, optional): weight of the occupied voxels, in
            :math:`[0, 1]`. (default: :obj:`0.8`)
        from_logits (bool, optional): whether the decoder output is logits
            (recommended; the decoder then has no final sigmoid).
            (default: :obj:`True`)
        reduction (str, optional): ``"mean"`` (over the batch of per-sample
            sums), ``"sum"`` or ``"none"`` (the per-sample sums).
            (default: :obj:`"mean"`)

    Returns:
        Tensor: a scalar, or the per-sample losses for ``reduction="none"``.

    Shapes:
        - **probs_or_logits**, **target**: :math:`(B, *)`, e.g.
          :math:`(B, R, R, R)` or :math:`(B, 1, R, R, R)`; all non-batch
          dimensions are summed.
        - **output**: :math:`()` or :math:`(B)`.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    _check_reduction(reduction)
    if probs_or_logits.shape != target.shape:
        raise ValueError(
            "weighted_bce: prediction and target must have the same shape, "
            f"got {tuple(probs_or_logits.shape)} and {tuple(target.shape)}"
        )
    if probs_or_logits.dim() < 2:
        raise ValueError(
            f"weighted_bce: expected a batch of shape [B, ...], got {tuple(probs_or_logits.shape)}"
        )
    target = target.to(probs_or_logits.dtype)
    if from_logits:
        # -log(sigmoid(s)) = softplus(-s), -log(1 - sigmoid(s)) = softplus(s)
        neg_log_p = F.softplus(-probs_or_logits)
        neg_log_1mp = F.softplus(probs_or_logits)
    else:
        p = probs_or_logits.clamp(_PROB_EPS, 1.0 - _PROB_EPS)
        neg_log_p = -torch.log(p)
        neg_log_1mp = -torch.log1p(-p)
    per_voxel = gamma * target * neg_log_p + (1.0 - gamma) * (1.0 - target) * neg_log_1mp
    return _reduce(per_voxel.flatten(1).sum(dim=1), reduction)


def gaussian_kl(mu: Tensor, logvar: Tensor, reduction: str = "mean") -> Tensor:
    r"""KL divergence of a diagonal Gaussian from the standard normal prior
    (SwitchVAE Section 3.3, Eq. 3; Kingma & Welling 2014, Appendix B).

    .. math::
        L_{KL}(\mu, \sigma) = -\frac{1}{2} \sum_{i=1}^{n}
            \left(1 + \log\sigma_i^2 - \mu_i^2 - \sigma_i^2\right)

    Args:
        mu (Tensor): posterior means.
        logvar (Tensor): posterior log-variances :math:`\log\sigma^2`.
        reduction (str, optional): ``"mean"`` over the batch, ``"sum"`` or
            ``"none"``. (default: :obj:`"mean"`)

    Returns:
        Tensor: a scalar, or the per-sample KL for ``reduction="none"``.

    Shapes:
        - **mu**, **logvar**: :math:`(B, D)`
        - **output**: :math:`()` or :math:`(B)`
    """
    _check_reduction(reduction)
    _check_latents("gaussian_kl", mu, logvar)
    per_sample = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    return _reduce(per_sample, reduction)


def latent_contrastive(
    z_img: Tensor, z_vox: Tensor, normalize: bool = True, reduction: str = "mean"
) -> Tensor:
    r"""Latent contrastive loss of SwitchVAE (Section 3.3, Eq. 4).

    .. math::
        L_{contras}(z^{img}, z^{vox}) = \lVert \bar{z}^{img} - \bar{z}^{vox}
            \rVert_2^2, \qquad \bar{z} = z / \lVert z \rVert_2

    The paper says the latents are "normalized" without saying how; here each
    latent vector is L2-normalised (``normalize=True``), so the loss equals
    :math:`2 - 2\cos(z^{img}, z^{vox}) \in [0, 4]` and cannot be lowered by
    shrinking the latents. A zero vector stays zero, giving a loss of 1.
    ``normalize=False`` gives the official code's ``MSE`` (squared distance
    of the raw sampled latents, summed over dimensions, mean over batch); the
    official code relies on BatchNorm of the mean/log-variance heads instead.

    Args:
        z_img (Tensor): latents from the multi-view image encoder.
        z_vox (Tensor): latents from the voxel encoder.
        normalize (bool, optional): L2-normalise each latent vector first.
            (default: :obj:`True`)
        reduction (str, optional): ``"mean"`` over the batch, ``"sum"`` or
            ``"none"``. (default: :obj:`"mean"`)

    Returns:
        Tensor: a scalar, or the per-sample distances for ``reduction="none"``.

    Shapes:
        - **z_img**, **z_vox**: :math:`(B, D)`
        - **output**: :math:`()` or :math:`(B)`
    """
    _check_reduction(reduction)
    _check_latents("latent_contrastive", z_img, z_vox)
    if normalize:
        z_img = F.normalize(z_img, p=2.0, dim=1)
        z_vox = F.normalize(z_vox, p=2.0, dim=1)
    per_sample = (z_img - z_vox).pow(2).sum(dim=1)
    return _reduce(per_sample, reduction)


def _diag_normal_log_density(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (math.log(2.0 * math.pi) + logvar + (x - mu).pow(2) * torch.exp(-logvar))


def beta_tc_kl(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: int,
    beta: float = 5.0,
) -> dict[str, Tensor]:
    r"""The :math:`\beta`-TCVAE decomposition of the KL term (Chen et al.,
    "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018, Eq. 2 and
    Section 4.1), an option of the official SwitchVAE code (``--loss btcvae``);
    the SwitchVAE paper itself uses the plain KL of Eq. 3.

    .. math::
        \underbrace{\log q(z|x) - \log q(z)}_{\text{index-code MI}}
        + \beta \underbrace{\Big(\log q(z) - \sum_l \log q(z_l)\Big)}_{\text{TC}}
        + \underbrace{\sum_l \log q(z_l) - \log p(z)}_{\text{dimension-wise KL}}

    averaged over the batch, with the aggregate posterior estimated by
    minibatch-weighted sampling from a batch of size :math:`M` drawn from a
    dataset of size :math:`N`:

    .. math::
        \log q(z_j) \approx \log \sum_{i=1}^{M} q(z_j | x_i) - \log(NM),
        \qquad
        \log q(z_{jl}) \approx \log \sum_{i=1}^{M} q(z_{jl} | x_i) - \log(NM).

    The three terms telescope, so for :math:`\beta = 1` the total equals the
    single-sample Monte Carlo estimate :math:`\log q(z|x) - \log p(z)` of the
    KL of Eq. 3, whose expectation over :math:`z` is :func:`gaussian_kl`.
    The official code instead adds :math:`(\beta - 1)\,\mathrm{TC}` to the
    analytic KL; ``gaussian_kl(mu, logvar) + (beta - 1) * out["tc"]`` gives
    that form. Its ``--beta`` default is 1.5.

    Args:
        z (Tensor): latents sampled with the reparametrisation trick.
        mu (Tensor): posterior means.
        logvar (Tensor): posterior log-variances.
        dataset_size (int): number of training samples :math:`N \ge M`.
        beta (float, optional): weight of the total correlation, :math:`\ge 0`.
            (default: :obj:`5.0`)

    Returns:
        dict[str, Tensor]: scalars ``"mi"``, ``"tc"``, ``"dim_kl"`` and
        ``"total"`` (:math:`\mathrm{MI} + \beta\,\mathrm{TC} + \mathrm{dimKL}`).

    Shapes:
        - **z**, **mu**, **logvar**: :math:`(M, D)`
    """
    _check_latents("beta_tc_kl", z, mu, logvar)
    batch = z.shape[0]
    if batch < 1 or int(dataset_size) != dataset_size or dataset_size < batch:
        raise ValueError(
            f"need a non-empty batch and an integer dataset_size >= the batch size {batch}, "
            f"got {dataset_size}"
        )
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")

    # log q(z_jl | x_i) for every pair: [M (j, sample), M (i, posterior), D]
    log_q_pairs = _diag_normal_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_nm = math.log(float(dataset_size) * batch)

    log_q_zx = _diag_normal_log_density(z, mu, logvar).sum(dim=1)
    log_p_z = _diag_normal_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    log_q_z = torch.logsumexp(log_q_pairs.sum(dim=2), dim=1) - log_nm
    log_prod_q_zl = (torch.logsumexp(log_q_pairs, dim=1) - log_nm).sum(dim=1)

    mi = (log_q_zx - log_q_z).mean()
    tc = (log_q_z - log_prod_q_zl).mean()
    dim_kl = (log_prod_q_zl - log_p_z).mean()
    return {"mi": mi, "tc": tc, "dim_kl": dim_kl, "total": mi + beta * tc + dim_kl}


def kl_anneal_weight(epoch: int, warmup_epochs: int = 100) -> float:
    r"""Linear KL warm-up :math:`\lambda_{KL} = \min(1, e / E_w)` at epoch
    :math:`e`, as in the official SwitchVAE training scripts
    (``epoch_kl_weight_callback``: 0 to 1 over the first 100 epochs). The
    official callback is meant to be cyclic (200-epoch cycles) but uses the
    raw epoch, so it exceeds 1 after epoch 200; this function saturates at 1.

    Args:
        epoch (int): zero-based epoch index, :math:`\ge 0`.
        warmup_epochs (int, optional): length of the ramp; ``0`` disables it.
            (default: :obj:`100`)

    Returns:
        float: the weight in :math:`[0, 1]`.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if warmup_epochs == 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)


class SwitchVAELoss(nn.Module):
    r"""The SwitchVAE objective (Section 3.3, Eq. 1).

    .. math::
        L = L_{recon}(x^{vox}, \hat{x}^{\alpha})
            + \lambda_{KL} L_{KL}(\mu^{\alpha}, \sigma^{\alpha})
            + \lambda_{contras} L_{contras}(z^{img}, z^{vox})

    with :func:`weighted_bce` (Eq. 2), :func:`gaussian_kl` (Eq. 3) and
    :func:`latent_contrastive` (Eq. 4). The reconstruction and the KL use the
    branch :math:`\alpha` chosen by the switch; the contrastive term always
    compares the sampled latents of both branches.

    Default weights: :math:`\lambda_{contras} = 1` is the setting of the
    paper's Table 1 (ablation 0 vs. 1) and the official code (unit weight).
    The paper gives no value for :math:`\lambda_{KL}`; the official scripts
    ramp it linearly from 0 to 1 over the first 100 epochs and then keep 1,
    so the default is 1 (the steady-state value) and a trainer reproducing the
    warm-up passes ``lambda_kl=kl_anneal_weight(epoch)`` to :meth:`forward`.

    Args:
        gamma (float, optional): BCE weight of occupied voxels, in
            :math:`[0, 1]`. (default: :obj:`0.8`)
        lambda_kl (float, optional): KL weight, :math:`\ge 0`.
            (default: :obj:`1.0`)
        lambda_contras (float, optional): contrastive weight, :math:`\ge 0`.
            (default: :obj:`1.0`)
        normalize_latents (bool, optional): L2-normalise latents in the
            contrastive term. (default: :obj:`True`)
        from_logits (bool, optional): the reconstruction is given as logits.
            (default: :obj:`True`)

    Shapes:
        - **recon**, **target**: :math:`(B, *)`, e.g. :math:`(B, R, R, R)`
        - **mu**, **logvar**, **z_img**, **z_vox**: :math:`(B, D)`
        - **output**: dict of scalars ``"total"``, ``"recon"``, ``"kl"``,
          ``"contras"`` (the unweighted terms and the weighted total).
    """

    def __init__(
        self,
        gamma: float = 0.8,
        lambda_kl: float = 1.0,
        lambda_contras: float = 1.0,
        normalize_latents: bool = True,
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        _check_weight("lambda_kl", lambda_kl)
        _check_weight("lambda_contras", lambda_contras)
        self.gamma = float(gamma)
        self.lambda_kl = float(lambda_kl)
        self.lambda_contras = float(lambda_contras)
        self.normalize_latents = bool(normalize_latents)
        self.from_logits = bool(from_logits)

    def forward(
        self,
        recon: Tensor,
        target: Tensor,
        mu: Tensor,
        logvar: Tensor,
        z_img: Tensor,
        z_vox: Tensor,
        lambda_kl: float | None = None,
    ) -> dict[str, Tensor]:
        """Compute Eq. 1; ``lambda_kl`` overrides the stored weight for this
        call (for KL annealing)."""
        weight_kl = self.lambda_kl if lambda_kl is None else lambda_kl
        _check_weight("lambda_kl", weight_kl)
        if recon.shape[0] != mu.shape[0] or z_img.shape[0] != mu.shape[0]:
            raise ValueError(
                "SwitchVAELoss: recon, latents and z_img/z_vox must share the batch size, got "
                f"{recon.shape[0]}, {mu.shape[0]}, {z_img.shape[0]}"
            )
        rec = weighted_bce(recon, target, gamma=self.gamma, from_logits=self.from_logits)
        kl = gaussian_kl(mu, logvar)
        con = latent_contrastive(z_img, z_vox, normalize=self.normalize_latents)
        total = rec + float(weight_kl) * kl + self.lambda_contras * con
        return {"total": total, "recon": rec, "kl": kl, "contras": con}

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}, lambda_kl={self.lambda_kl}, "
            f"lambda_contras={self.lambda_contras}, normalize_latents={self.normalize_latents}, "
            f"from_logits={self.from_logits}"
        )


def _check_weight(name: str, value: float) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
