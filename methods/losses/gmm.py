r"""ParAE's parametric bottleneck (Eckart et al., CVPR 2021, Sec. 3, Eq. 4-11).

The Gaussian mixture of point-wise partition logits, and the points' negative log-likelihood under
it. Everything is computed in log space (``log_softmax``, log-sum-exp over points and components,
Cholesky factors and triangular solves), so the loss and its gradients stay finite when a partition
is (numerically) empty or all points coincide. Equations and departures: docs/methods.md#parae
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["GMMParams", "gmm_parameters", "gmm_log_likelihood", "ParametricBottleneckLoss"]

_LOG_2PI = math.log(2.0 * math.pi)


class GMMParams(NamedTuple):
    r"""Parameters :math:`\Theta = \{\pi_j, \mu_j, \Sigma_j\}_{j=1}^{J}` of a
    batch of 3D Gaussian mixtures.

    Shapes:
        - **pi**: :math:`(B, J)`, rows sum to 1
        - **mu**: :math:`(B, J, 3)`
        - **sigma**: :math:`(B, J, 3, 3)`, symmetric positive definite
    """

    pi: Tensor
    mu: Tensor
    sigma: Tensor


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Cholesky and the 3x3 statistics need at least float32 (autocast may hand
    # us float16/bfloat16 logits).
    return torch.promote_types(dtype, torch.float32)


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off: under train.precision=bf16/fp16 it would run the einsums
    and solves in half precision again, after the inputs were cast up."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_points(points: Tensor) -> None:
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [B, N, 3], got {tuple(points.shape)}")
    if points.shape[1] < 1:
        raise ValueError("points must contain at least one point per cloud (N >= 1)")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating-point tensor, got {points.dtype}")


def _check_inputs(points: Tensor, logits: Tensor, eps: float) -> None:
    _check_points(points)
    if logits.dim() != 3 or logits.shape[:2] != points.shape[:2] or logits.shape[2] < 1:
        raise ValueError(
            "logits must have shape [B, N, J] with J >= 1 and the same B, N as points "
            f"{tuple(points.shape)}, got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")


def _fit(points: Tensor, logits: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 5-7 in log space; returns (log_pi [B, J], mu [B, J, 3], sigma [B, J, 3, 3])."""
    dtype = _compute_dtype(torch.promote_types(points.dtype, logits.dtype))
    points, logits = points.to(dtype), logits.to(dtype)
    n = points.shape[1]
    log_gamma = torch.log_softmax(logits, dim=2)  # Eq. 4, [B, N, J]
    # log sum_i gamma_ij; finite even when every gamma_ij underflows to 0.
    log_mass = torch.logsumexp(log_gamma, dim=1)  # [B, J]
    log_pi = log_mass - math.log(n)  # Eq. 5
    # gamma_ij / sum_i gamma_ij as a softmax over points: the 1 / (N pi_j)
    # normalisation of Eq. 6-7 without ever dividing by a vanishing mass.
    weights = torch.softmax(log_gamma, dim=1)  # [B, N, J]
    mu = torch.einsum("bnj,bnk->bjk", weights, points)  # Eq. 6
    centred = points[:, None, :, :] - mu[:, :, None, :]  # [B, J, N, 3]
    # Centred second moments are PSD by construction, unlike E[pp^T] - mu mu^T.
    sigma = torch.einsum("bnj,bjnk,bjnl->bjkl", weights, centred, centred)  # Eq. 7
    eye = torch.eye(3, dtype=dtype, device=points.device)
    sigma = 0.5 * (sigma + sigma.transpose(-1, -2)) + eps * eye
    return log_pi, mu, sigma


