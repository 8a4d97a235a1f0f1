r"""PointNet (Qi et al., CVPR 2017) as a shared point-cloud backbone.

The network used by ParAE (Eckart et al., CVPR 2021, Sec. 4: "PointNet
segmentation network", global feature :math:`z` "directly after the point-wise
max-pool operation", latent dimension 1024) and by the random-init baseline.

Also home of the two building blocks that :class:`~ssl3d.methods.backbones.dgcnn.DGCNN`
reuses: :class:`PointwiseMLP` (shared 1x1 layers on ``[B, N, C]``) and
:class:`SegmentationHead` (per-point head on ``[local, repeated global]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ssl3d.methods.backbones.outputs import PointBackboneOutput, check_points, check_positive_int

__all__ = ["PointNet", "PointwiseMLP", "SegmentationHead", "TNet", "transform_regularizer"]


class PointwiseMLP(nn.Module):
    r"""Shared per-point layers :math:`h \mapsto \sigma(\mathrm{BN}(W h))`.

    Equivalent to a stack of ``Conv1d(kernel_size=1)`` + BatchNorm + activation
    on ``[B, C, N]``, but works on the point-major layout ``[..., C]`` so one
    GEMM covers all points. Linear layers carry no bias because BatchNorm
    follows them.

    Args:
        in_channels: input channels :math:`C`.
        channels: output width of each layer.
        activation: factory for the non-linearity (default ``nn.ReLU``).

    Shapes:
        - **input:** :math:`(*, C)`
        - **output:** :math:`(*, \text{channels}[-1])`
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if len(channels) == 0:
            raise ValueError("channels must list at least one layer width")
        layers: list[nn.Module] = []
        prev = in_channels
        for width in channels:
            check_positive_int("layer width", width)
            layers += [nn.Linear(prev, width, bias=False), nn.BatchNorm1d(width), activation()]
            prev = width
        self.layers = nn.ModuleList(layers)
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        for layer in self.layers:
            h = layer(h)
        return h.reshape(*lead, self.out_channels)


class SegmentationHead(nn.Module):
    r"""Per-point head on :math:`[\,l_i, z\,]` (local feature, repeated global).

    As in the PointNet / DGCNN segmentation networks, the global feature is
    concatenated to every point's local feature. The first layer is split by
    linearity, :math:`W[l_i, z] = W_l l_i + W_z z`, so :math:`W_z z` is
    computed once per cloud and the ``[B, N, D_l + D_g]`` concatenation is never
    materialised.

    Args:
        local_dim: :math:`D_l`.
        global_dim: :math:`D_g`.
        hidden: widths of the hidden layers (Linear + BN + activation).
        out_channels: :math:`J`, per-point outputs of the final Linear layer.
        activation: factory for the non-linearity.
        dropout: dropout probability after every hidden layer (0 disables).

    Shapes:
        - **input:** local :math:`(B, N, D_l)`, global :math:`(B, D_g)`
        - **output:** :math:`(B, N, J)`
    """

    def __init__(
        self,
        local_dim: int,
        global_dim: int,
        hidden: Sequence[int],
        out_channels: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(hidden) == 0:
            raise ValueError("hidden must list at least one layer width")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.local_in = nn.Linear(local_dim, hidden[0], bias=False)
        self.global_in = nn.Linear(global_dim, hidden[0], bias=False)
        first = [nn.BatchNorm1d(hidden[0]), activation()]
        if dropout > 0:
            first.append(nn.Dropout(dropout))
        self.first = nn.Sequential(*first)
        rest: list[nn.Module] = []
        for prev, width in zip(hidden[:-1], hidden[1:]):
            rest += [nn.Linear(prev, width, bias=False), nn.BatchNorm1d(width), activation()]
            if dropout > 0:
                rest.append(nn.Dropout(dropout))
        rest.append(nn.Linear(hidden[-1], out_channels))
        self.rest = nn.Sequential(*rest)

    def forward(self, local: Tensor, global_feature: Tensor) -> Tensor:
        b, n, _ = local.shape
        h = self.local_in(local) + self.global_in(global_feature).unsqueeze(1)
        h = self.first(h.reshape(b * n, -1))
        return self.rest(h).reshape(b, n, -1)


class TNet(nn.Module):
    r"""PointNet's joint alignment network (Sec. 4.2): predicts a :math:`k \times k` matrix.

    A mini-PointNet (shared MLP 64, 128, 1024, max-pool, FC 512, 256) whose
    last layer is initialised to output the identity, so training starts from
    "no transform".

    Args:
        in_channels: channels of the points/features fed to the T-Net.
        k: size of the predicted matrix.

    Shapes:
        - **input:** :math:`(B, N, C)`
        - **output:** :math:`(B, k, k)`
    """

    def __init__(self, in_channels: int, k: int) -> None:
        super().__init__()
        self.k = check_positive_int("k", k)
        self.point_mlp = PointwiseMLP(in_channels, (64, 128, 1024))
        self.fc = PointwiseMLP(1024, (512, 256))
        self.out = nn.Linear(256, k * k)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.eye(k).flatten())

    def forward(self, x: Tensor) -> Tensor:
        g = self.point_mlp(x).max(dim=1).values
        return self.out(self.fc(g)).view(-1, self.k, self.k)


