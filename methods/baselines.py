"""Random-initialisation baselines: a pretext task's point backbone, left untrained.

Architectures: Qi et al., "PointNet", CVPR 2017 (``random-pointnet``); Wang et al.,
"Dynamic Graph CNN for Learning on Point Clouds", ACM TOG 2019 (``random-dgcnn``).
Why they exist and what each matches: docs/methods.md#random-initialisation-baselines
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ssl3d.methods.backbones.dgcnn import DGCNN
from ssl3d.methods.backbones.pointnet import PointNet
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.parae import ParAEDGCNNConfig

__all__ = ["RandomDGCNN", "RandomDGCNNConfig", "RandomPointNet", "RandomPointNetConfig"]


@dataclass(frozen=True)
class RandomPointNetConfig(MethodConfig):
    """Random PointNet: nothing is trained."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))  # no pretraining
    global_dim: int = field(default=1024, metadata={"range": "[1, inf)"})  # width of the max-pooled global feature (the common SVM protocol's 1024-d)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}, "cpu": {}}


@dataclass(frozen=True)
class RandomDGCNNConfig(MethodConfig):
    """Random DGCNN: the ``parae-dgcnn`` encoder, nothing trained."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))  # no pretraining
    global_dim: int = field(default=1024, metadata={"range": "[1, inf)"})  # width of the max-pooled global feature z (as parae-dgcnn)
    k: int = field(default=20, metadata={"range": "[1, inf)"})  # neighbours per point in every EdgeConv (as parae-dgcnn)

    # quick follows parae-dgcnn's quick architecture so the two stay a matched pair
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {"k": ParAEDGCNNConfig.PRESETS["quick"]["k"]},
        "cpu": {"k": ParAEDGCNNConfig.PRESETS["quick"]["k"]},
    }


class _RandomPointBackbone(Method):
    """Shared logic of random-init point-cloud baselines: embed = global feature of the backbone."""

    control = True  # a random network: the points modality's controls (docs/methods.md#controls)
    pretrain_modalities = frozenset()
    embed_modalities = frozenset({"points"})
    point_feature_modalities = frozenset({"points"})

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        return self.model(batch["points"]).global_feature

    def point_features_batch(self, points: torch.Tensor) -> torch.Tensor:
        return self.model(points).point_features

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        return self._check_pretrained()


@register_method("random-pointnet")
class RandomPointNet(_RandomPointBackbone):
    """PointNet (Qi et al., CVPR 2017) with random weights; 1024-d max-pooled global feature."""

    name = "random-pointnet"
    Config = RandomPointNetConfig
    paper = "Qi et al., PointNet, CVPR 2017 (architecture only; no pretraining)"

    def build_model(self) -> nn.Module:
        return PointNet(global_dim=self.config.global_dim)


@register_method("random-dgcnn")
class RandomDGCNN(_RandomPointBackbone):
    """DGCNN (Wang et al., TOG 2019), ``parae`` configuration, with random weights; 1024-d max-pooled z."""

    name = "random-dgcnn"
    Config = RandomDGCNNConfig
    paper = "Wang et al., Dynamic Graph CNN, TOG 2019 (architecture of parae-dgcnn; no pretraining)"

    def build_model(self) -> nn.Module:
        return DGCNN.from_preset("parae", k=self.config.k, global_dim=self.config.global_dim)
