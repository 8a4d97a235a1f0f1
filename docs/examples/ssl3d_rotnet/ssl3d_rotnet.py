"""ssl3d-rotnet: an example third-party method plugin for ssl3d-bench.

A rotation-prediction pretext task (in the spirit of RotNet, Gidaris et al.,
ICLR 2018, applied to point clouds): every cloud is turned by one of
``n_rotations`` angles about the x axis (a tilt, since the benchmark's shapes
are already randomly turned about the up axis) and a PointNet learns to tell
which. The PointNet's global feature is the representation.

It lives outside the ``ssl3d`` package on purpose: it is registered only
through the ``ssl3d.methods`` entry point of its own distribution (see
docs/adding-a-method.md), and the test suite installs it that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ssl3d.methods import Method, MethodConfig, TrainConfig
from ssl3d.methods.backbones.pointnet import PointNet


@dataclass(frozen=True)
class RotNetConfig(MethodConfig):
    """Rotation-prediction settings; every field is commented as the house style asks."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=32, lr=1e-3))  # shared loop
    global_dim: int = 256  # width of PointNet's max-pooled global feature (the embedding)
    n_rotations: int = 4  # number of tilt classes: angles k * 360 / n_rotations degrees

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {"train.epochs": 4, "global_dim": 128},
    }


def tilt(points: torch.Tensor, k: torch.Tensor, n_rotations: int) -> torch.Tensor:
    """Rotate each cloud of ``points`` [B, N, 3] by ``k[b] * 2 pi / n_rotations`` about x."""
    angle = k.float() * (2 * math.pi / n_rotations)
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([one, zero, zero, zero, c, -s, zero, s, c], dim=-1).view(-1, 3, 3)
    return points @ rot.transpose(1, 2)


class RotNet(Method):
    """PointNet trained to recognise which tilt was applied to a cloud."""

    name = "rotnet"
    Config = RotNetConfig
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})
    paper = "Gidaris et al., Unsupervised Representation Learning by Predicting Image Rotations, ICLR 2018"

    def build_model(self) -> nn.Module:
        cfg = self.config
        return nn.ModuleDict({"backbone": PointNet(global_dim=cfg.global_dim),
                              "head": nn.Linear(cfg.global_dim, cfg.n_rotations)})

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        points = batch["points"]
        k = torch.randint(self.config.n_rotations, (points.shape[0],), device=points.device)
        logits = self.model["head"](self.model["backbone"](tilt(points, k, self.config.n_rotations)).global_feature)
        return {"loss": F.cross_entropy(logits, k), "acc": (logits.argmax(1) == k).float().mean()}

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        return self.model["backbone"](batch["points"]).global_feature

    def encoder(self, modality: str) -> nn.Module:
        return self.model["backbone"]