def _log_likelihood(points: Tensor, log_pi: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """log sum_j pi_j N(p_i; mu_j, Sigma_j) for every point, [B, N]."""
    chol, info = torch.linalg.cholesky_ex(sigma)
    if bool((info != 0).any()):
        raise ValueError(
            "a mixture covariance is not positive definite (degenerate partition); "
            "use a ridge eps > 0 in gmm_parameters / ParametricBottleneckLoss"
        )
    diff = points[:, None, :, :] - mu[:, :, None, :]  # [B, J, N, 3]
    # L y = (p - mu)  =>  |y|^2 = (p - mu)^T Sigma^-1 (p - mu), no explicit inverse.
    y = torch.linalg.solve_triangular(chol, diff.transpose(-1, -2), upper=False)  # [B, J, 3, N]
    mahalanobis = y.pow(2).sum(dim=2)  # [B, J, N]
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(dim=-1)  # [B, J]
    log_normal = -0.5 * (3.0 * _LOG_2PI + log_det[:, :, None] + mahalanobis)
    return torch.logsumexp(log_pi[:, :, None] + log_normal, dim=1)  # Eq. 10, [B, N]


def gmm_parameters(points: Tensor, logits: Tensor, eps: float = 1e-4) -> GMMParams:
    r"""The parameter-free function :math:`\xi(\mathcal{P}, \mathcal{S}) =
    \Theta` of ParAE (Section 3.2-3.3, Eq. 4-7).

    .. math::
        \gamma_{ij} = \frac{\exp s_{ij}}{\sum_{j'} \exp s_{ij'}}, \quad
        \pi_j = \frac{1}{N} \sum_{i=1}^{N} \gamma_{ij}, \quad
        \mu_j = \frac{1}{N\pi_j} \sum_{i=1}^{N} \gamma_{ij}\, \mathbf{p}_i,

    .. math::
        \Sigma_j = \frac{1}{N\pi_j} \sum_{i=1}^{N} \gamma_{ij}
            (\mathbf{p}_i - \mu_j)(\mathbf{p}_i - \mu_j)^\top + \epsilon I.

    :math:`\Sigma_j` is the maximum-likelihood (biased) weighted covariance of
    Eq. 7. The ridge :math:`\epsilon I` is not in the paper: it keeps every
    :math:`\Sigma_j` in :math:`S^3_{++}` (Cholesky never fails for a flat,
    linear or single-point partition) and bounds each component's density,
    which removes the classic GMM singularity where a component collapses onto
    one point. The normalised weights :math:`\gamma_{ij} / (N\pi_j)` are
    computed as a softmax over points of :math:`\log\gamma_{ij}`, so an empty
    partition never divides by zero.

    Args:
        points (Tensor): the point clouds :math:`\mathcal{P}`.
        logits (Tensor): point-wise partition scores :math:`\mathcal{S}`.
        eps (float, optional): covariance ridge, :math:`\ge 0` (in squared
            units of the points; :math:`10^{-4}` is a 0.01 standard deviation
            floor for clouds in the unit sphere). (default: :obj:`1e-4`)

    Returns:
        GMMParams: ``(pi, mu, sigma)`` in the computation dtype (at least
        float32).

    Shapes:
        - **points**: :math:`(B, N, 3)`
        - **logits**: :math:`(B, N, J)`
        - **output**: :math:`(B, J)`, :math:`(B, J, 3)`, :math:`(B, J, 3, 3)`
    """
    _check_inputs(points, logits, eps)
    with _full_precision(points.device):
        log_pi, mu, sigma = _fit(points, logits, eps)
        return GMMParams(log_pi.exp(), mu, sigma)


def gmm_log_likelihood(points: Tensor, params: GMMParams) -> Tensor:
    r"""Per-point log-density of a Gaussian mixture (ParAE Eq. 8-10).

    .. math::
        \log g(\mathbf{p}_i; \Theta) = \log \sum_{j=1}^{J} \pi_j\,
            \mathcal{N}(\mathbf{p}_i; \mu_j, \Sigma_j)

    evaluated as a log-sum-exp over components, with
    :math:`\log\det\Sigma_j = 2\sum_k \log L_{j,kk}` and the Mahalanobis term
    from a triangular solve with the Cholesky factor :math:`L_j`.

    Args:
        points (Tensor): points to score.
        params (GMMParams): mixture parameters, e.g. from
            :func:`gmm_parameters`. Components with :math:`\pi_j = 0` are
            ignored (their log-weight is clamped to the smallest normal
            float, which keeps gradients finite).

    Returns:
        Tensor: :math:`\log g(\mathbf{p}_i; \Theta)` for every point.

    Raises:
        ValueError: on bad shapes, or if a covariance is not positive definite.

    Shapes:
        - **points**: :math:`(B, N, 3)`
        - **params**: :math:`(B, J)`, :math:`(B, J, 3)`, :math:`(B, J, 3, 3)`
        - **output**: :math:`(B, N)`
    """
    _check_points(points)
    pi, mu, sigma = params
    b = points.shape[0]
    if pi.dim() != 2 or pi.shape[0] != b or pi.shape[1] < 1:
        raise ValueError(f"params.pi must have shape [B={b}, J], got {tuple(pi.shape)}")
    j = pi.shape[1]
    if tuple(mu.shape) != (b, j, 3) or tuple(sigma.shape) != (b, j, 3, 3):
        raise ValueError(
            f"params.mu / params.sigma must have shapes [{b}, {j}, 3] / [{b}, {j}, 3, 3], "
            f"got {tuple(mu.shape)} / {tuple(sigma.shape)}"
        )
    dtype = _compute_dtype(
        torch.promote_types(torch.promote_types(points.dtype, pi.dtype), sigma.dtype)
    )
    with _full_precision(points.device):
        log_pi = torch.log(pi.to(dtype).clamp_min(torch.finfo(dtype).tiny))
        return _log_likelihood(points.to(dtype), log_pi, mu.to(dtype), sigma.to(dtype))


class ParametricBottleneckLoss(nn.Module):
    r"""ParAE's pretext loss: the negative log-likelihood of a point cloud under
    the Gaussian mixture its own soft partitions define (Section 3.3, Eq. 8-11).

    .. math::
        \mathcal{L}(\mathcal{P}, \mathcal{S}) = -\frac{1}{N} \sum_{i=1}^{N}
            \log g\big(\mathbf{p}_i;\ \xi(\mathcal{P}, \mathcal{S})\big)

    averaged over the batch (the Monte Carlo estimate of the expectation in
    Eq. 11). As in Eq. 11, the same points are used to fit
    :math:`\Theta = \xi(\mathcal{P}, \mathcal{S})` (:func:`gmm_parameters`)
    and to score them; gradients flow through :math:`\Theta` into the logits.
    Eq. 11 sums over points; the default ``"mean"`` divides by :math:`N` so
    the scale does not depend on the cloud size (``"sum"`` keeps Eq. 11's
    per-cloud sum).

    Args:
        eps (float, optional): covariance ridge of :func:`gmm_parameters`.
            (default: :obj:`1e-4`)
        reduction (str, optional): ``"mean"`` over points and batch,
            ``"sum"`` over points then mean over batch, or ``"none"`` for the
            per-point NLL. (default: :obj:`"mean"`)

    Shapes:
        - **points**: :math:`(B, N, 3)`
        - **logits**: :math:`(B, N, J)`
        - **output**: :math:`()`, or :math:`(B, N)` for ``reduction="none"``
    """

    _REDUCTIONS = ("mean", "sum", "none")

    def __init__(self, eps: float = 1e-4, reduction: str = "mean") -> None:
        super().__init__()
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        if reduction not in self._REDUCTIONS:
            raise ValueError(f"reduction must be one of {self._REDUCTIONS}, got {reduction!r}")
        self.eps = float(eps)
        self.reduction = reduction

    def forward(self, points: Tensor, logits: Tensor) -> Tensor:
        _check_inputs(points, logits, self.eps)
        with _full_precision(points.device):
            log_pi, mu, sigma = _fit(points, logits, self.eps)
            nll = -_log_likelihood(points.to(mu.dtype), log_pi, mu, sigma)  # [B, N]
        if self.reduction == "mean":
            return nll.mean()
        if self.reduction == "sum":
            return nll.sum(dim=1).mean()
        return nll

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
