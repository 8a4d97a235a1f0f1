r"""DGCNN (Wang et al., TOG 2019) with a memory-aware EdgeConv.

The first EdgeConv layer is split by linearity, :math:`W [x_i, x_j - x_i] = (W_1 - W_2) x_i + W_2 x_j`,
so no ``[B, 2C, N, k]`` edge tensor is built; BatchNorm's edge statistics come in closed form from
per-point quantities and, BatchNorm + LeakyReLU being monotone per channel, the max over neighbours
is taken before them (:mod:`~ssl3d.methods.backbones.edge_batchnorm`). Results equal the dense
formulation's up to rounding. Derivation: docs/methods.md#memory-aware-edgeconv-dgcnn
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl3d.methods.backbones.edge_batchnorm import (
    activate_, bn_affine, edge_moments, linear_bn_act_max, uses_batch_stats,
)
from ssl3d.methods.backbones.knn import knn_indices, neighbour_argmax
from ssl3d.methods.backbones.outputs import PointBackboneOutput, check_points, check_positive_int
from ssl3d.methods.backbones.pointnet import SegmentationHead

__all__ = ["DGCNN", "DGCNN_PRESETS", "EdgeConv"]

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
        if uses_batch_stats(norm0):
            mean, var = edge_moments(a, b, nbr)
        scale, shift = bn_affine(norm0, mean, var, bsz * n * k)

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
        h = activate_(h, self.negative_slope).reshape(bsz * n * k, -1)
        for linear, norm in zip(self.linears[:-1], self.norms[1:-1]):
            h = activate_(norm(linear(h)), self.negative_slope)
        h = h.view(bsz * n, k, -1)
        out = linear_bn_act_max(h, self.linears[-1].weight, self.norms[-1], self.negative_slope)
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
            global_feature = linear_bn_act_max(local, self.aggregate.weight, self.aggregate_norm,
                                                self.negative_slope)
        else:
            z = self.aggregate(local).reshape(bsz * n, -1)
            h = activate_(self.aggregate_norm(z), self.negative_slope).view(bsz, n, -1)
            global_feature = torch.cat([h.max(dim=1).values, h.mean(dim=1)], dim=-1)
        logits = self.head(local, global_feature) if self.head is not None else None
        return PointBackboneOutput(global_feature=global_feature, point_features=local, logits=logits)
