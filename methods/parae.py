r"""ParAE: point-cloud features learnt by fitting a Gaussian mixture through a segmentation network.

Paper: B. Eckart, W. Yuan, C. Liu, J. Kautz, "Self-Supervised Learning on 3D Point Clouds by
Learning Discrete Generative Models", CVPR 2021 (no official code). The random-DGCNN baseline
matched to ``parae-dgcnn`` lives in :mod:`ssl3d.methods.baselines`.
Paper-to-code map and departures: docs/methods.md#parae
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ssl3d.methods.backbones.dgcnn import DGCNN
from ssl3d.methods.backbones.outputs import PointBackboneOutput
from ssl3d.methods.backbones.pointnet import PointNet, transform_regularizer
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.losses.gmm import GMMParams, ParametricBottleneckLoss, gmm_parameters

__all__ = ["ParAE", "ParAEConfig", "ParAEDGCNN", "ParAEDGCNNConfig", "ParAENet", "random_point_subset"]

_PAPER_PRETRAIN = dict(epochs=25, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=1e-4,
                       scheduler="step", step_size=20, gamma=0.7)


@dataclass(frozen=True)
class ParAEConfig(MethodConfig):
    """ParAE settings; defaults are the paper's (Sec. 4.1-4.2) or, where it is silent, stated choices."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(**_PAPER_PRETRAIN))  # 25 epochs (Sec. 4.2); optimiser our choice
    backbone: Literal["pointnet", "dgcnn"] = "pointnet"  # f_psi: the segmentation network (fixed per registered variant)
    num_partitions: int = field(default=32, metadata={"range": "[1, inf)"})  # J, partitions = mixture components (Sec. 4.1)
    global_dim: int = field(default=1024, metadata={"range": "[1, inf)"})  # width of the global feature z, the embedding ("latent dimension 1024", Sec. 4.1)
    pretrain_points: int = field(default=1024, metadata={"range": "[1, inf)"})  # points per cloud in the pretext task (N, Sec. 4.2); a random subset when the cloud has more
    covariance_eps: float = field(default=1e-4, metadata={"range": "[0, inf)"})  # ridge added to every Sigma_j (not in the paper; keeps it positive definite)
    input_transform: bool = True  # PointNet: the 3x3 input T-Net of the PointNet segmentation network
    feature_transform: bool = True  # PointNet: the 64x64 feature T-Net
    transform_reg_weight: float = field(default=1e-3, metadata={"range": "[0, inf)"})  # PointNet: weight of the feature-transform orthogonality loss (Qi et al.)
    k: int = field(default=20, metadata={"range": "[1, inf)"})  # DGCNN: neighbours per point in every EdgeConv
    head_dropout: float = field(default=0.5, metadata={"range": "[0, 1)"})  # DGCNN: dropout in the segmentation head
    in_channels: int = field(default=3, metadata={"range": "[3, inf)"})  # channels per input point: 3 = xyz; 9 = the S3DIS block input (xyz, rgb, normalised room xyz); the GMM uses the first 3

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {"pretrain_points": 512, "input_transform": False, "feature_transform": False,
                  "train.epochs": 4},
        # quick's architecture at the knee of its ModelNet10 budget curve (validation split; 16 epochs, ~17 min
        # per seed on a 2-core CPU: docs/methods.md, "The `cpu` presets")
        "cpu": {"pretrain_points": 512, "input_transform": False, "feature_transform": False,
                "train.epochs": 16},
    }

    def __post_init__(self) -> None:
        if self.backbone not in ("pointnet", "dgcnn"):
            raise ValueError(f"backbone must be 'pointnet' or 'dgcnn'; got {self.backbone!r}")
        for key in ("num_partitions", "global_dim", "pretrain_points", "k", "in_channels"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value!r}")
        if self.in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (xyz first); got {self.in_channels!r}")
        if not self.covariance_eps >= 0:
            raise ValueError(f"covariance_eps must be >= 0; got {self.covariance_eps}")
        if not self.transform_reg_weight >= 0:
            raise ValueError(f"transform_reg_weight must be >= 0; got {self.transform_reg_weight}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1); got {self.head_dropout}")


@dataclass(frozen=True)
class ParAEDGCNNConfig(ParAEConfig):
    """ParAE on DGCNN: the same fields, DGCNN chosen."""

    backbone: Literal["pointnet", "dgcnn"] = "dgcnn"  # f_psi: the DGCNN segmentation network

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {"pretrain_points": 512, "k": 10, "train.epochs": 2},
        # quick's architecture at the knee of its ModelNet10 budget curve (validation split, overall accuracy:
        # 92.3 after 1 epoch, 92.6 after 4, within the 0.5-point tolerance; ~7 min per epoch on one core)
        "cpu": {"pretrain_points": 512, "k": 10, "train.epochs": 1},
    }


class ParAENet(nn.Module):
    r"""The segmentation network :math:`f_\psi` split as in Fig. 2: ``encoder`` + ``head``.

    The backbone is built with its segmentation head (``num_point_outputs=J``);
    the head is then moved out of it, so ``encoder`` alone computes :math:`z`
    and the local features (what downstream tasks use, and all they pay for)
    and ``head`` maps :math:`[l_i, z]` to the logits :math:`\mathcal{S}`.

    Args:
        backbone: a :class:`PointNet` or :class:`DGCNN` built with ``num_point_outputs``.

    Shapes:
        - **input:** points :math:`(B, N, 3)`
        - **output:** the encoder's :class:`PointBackboneOutput` (global
          :math:`(B, D_g)`, point features :math:`(B, N, D_p)`) and logits
          :math:`(B, N, J)`
    """

    def __init__(self, backbone: PointNet | DGCNN) -> None:
        super().__init__()
        if getattr(backbone, "head", None) is None:
            raise ValueError("the backbone must be built with num_point_outputs=J (a segmentation head)")
        head = backbone.head
        backbone.head = None  # the backbones skip the head when it is None
        self.encoder = backbone
        self.head = head

    def forward(self, points: Tensor) -> tuple[PointBackboneOutput, Tensor]:
        out = self.encoder(points)
        return out, self.head(out.point_features, out.global_feature)


