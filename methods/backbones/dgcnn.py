r"""DGCNN (Wang et al., TOG 2019) with a memory-aware EdgeConv.

EdgeConv computes, for every point :math:`i` and its :math:`k` nearest
neighbours :math:`j \in \mathcal{N}(i)` (in the current feature space, so the
graph is rebuilt at every layer),

.. math::
    x_i' = \max_{j \in \mathcal{N}(i)} h_\Theta\big([\,x_i,\; x_j - x_i\,]\big).

The textbook implementation materialises the edge features as a
``[B, 2C, N, k]`` tensor and runs ``Conv2d`` on it. Here the first layer of
:math:`h_\Theta` is split by linearity,

.. math::
    W [x_i, x_j - x_i] = (W_1 - W_2)\, x_i + W_2\, x_j = a_i + b_j,

so two per-point projections replace a :math:`k`-times larger convolution.
Two further identities remove most edge-sized tensors altogether:

* BatchNorm's batch statistics over all :math:`N k` edges follow in closed form
  from per-point quantities: for the first layer from :math:`a`, :math:`b`,
  the in-degrees and neighbour sums of :math:`b` (:func:`_edge_moments`); for
  a later linear layer :math:`z = W y` from the mean and the
  :math:`C_{in} \times C_{in}` second-moment matrix of :math:`y`
  (:func:`_linear_bn_act_max`);
* BatchNorm + LeakyReLU is monotone per channel (increasing when
  :math:`\gamma_c \ge 0`, decreasing otherwise), so the max over neighbours is
  taken *before* it, on the pre-activations (max, or min where
  :math:`\gamma_c < 0`).

A one-layer EdgeConv therefore keeps nothing of size :math:`N k C` for
backward (only per-point tensors and arg-max indices). A deeper EdgeConv MLP
keeps its hidden edge activations (one tensor per hidden layer, activations
applied in place), never the ``2C``-wide input nor the last layer's output.
The aggregation layer + max-pool over points uses the same trick. Outputs,
gradients and running statistics equal the dense formulation's (same
parameters, same graph) up to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl3d.methods.backbones.knn import knn_indices, neighbour_argmax
from ssl3d.methods.backbones.outputs import PointBackboneOutput, check_points, check_positive_int
from ssl3d.methods.backbones.pointnet import SegmentationHead

__all__ = ["DGCNN", "DGCNN_PRESETS", "EdgeConv"]

# Scratch bytes for one chunk of gathered neighbour rows (statistics / argmax).
_GATHER_BUDGET = 32 * 2**20


def _stat_dtype(x: Tensor) -> torch.dtype:
    """float32 for half precisions, else the input's own dtype (float64 stays float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def _uses_batch_stats(norm: nn.BatchNorm1d) -> bool:
    return norm.training or norm.running_mean is None


