"""The plugin authors' testing kit (ssl3d.methods.testing): fake batches, and check_method catching broken methods."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from ssl3d.methods import Method, MethodConfig, TrainConfig, get_method
from ssl3d.methods.testing import check_method, fake_batch


@dataclass(frozen=True)
class _TinyConfig(MethodConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    width: int = 8  # per-point feature width (the embedding)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}


class _TinyPoints(Method):
    """Regresses each cloud's mean distance from the origin from mean-pooled per-point features."""

    name = "tiny-points"
    Config = _TinyConfig
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})

    def build_model(self) -> nn.Module:
        width = self.config.width
        return nn.ModuleDict({"encoder": nn.Sequential(nn.Linear(3, width), nn.ReLU()), "head": nn.Linear(width, 1)})

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        points = batch["points"]
        predicted = self.model["head"](self.model["encoder"](points).mean(dim=1)).squeeze(1)
        return {"loss": nn.functional.mse_loss(predicted, points.norm(dim=-1).mean(dim=1))}

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        return self.model["encoder"](batch["points"]).mean(dim=1)

    def encoder(self, modality: str) -> nn.Module:
        return self.require_pretrained()["encoder"]


class _NoisyEmbedding(_TinyPoints):
    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        return super().embed_batch(batch, modality) + torch.randn(1)


class _BuiltInInit(_TinyPoints):
    def __init__(self, config: _TinyConfig | None = None) -> None:
        super().__init__(config)
        self.model = self.build_model()  # usable before pretraining: breaks the NotPretrainedError contract


class _CopiedEncoder(_TinyPoints):
    def encoder(self, modality: str) -> nn.Module:
        return copy.deepcopy(self.require_pretrained()["encoder"])  # fine-tuning would not touch the method


@dataclass(frozen=True)
class _PaperOnlyConfig(_TinyConfig):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}


class _NoQuickPreset(_TinyPoints):
    Config = _PaperOnlyConfig


def test_a_sound_method_passes():
    check_method(_TinyPoints)


@pytest.mark.parametrize("cls, overrides, message", [
    (_TinyPoints, {"train.lr": 0.0}, "must lower the loss"),  # weights the optimiser never moves
    (_NoisyEmbedding, {}, "differs between two calls"),
    (_BuiltInInit, {}, "must raise NotPretrainedError"),
    (_CopiedEncoder, {}, "the method's own weights"),
    (_NoQuickPreset, {}, "'paper' and 'quick'"),
])
def test_broken_methods_fail_with_the_check_they_break(cls, overrides, message):
    with pytest.raises(AssertionError, match=message):
        check_method(cls, overrides=overrides)


def test_fake_batch_follows_the_method_data_settings():
    method = get_method("random-pointnet").from_preset("quick")
    batch = fake_batch(method, 3, small=True)
    assert batch["points"].shape == (3, 128, 3) and batch["voxels"].shape == (3, 32, 32, 32)
    assert batch["views"].shape[:3] == (3, 12, 1) and batch["image"].shape == (3, 3, 32, 32)
    # a method's own data settings win over the small defaults: CM-CV's random rig of n_views
    cmcv = get_method("cmcv").from_preset("quick")
    views = fake_batch(cmcv, 2, small=True)["views"]
    assert views.shape == (2, cmcv.config.n_views, 1, cmcv.config.view_size, cmcv.config.view_size)
    assert torch.equal(fake_batch(method, 3, seed=5)["points"], fake_batch(method, 3, seed=5)["points"])