def random_point_subset(points: Tensor, m: int) -> Tensor:
    r"""A uniformly random subset of :math:`m` distinct points of every cloud (torch's global RNG).

    Args:
        points: the clouds.
        m: points kept per cloud; clouds with :math:`N \le m` points are returned whole.

    Returns:
        The kept points, in random order.

    Shapes:
        - **points:** :math:`(B, N, C)`
        - **output:** :math:`(B, \min(m, N), C)`
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive integer; got {m!r}")
    b, n, c = points.shape
    if n <= m:
        return points
    keep = torch.rand(b, n, device=points.device).argsort(dim=1)[:, :m]
    return points.gather(1, keep.unsqueeze(-1).expand(b, m, c))


@register_method("parae-pointnet")
class ParAE(Method):
    """ParAE pretext task (Eckart et al., CVPR 2021) on a PointNet segmentation network."""

    name = "parae-pointnet"
    Config = ParAEConfig
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})
    point_feature_modalities = frozenset({"points"})
    paper = ("Eckart, Yuan, Liu, Kautz, Self-Supervised Learning on 3D Point Clouds by Learning "
             "Discrete Generative Models, CVPR 2021")
    version = "1"

    def build_model(self) -> nn.Module:
        cfg: ParAEConfig = self.config
        expected = self.Config().backbone
        if cfg.backbone != expected:
            raise ValueError(f"{self.name} uses backbone {expected!r}; got backbone={cfg.backbone!r} "
                             f"(use the method registered for {cfg.backbone!r} instead)")
        if cfg.backbone == "pointnet":
            backbone = PointNet(in_channels=cfg.in_channels, global_dim=cfg.global_dim,
                                num_point_outputs=cfg.num_partitions, input_transform=cfg.input_transform,
                                feature_transform=cfg.feature_transform)
        else:
            backbone = DGCNN.from_preset("parae", in_channels=cfg.in_channels, k=cfg.k, global_dim=cfg.global_dim,
                                         num_point_outputs=cfg.num_partitions, dropout=cfg.head_dropout)
        return ParAENet(backbone)

    @property
    def _loss(self) -> ParametricBottleneckLoss:
        return ParametricBottleneckLoss(eps=self.config.covariance_eps)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        r"""Eq. 11 on one batch: NLL of each cloud under :math:`\xi(\mathcal{P}, f_\psi(\mathcal{P}))`.

        Logged terms: ``nll`` (Eq. 8-10, mean over points), ``transform_reg``
        (PointNet feature T-Net only) and ``active_partitions``
        :math:`\exp(-\sum_j \pi_j \log \pi_j)`, the perplexity of the mixture
        weights (J when all partitions hold equal mass, 1 when one partition
        takes every point: a collapse warning).
        """
        cfg: ParAEConfig = self.config
        points = random_point_subset(batch["points"], cfg.pretrain_points)
        out, logits = self.model(points)
        nll = self._loss(points[..., :3], logits)  # the mixture models the geometry (Sec. 3.3); extra channels are input only
        terms = {"nll": nll}
        loss = nll
        if out.feature_transform is not None and cfg.transform_reg_weight > 0:
            reg = transform_regularizer(out.feature_transform)
            loss = loss + cfg.transform_reg_weight * reg
            terms["transform_reg"] = reg
        with torch.no_grad():
            pi = torch.softmax(logits.float(), dim=-1).mean(dim=1)  # Eq. 5
            entropy = -(pi * pi.clamp_min(1e-12).log()).sum(dim=-1)
            terms["active_partitions"] = entropy.exp().mean()
        return {"loss": loss, **terms}

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model.encoder(batch["points"]).global_feature

    def point_features_batch(self, points: Tensor) -> Tensor:
        return self.model.encoder(points).point_features

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        return self._check_pretrained().encoder

    @torch.no_grad()
    def mixture(self, points: Tensor) -> tuple[Tensor, GMMParams]:
        r"""The logits :math:`\mathcal{S}` and the mixture :math:`\Theta = \xi(\mathcal{P}, \mathcal{S})` (eval mode).

        Args:
            points: clouds, used whole (no subsampling).

        Returns:
            ``(logits, GMMParams(pi, mu, sigma))`` on the CPU (float32).

        Shapes:
            - **points:** :math:`(B, N, 3)`
            - **output:** :math:`(B, N, J)`; :math:`(B, J)`, :math:`(B, J, 3)`, :math:`(B, J, 3, 3)`
        """
        model = self._check_pretrained()
        model.eval()
        device = next(model.parameters()).device
        points = points.to(device)
        _, logits = model(points)
        params = gmm_parameters(points, logits, eps=self.config.covariance_eps)
        return logits.float().cpu(), GMMParams(*(t.float().cpu() for t in params))


@register_method("parae-dgcnn")
class ParAEDGCNN(ParAE):
    """ParAE pretext task (Eckart et al., CVPR 2021) on the DGCNN segmentation network."""

    name = "parae-dgcnn"
    Config = ParAEDGCNNConfig

