"""Random-initialisation baselines: the backbone a method trains, left untrained.

They answer "how much of a score is the architecture and how much the
pretext task?": a pretext task that cannot beat its own backbone at random
initialisation has learnt nothing the protocol can use. The weights are drawn
with the run seed, so seeds give error bars like for any other method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig


@dataclass(frozen=True)
class RandomPointNetConfig(MethodConfig):
    """Random PointNet: nothing is trained."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))  # no pretraining
    global_dim: int = field(default=1024, metadata={"range": "[1, inf)"})  # width of the max-pooled global feature (the common SVM protocol's 1024-d)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}, "cpu": {}}


class _RandomPointBackbone(Method):
    """Shared logic of random-init point-cloud baselines: embed = global feature of the backbone."""

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
        from ssl3d.methods.backbones.pointnet import PointNet

        return PointNet(global_dim=self.config.global_dim)