def transform_regularizer(transform: Tensor) -> Tensor:
    r"""PointNet's orthogonality loss (Eq. 2), averaged over the batch.

    .. math::
        L_{reg} = \frac{1}{B} \sum_b \lVert I - A_b A_b^\top \rVert_F^2

    Args:
        transform: predicted alignment matrices :math:`A`.

    Returns:
        A scalar tensor.

    Shapes:
        - **transform:** :math:`(B, k, k)`
    """
    if transform.dim() != 3 or transform.shape[1] != transform.shape[2]:
        raise ValueError(f"transform must be [B, k, k]; got {tuple(transform.shape)}")
    eye = torch.eye(transform.shape[1], device=transform.device, dtype=transform.dtype)
    diff = eye - transform @ transform.transpose(1, 2)
    return diff.pow(2).sum(dim=(1, 2)).mean()


class PointNet(nn.Module):
    r"""PointNet encoder with an optional segmentation head (Qi et al. 2017, Fig. 2).

    Per point: shared MLP (64, 64) :math:`\to` optional feature T-Net
    :math:`\to` shared MLP (64, 128, ``global_dim``), all Linear + BN + ReLU;
    then a symmetric max-pool over points gives the global feature

    .. math::
        z = \max_{i=1..N} h(p_i) \in \mathbb{R}^{D_g},

    which is permutation invariant. The per-point local features are the
    64-d features after the feature transform (the ones the PointNet
    segmentation network concatenates with :math:`z`). With
    ``num_point_outputs = J`` a head (512, 256, 128 :math:`\to J`) on
    :math:`[l_i, z]` produces the per-point logits :math:`\mathcal{S}` that
    ParAE (Sec. 3) interprets as GMM responsibilities.

    The input T-Net, when enabled, aligns the first three channels
    (coordinates); extra channels (e.g. normals) pass through untouched.

    Args:
        in_channels: channels per point (3 for xyz, 6 with normals).
        global_dim: :math:`D_g`, width of the last shared layer and of :math:`z`.
        num_point_outputs: :math:`J`; builds the segmentation head when set.
        input_transform: use the 3x3 input T-Net.
        feature_transform: use the 64x64 feature T-Net (pair it with
            :func:`transform_regularizer` on ``output.feature_transform``).

    Attributes:
        global_dim: :math:`D_g`.
        point_dim: :math:`D_p = 64`.

    Shapes:
        - **input:** :math:`(B, N, C)`
        - **output:** :class:`PointBackboneOutput` with global :math:`(B, D_g)`,
          point features :math:`(B, N, 64)`, logits :math:`(B, N, J)` or None.
    """

    def __init__(
        self,
        in_channels: int = 3,
        global_dim: int = 1024,
        num_point_outputs: int | None = None,
        input_transform: bool = False,
        feature_transform: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.global_dim = check_positive_int("global_dim", global_dim)
        if num_point_outputs is not None:
            check_positive_int("num_point_outputs", num_point_outputs)
        if input_transform and in_channels < 3:
            raise ValueError("input_transform needs at least 3 channels (xyz first)")
        self.num_point_outputs = num_point_outputs
        self.point_dim = 64

        self.input_tnet = TNet(in_channels, 3) if input_transform else None
        self.mlp1 = PointwiseMLP(in_channels, (64, 64))
        self.feature_tnet = TNet(64, 64) if feature_transform else None
        self.mlp2 = PointwiseMLP(64, (64, 128, global_dim))
        self.head = (
            SegmentationHead(self.point_dim, global_dim, (512, 256, 128), num_point_outputs)
            if num_point_outputs is not None
            else None
        )

    def forward(self, points: Tensor) -> PointBackboneOutput:
        check_points(points, self.in_channels)
        x = points
        t_in = None
        if self.input_tnet is not None:
            t_in = self.input_tnet(x)
            xyz = torch.bmm(x[..., :3], t_in)
            x = torch.cat([xyz, x[..., 3:]], dim=-1) if x.shape[-1] > 3 else xyz
        local = self.mlp1(x)
        t_feat = None
        if self.feature_tnet is not None:
            t_feat = self.feature_tnet(local)
            local = torch.bmm(local, t_feat)
        global_feature = self.mlp2(local).max(dim=1).values
        logits = self.head(local, global_feature) if self.head is not None else None
        return PointBackboneOutput(
            global_feature=global_feature,
            point_features=local,
            logits=logits,
            input_transform=t_in,
            feature_transform=t_feat,
        )
