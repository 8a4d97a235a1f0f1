r"""BatchNorm over EdgeConv's edges without materialising them: closed-form moments and max-before-activation.

:func:`edge_moments` (first layer, :math:`e_{ij} = a_i + b_j`) and :func:`linear_bn_act_max` (a later
linear layer) give the batch statistics over all :math:`N k` edges from per-point quantities;
:func:`bn_affine` folds BatchNorm into a per-channel scale and shift, updating the running statistics
exactly as ``nn.BatchNorm1d`` does. Derivation: docs/methods.md#memory-aware-edgeconv-dgcnn
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["activate_", "bn_affine", "edge_moments", "linear_bn_act_max", "uses_batch_stats"]

# Scratch bytes for one chunk of gathered neighbour rows (statistics / argmax).
_GATHER_BUDGET = 32 * 2**20


def _stat_dtype(x: Tensor) -> torch.dtype:
    """float32 for half precisions, else the input's own dtype (float64 stays float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def uses_batch_stats(norm: nn.BatchNorm1d) -> bool:
    """Whether ``norm`` normalises with the batch's statistics (training, or no running buffers)."""
    return norm.training or norm.running_mean is None


def bn_affine(norm: nn.BatchNorm1d, mean: Tensor | None, var: Tensor | None, count: int) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``BN(z) = scale * z + shift``.

    Uses the given batch moments (biased variance over ``count`` values) in
    training, updating the running buffers exactly as ``nn.BatchNorm1d``
    would; uses the running buffers in eval mode.
    """
    if uses_batch_stats(norm):
        assert mean is not None and var is not None
        if norm.training and norm.running_mean is not None:
            if count < 2:
                raise ValueError("BatchNorm needs more than one value per channel in training mode")
            with torch.no_grad():
                norm.num_batches_tracked.add_(1)
                momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
                norm.running_mean.lerp_(mean.detach().to(norm.running_mean.dtype), momentum)
                unbiased = var.detach() * (count / (count - 1))
                norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)
    else:
        mean, var = norm.running_mean, norm.running_var
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def activate_(h: Tensor, slope: float) -> Tensor:
    """LeakyReLU in place. Autograd then keeps only the result, which the next
    linear layer keeps anyway, instead of a second edge-sized input copy."""
    return F.leaky_relu_(h, slope) if slope > 0 else F.relu_(h)


class _RowMoments(torch.autograd.Function):
    r"""Mean :math:`\bar y` and raw second moment :math:`\tfrac1M Y^\top Y` of the rows of ``y``.

    Accumulated in float32 at least (float64 inputs stay float64).

    Works in row chunks so a half-precision ``y`` is never copied whole to
    float32, and keeps only ``y`` itself for backward (which the following
    linear layer keeps anyway), so the statistics cost no extra edge-sized
    memory: :math:`\partial L / \partial Y = \tfrac1M (\mathbf{1} g_1^\top + Y (G_2 + G_2^\top))`.
    """

    @staticmethod
    def forward(ctx, y: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        rows, c = y.shape
        acc = _stat_dtype(y)
        step = max(1, _GATHER_BUDGET // (4 * c))
        first = torch.zeros(c, dtype=acc, device=y.device)
        second = torch.zeros(c, c, dtype=acc, device=y.device)
        with torch.autocast(y.device.type, enabled=False):
            for chunk in y.split(step):
                cf = chunk.to(acc)
                first += cf.sum(dim=0)
                second.addmm_(cf.t(), cf)
        ctx.save_for_backward(y)
        return first / rows, second / rows

    @staticmethod
    def backward(ctx, g_first: Tensor | None, g_second: Tensor | None) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        rows, c = y.shape
        acc = _stat_dtype(y)
        g1 = torch.zeros(c, dtype=acc, device=y.device) if g_first is None else g_first.to(acc) / rows
        g2 = torch.zeros(c, c, dtype=acc, device=y.device)
        if g_second is not None:
            g2 = (g_second + g_second.t()).to(acc) / rows
        out = torch.empty_like(y)
        step = max(1, _GATHER_BUDGET // (4 * c))
        with torch.autocast(y.device.type, enabled=False):
            for src, dst in zip(y.split(step), out.split(step)):
                dst.copy_(torch.addmm(g1, src.to(acc), g2))
        return out


def linear_bn_act_max(y: Tensor, weight: Tensor, norm: nn.BatchNorm1d, slope: float) -> Tensor:
    r"""``max_r LeakyReLU(BN(y W^T))`` over dim 1, keeping nothing edge-sized but ``y``.

    BatchNorm statistics of :math:`z = W y` over all :math:`M R` rows follow
    from the first two moments of :math:`y`:
    :math:`\mu_z = W \mu_y`, :math:`\sigma_z^2 = \mathrm{diag}(W \Sigma_y W^\top)`
    (a :math:`C_{in} \times C_{in}` GEMM), and BN + LeakyReLU is monotone per
    channel, so only the max (or, for :math:`\gamma_c < 0`, the min) of
    :math:`z` over :math:`r` is needed. ``z`` itself is freed after the forward;
    backward needs ``y`` (kept by the GEMM) and the arg-max indices only.

    Shapes:
        - **y:** :math:`(M, R, C_{in})`; **weight:** :math:`(C, C_{in})`
        - **output:** :math:`(M, C)`
    """
    m, r, c_in = y.shape
    flat = y.reshape(m * r, c_in)
    z = (flat @ weight.t()).view(m, r, -1)
    mean = var = None
    if uses_batch_stats(norm):
        mean_y, second = _RowMoments.apply(flat)
        with torch.autocast(y.device.type, enabled=False):
            # Raw second moment minus outer(mean): y is a BN + LeakyReLU output,
            # so its mean/std ratio is O(1) and the cancellation costs little.
            cov = second - torch.outer(mean_y, mean_y)
            w = weight.to(mean_y.dtype)
            mean = w @ mean_y
            var = ((w @ cov) * w).sum(dim=1).clamp_min(0)
    scale, shift = bn_affine(norm, mean, var, m * r)
    negative = scale.detach() < 0
    if not bool(negative.any()):
        extreme = z.max(dim=1).values
    elif bool(negative.all()):
        extreme = z.min(dim=1).values
    else:  # mixed signs: both reductions, each channel keeps its own
        extreme = torch.where(negative, z.min(dim=1).values, z.max(dim=1).values)
    return F.leaky_relu(extreme * scale + shift, slope)


def _row_chunk(rows: int, k: int, channels: int, itemsize: int) -> int:
    return max(1, min(rows, _GATHER_BUDGET // max(1, k * channels * itemsize)))


def edge_moments(a: Tensor, b: Tensor, nbr: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean and biased variance of :math:`e_{ij} = a_i + b_j` over all edges, in closed form.

    With in-degrees :math:`c_j = |\{i : j \in \mathcal{N}(i)\}|`, centred
    :math:`\bar a_i = a_i - \mathrm{mean}(a)`,
    :math:`\bar b_j = b_j - \frac{1}{Mk}\sum_j c_j b_j` and neighbour sums
    :math:`S_i = \sum_{j \in \mathcal{N}(i)} \bar b_j`,

    .. math::
        \mu = \mathrm{mean}(a) + \tfrac{1}{Mk}\textstyle\sum_j c_j b_j, \qquad
        \sigma^2 = \tfrac{1}{Mk}\Big(k \textstyle\sum_i \bar a_i^2
            + 2 \sum_i \bar a_i S_i + \sum_j c_j \bar b_j^2\Big).

    Differentiable in ``a`` and ``b``; only ``[M, C]`` tensors are kept for
    backward.

    Shapes:
        - **a, b:** :math:`(M, C)` (:math:`M = B N` flattened points)
        - **nbr:** :math:`(M, k)` flat neighbour indices
        - **output:** two :math:`(C,)` tensors
    """
    rows, k = nbr.shape
    count = rows * k
    # Per-point tensors only, so float32 is cheap and keeps sums over N k
    # edges exact enough under mixed precision.
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.to(_stat_dtype(a)), b.to(_stat_dtype(b))
        degree = torch.bincount(nbr.reshape(-1), minlength=rows).to(b.dtype)
        mean_a = a.mean(dim=0)
        mean_b = (degree @ b) / count
        a_c = a - mean_a
        b_c = b - mean_b
        step = _row_chunk(rows, k, b.shape[1], b.element_size())
        cross = sum(
            (a_c[s : s + step] * b_c[nbr[s : s + step]].sum(dim=1)).sum(dim=0) for s in range(0, rows, step)
        )
        var = (k * a_c.pow(2).sum(dim=0) + 2 * cross + degree @ b_c.pow(2)) / count
    return mean_a + mean_b, var.clamp_min(0)