def _bn_affine(norm: nn.BatchNorm1d, mean: Tensor | None, var: Tensor | None, count: int) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``BN(z) = scale * z + shift``.

    Uses the given batch moments (biased variance over ``count`` values) in
    training, updating the running buffers exactly as ``nn.BatchNorm1d``
    would; uses the running buffers in eval mode.
    """
    if _uses_batch_stats(norm):
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


def _activate_(h: Tensor, slope: float) -> Tensor:
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


def _linear_bn_act_max(y: Tensor, weight: Tensor, norm: nn.BatchNorm1d, slope: float) -> Tensor:
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
    if _uses_batch_stats(norm):
        mean_y, second = _RowMoments.apply(flat)
        with torch.autocast(y.device.type, enabled=False):
            # Raw second moment minus outer(mean): y is a BN + LeakyReLU output,
            # so its mean/std ratio is O(1) and the cancellation costs little.
            cov = second - torch.outer(mean_y, mean_y)
            w = weight.to(mean_y.dtype)
            mean = w @ mean_y
            var = ((w @ cov) * w).sum(dim=1).clamp_min(0)
    scale, shift = _bn_affine(norm, mean, var, m * r)
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


def _edge_moments(a: Tensor, b: Tensor, nbr: Tensor) -> tuple[Tensor, Tensor]:
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


class EdgeConv(nn.Module):
    r"""Memory-aware EdgeConv (Wang et al. 2019, Eq. 7-8 with :math:`h_\Theta` an MLP).

    .. math::
        x_i' = \max_{j \in \mathcal{N}(i)} \mathrm{MLP}\big([\,x_i, x_j - x_i\,]\big),

    every MLP layer being Linear (no bias) + BatchNorm + LeakyReLU. The first
    layer's weight ``weight`` is stored exactly like the dense ``Conv2d``
    weight ``[C_1, 2C]`` (columns ``[:C]`` act on :math:`x_i`, ``[C:]`` on
    :math:`x_j - x_i`), so parameters transfer between the two forms. See the
    module docstring for how the edge tensor is avoided.

    Args:
        in_channels: :math:`C`.
        channels: output width of each MLP layer (an int for one layer).
        k: neighbours per point when no graph is passed to :meth:`forward`.
        negative_slope: LeakyReLU slope (must be >= 0 so the activation is monotone).
        knn_chunk_size: forwarded to :func:`knn_indices`.

    Shapes:
        - **input:** :math:`(B, N, C)` and optional neighbour indices :math:`(B, N, k)`
        - **output:** :math:`(B, N, C_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        channels: int | Sequence[int],
        k: int = 20,
        negative_slope: float = 0.2,
        knn_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        widths = (channels,) if isinstance(channels, int) else tuple(channels)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"channels must be a positive int or a non-empty sequence of them; got {channels!r}")
        check_positive_int("in_channels", in_channels)
        check_positive_int("k", k)
        if not negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0 (monotone activation); got {negative_slope}")
        self.in_channels, self.channels, self.k = in_channels, widths, k
        self.out_channels = widths[-1]
        self.negative_slope = float(negative_slope)
        self.knn_chunk_size = knn_chunk_size
        self.weight = nn.Parameter(torch.empty(widths[0], 2 * in_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        self.norms = nn.ModuleList(nn.BatchNorm1d(w) for w in widths)
        self.linears = nn.ModuleList(nn.Linear(p, w, bias=False) for p, w in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor, neighbours: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must be [B, N, {self.in_channels}]; got {tuple(x.shape)}")
        bsz, n, _ = x.shape
        if neighbours is None:
            neighbours = knn_indices(x, min(self.k, n), chunk_size=self.knn_chunk_size)
        if neighbours.shape[:2] != (bsz, n):
            raise ValueError(f"neighbours must be [B, N, k] = [{bsz}, {n}, k]; got {tuple(neighbours.shape)}")
        k = neighbours.shape[2]
        offsets = torch.arange(bsz, device=x.device).view(bsz, 1, 1) * n
        nbr = (neighbours + offsets).reshape(bsz * n, k)

        flat = x.reshape(bsz * n, self.in_channels)
        w_center, w_diff = self.weight.split(self.in_channels, dim=1)
        a = flat @ (w_center - w_diff).t()  # acts on x_i
        b = flat @ w_diff.t()  # acts on x_j
        norm0 = self.norms[0]
        mean = var = None
        if _uses_batch_stats(norm0):
            mean, var = _edge_moments(a, b, nbr)
        scale, shift = _bn_affine(norm0, mean, var, bsz * n * k)

        if not self.linears:
            # One layer: max over j commutes with the monotone BN + LeakyReLU.
            sign = torch.where(scale.detach() < 0, -1.0, 1.0).to(b.dtype)  # direction of BN + act
            b_max = b.gather(0, neighbour_argmax(b * sign, nbr))
            out = F.leaky_relu((a + b_max) * scale + shift, self.negative_slope)
            return out.view(bsz, n, self.out_channels)

        # Deeper MLP: hidden edge features are unavoidable, but BN is folded
        # into the per-point terms before the gather.
        centre, neighbour = (a * scale + shift).to(a.dtype), (b * scale).to(b.dtype)
        h = centre.unsqueeze(1) + neighbour[nbr]  # [BN, k, C1]
        h = _activate_(h, self.negative_slope).reshape(bsz * n * k, -1)
        for linear, norm in zip(self.linears[:-1], self.norms[1:-1]):
            h = _activate_(norm(linear(h)), self.negative_slope)
        h = h.view(bsz * n, k, -1)
        out = _linear_bn_act_max(h, self.linears[-1].weight, self.norms[-1], self.negative_slope)
        return out.view(bsz, n, self.out_channels)


#: Named configurations. ``parae``: the DGCNN segmentation network of the
#: Jigsaw3D / OcCo line that ParAE re-uses (Eckart et al. Sec. 4: five EdgeConv
#: layers, global z = 1024-d max-pool after them, per-point logits from a head on
#: [local, z]). ``cmcv``: F_p of CM-CV (Jing et al. Sec. 3.2: four EdgeConv
#: blocks of two conv layers each, 64/64/64/128 kernels, a 512-d point-wise
#: layer and max-pooling). ``dgcnn-cls``: the original classification DGCNN.
DGCNN_PRESETS: dict[str, dict[str, object]] = {
    "parae": dict(edge_channels=((64, 64), (64, 64), (64,)), global_dim=1024, pooling="max", head_channels=(512, 256)),
    "cmcv": dict(edge_channels=((64, 64), (64, 64), (64, 64), (128, 128)), global_dim=512, pooling="max"),
    "dgcnn-cls": dict(edge_channels=(64, 64, 128, 256), global_dim=1024, pooling="max+avg"),
}


class DGCNN(nn.Module):
    r"""Dynamic Graph CNN encoder with an optional per-point segmentation head.

    EdgeConv blocks (graph rebuilt in each block's input feature space; the
    first graph uses the coordinates, i.e. the first three input channels)
    produce local features :math:`x^{(1)}, \dots, x^{(L)}`; their concatenation
    :math:`l_i` is mapped by a point-wise Linear + BN + LeakyReLU layer to
    ``global_dim`` channels and pooled over points into :math:`z`
    (``"max"``, or ``"max+avg"`` concatenating both as in the DGCNN classifier).
    With ``num_point_outputs = J`` a head on :math:`[l_i, z]` gives logits.

    Args:
        in_channels: channels per point.
        edge_channels: one entry per EdgeConv block: an int (one-layer MLP) or
            a sequence of ints (MLP widths).
        global_dim: width of the aggregation layer.
        k: neighbours per point.
        num_point_outputs: :math:`J`; builds the segmentation head when set.
        pooling: ``"max"`` or ``"max+avg"``.
        dropout: dropout after each hidden head layer.
        head_channels: hidden widths of the segmentation head.
        negative_slope: LeakyReLU slope.
        knn_chunk_size: forwarded to :func:`knn_indices` (``None``: automatic).

    Attributes:
        global_dim: :math:`D_g`, width of :math:`z` (twice the aggregation
            width for ``"max+avg"``).
        point_dim: :math:`D_p`, sum of the blocks' output widths.

    Shapes:
        - **input:** :math:`(B, N, C)`
        - **output:** :class:`PointBackboneOutput`: global :math:`(B, D_g)`,
          point features :math:`(B, N, D_p)`, logits :math:`(B, N, J)` or None.
    """

    def __init__(
        self,
        in_channels: int = 3,
        edge_channels: Sequence[int | Sequence[int]] = (64, 64, 128, 256),
        global_dim: int = 1024,
        k: int = 20,
        num_point_outputs: int | None = None,
        pooling: Literal["max", "max+avg"] = "max",
        dropout: float = 0.5,
        head_channels: Sequence[int] = (256, 256, 128),
        negative_slope: float = 0.2,
        knn_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "max+avg"):
            raise ValueError(f"pooling must be 'max' or 'max+avg'; got {pooling!r}")
        if len(edge_channels) == 0:
            raise ValueError("edge_channels must list at least one EdgeConv block")
        if num_point_outputs is not None:
            check_positive_int("num_point_outputs", num_point_outputs)
        check_positive_int("global_dim", global_dim)
        self.in_channels, self.k, self.pooling = in_channels, k, pooling
        self.num_point_outputs = num_point_outputs
        self.negative_slope = float(negative_slope)
        self.knn_chunk_size = knn_chunk_size
        convs, prev = [], in_channels
        for block in edge_channels:
            conv = EdgeConv(prev, block, k=k, negative_slope=negative_slope, knn_chunk_size=knn_chunk_size)
            convs.append(conv)
            prev = conv.out_channels
        self.convs = nn.ModuleList(convs)
        self.point_dim = sum(c.out_channels for c in convs)
        self.aggregate = nn.Linear(self.point_dim, global_dim, bias=False)
        self.aggregate_norm = nn.BatchNorm1d(global_dim)
        self.global_dim = global_dim * (2 if pooling == "max+avg" else 1)
        self.head = None
        if num_point_outputs is not None:
            act = lambda: nn.LeakyReLU(negative_slope, inplace=True)  # noqa: E731
            self.head = SegmentationHead(
                self.point_dim, self.global_dim, head_channels, num_point_outputs, act, dropout
            )

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> "DGCNN":
        """Build a named configuration from :data:`DGCNN_PRESETS`; keywords override it."""
        if name not in DGCNN_PRESETS:
            raise ValueError(f"unknown DGCNN preset {name!r}; valid: {sorted(DGCNN_PRESETS)}")
        return cls(**{**DGCNN_PRESETS[name], **overrides})  # type: ignore[arg-type]

    def forward(self, points: Tensor) -> PointBackboneOutput:
        check_points(points, self.in_channels)
        bsz, n, _ = points.shape
        k = min(self.k, n)
        x, feats = points, []
        for layer, conv in enumerate(self.convs):
            graph_space = x[..., :3] if layer == 0 else x
            x = conv(x, knn_indices(graph_space, k, chunk_size=self.knn_chunk_size))
            feats.append(x)
        local = torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]
        if self.pooling == "max":
            # Max over points commutes with the monotone BN + LeakyReLU.
            global_feature = _linear_bn_act_max(local, self.aggregate.weight, self.aggregate_norm,
                                                self.negative_slope)
        else:
            z = self.aggregate(local).reshape(bsz * n, -1)
            h = _activate_(self.aggregate_norm(z), self.negative_slope).view(bsz, n, -1)
            global_feature = torch.cat([h.max(dim=1).values, h.mean(dim=1)], dim=-1)
        logits = self.head(local, global_feature) if self.head is not None else None
        return PointBackboneOutput(global_feature=global_feature, point_features=local, logits=logits)
