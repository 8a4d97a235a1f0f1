r"""Point-MAE: masked autoencoding of point patches with standard Transformers.

Paper: Y. Pang, W. Wang, F. E. H. Tay, W. Liu, Y. Tian, L. Yuan, "Masked Autoencoders for Point Cloud
Self-supervised Learning", ECCV 2022 (arXiv 2203.06604); official code github.com/Pang-Yatian/Point-MAE
(``models/Point_MAE.py``, ``cfgs/pretrain.yaml``), read for every detail the paper leaves out.
Networks: :mod:`ssl3d.methods.point_mae_net`; the official checkpoint layout: :mod:`ssl3d.methods.point_mae_keys`.
Paper-to-code map, departures and presets: docs/methods.md#point-mae
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from ssl3d.core.config import ConfigError
from ssl3d.methods.augment.scale_translate import scale_translate
from ssl3d.methods.backbones.point_patches import farthest_point_subset, group_patches, random_patch_mask
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.losses.chamfer import ChamferL2Loss
from ssl3d.methods.checkpoint import tensor_entries
from ssl3d.methods.point_mae_keys import load_official_state
from ssl3d.methods.point_mae_net import PointMAENet

__all__ = ["PointMAE", "PointMAEConfig"]

# cfgs/pretrain.yaml: AdamW(lr 1e-3, wd 0.05), CosLR over 300 epochs with 10 warm-up epochs, total_bs 128
_PAPER_PRETRAIN = dict(epochs=300, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.05, scheduler="cosine")
_SMALL = {"num_heads": 4, "decoder_num_heads": 4, "patch_hidden": (32, 64, 128), "pos_hidden": 64,
          "train.batch_size": 32, "train.scheduler": "none"}
_QUICK = {**_SMALL, "num_heads": 2, "decoder_num_heads": 2, "num_points": 256, "num_groups": 16, "group_size": 16,
          "trans_dim": 64, "depth": 2, "decoder_depth": 1, "pos_hidden": 32, "train.epochs": 4}
_CPU = {**_SMALL, "trans_dim": 128, "depth": 4, "decoder_depth": 2}


@dataclass(frozen=True)
class PointMAEConfig(MethodConfig):
    """Point-MAE settings; defaults are the paper's (Sec. 4.1) and, where it is silent, the official pretrain.yaml's."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(**_PAPER_PRETRAIN))  # Sec. 4.1 / pretrain.yaml (the official loop runs epochs 0..300, one more)
    num_points: int = field(default=1024, metadata={"range": "[1, inf)"})  # points per cloud the network reads (npoints); a cloud with more is reduced by farthest-point sampling, as the official ModelNet path
    num_groups: int = field(default=64, metadata={"range": "[1, inf)"})  # G, patches (FPS centres) per cloud (Sec. 4.1)
    group_size: int = field(default=32, metadata={"range": "[1, inf)"})  # k, points per patch (nearest neighbours of the centre; Sec. 4.1)
    mask_ratio: float = field(default=0.6, metadata={"range": "(0, 1)"})  # m, fraction of patches masked per cloud, floor(m G) (Sec. 3.1, 60%)
    trans_dim: int = field(default=384, metadata={"range": "[1, inf)"})  # C, token width of encoder and decoder (= the official encoder_dims)
    depth: int = field(default=12, metadata={"range": "[1, inf)"})  # encoder Transformer blocks (Sec. 4.1)
    num_heads: int = field(default=6, metadata={"range": "[1, inf)"})  # encoder attention heads (Sec. 4.1)
    decoder_depth: int = field(default=4, metadata={"range": "[1, inf)"})  # decoder Transformer blocks (Sec. 4.1)
    decoder_num_heads: int = field(default=6, metadata={"range": "[1, inf)"})  # decoder attention heads (pretrain.yaml)
    mlp_ratio: float = field(default=4.0, metadata={"range": "(0, inf)"})  # hidden width of every block's MLP over C (official Block)
    drop_path_rate: float = field(default=0.1, metadata={"range": "[0, 1)"})  # stochastic depth at the last block, linear from 0 (pretrain.yaml)
    patch_hidden: tuple[int, int, int] = field(default=(128, 256, 512), metadata={"range": "[1, inf)"})  # mini-PointNet widths h1, h2, h3 (official Encoder)
    pos_hidden: int = field(default=128, metadata={"range": "[1, inf)"})  # hidden width of the centre-embedding MLPs (official pos_embed)
    warmup_epochs: int = field(default=10, metadata={"range": "[0, inf)"})  # linear warm-up of the cosine schedule (pretrain.yaml initial_epochs)
    warmup_lr: float = field(default=1e-6, metadata={"range": "[0, inf)"})  # learning rate at epoch 0 of the warm-up (timm warmup_lr_init)
    min_lr: float = field(default=1e-6, metadata={"range": "[0, inf)"})  # floor of the cosine schedule (timm lr_min)
    augment: bool = True  # random per-axis scale U[2/3, 3/2] and shift U[-0.2, 0.2] per cloud (official PointcloudScaleAndTranslate)
    init_checkpoint: str | None = None  # an official pretraining checkpoint (Point-MAE's pretrain.pth: base_model) loaded after building; None = the seeded initialisation

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CI-sized: 16 patches of 16 of 256 points, a 2-block 64-wide encoder, 4 epochs at a constant rate
        "quick": _QUICK,
        # the paper's patches (64 x 32 of 1024 points), a 4-block 128-wide encoder, a 2-block decoder, a constant
        # rate (so a budget curve's snapshots are shorter pretrainings). 8 epochs: the knee of its 3-seed validation
        # curve to 12, the 20-minute cap (bench/sweep/curve.py choose_knee; 12 is best but 8 is not significantly
        # below it, p = 0.17; results/modelnet10-cpu/knee-curves/, docs/methods.md#point-mae)
        "cpu": {**_CPU, "train.epochs": 8},
    }

    def __post_init__(self) -> None:
        for key in ("num_points", "num_groups", "group_size", "trans_dim", "depth", "num_heads", "decoder_depth",
                    "decoder_num_heads", "pos_hidden"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value!r}")
        if len(self.patch_hidden) != 3 or min(self.patch_hidden) < 1:
            raise ValueError(f"patch_hidden must be 3 positive widths; got {self.patch_hidden!r}")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1); got {self.drop_path_rate}")

    def check(self) -> None:
        """The constraints between fields, checked once all overrides are in (``--set`` applies them one at a
        time, so ``trans_dim=64`` before ``num_heads=4`` must not fail in ``__post_init__``)."""
        if self.num_groups > self.num_points or self.group_size > self.num_points:
            raise ConfigError(f"method.num_groups ({self.num_groups}) and method.group_size ({self.group_size}) "
                              f"must not exceed method.num_points ({self.num_points})")
        masked = int(self.mask_ratio * self.num_groups)
        if not 1 <= masked < self.num_groups:
            raise ConfigError(f"method.mask_ratio={self.mask_ratio} masks {masked} of {self.num_groups} patches; "
                              "at least one must be masked and one visible")
        for key in ("num_heads", "decoder_num_heads"):
            if self.trans_dim % getattr(self, key):
                raise ConfigError(f"method.trans_dim ({self.trans_dim}) must be divisible by method.{key} "
                                  f"({getattr(self, key)})")


@register_method("point-mae")
class PointMAE(Method):
    """Point-MAE pretext task (Pang et al., ECCV 2022): reconstruct masked point patches (Chamfer-L2)."""

    name = "point-mae"
    Config = PointMAEConfig
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})
    paper = ("Pang, Wang, Tay, Liu, Tian, Yuan, Masked Autoencoders for Point Cloud Self-supervised Learning, "
             "ECCV 2022")
    version = "1"

    def data_overrides(self) -> dict[str, Any]:
        self.config.check()  # the runner calls this in validate_run, before anything is written
        return {}

    def build_model(self) -> nn.Module:
        cfg: PointMAEConfig = self.config
        cfg.check()
        return PointMAENet(dim=cfg.trans_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                           decoder_depth=cfg.decoder_depth, decoder_num_heads=cfg.decoder_num_heads,
                           group_size=cfg.group_size, patch_hidden=tuple(cfg.patch_hidden), pos_hidden=cfg.pos_hidden,
                           mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate)

    def load_official_state(self, state: Mapping[str, Any]) -> None:
        """The official pretraining checkpoint (its ``base_model``, or the bare ``Point_MAE`` state dict), mapped
        by :mod:`ssl3d.methods.point_mae_keys`; the model's sizes must be the checkpoint's."""
        weights = state.get("base_model", state)
        if not isinstance(weights, Mapping):
            raise ValueError(f"key 'base_model' holds a {type(weights).__name__}, not a state dict")
        tensor_entries(weights, "the official Point-MAE pretraining checkpoint (tools/builder.py save_checkpoint)")
        load_official_state(self.model, weights)

    def _patches(self, points: Tensor, augment: bool = False) -> tuple[Tensor, Tensor]:
        """Patches and centres of the clouds reduced to ``num_points`` (+ the pretraining augmentation)."""
        cfg: PointMAEConfig = self.config
        if points.shape[1] < max(cfg.num_groups, cfg.group_size):
            raise ConfigError(f"clouds of {points.shape[1]} points cannot make method.num_groups={cfg.num_groups} "
                              f"patches of method.group_size={cfg.group_size}; raise data.n_points or lower them")
        points = farthest_point_subset(points[..., :3], cfg.num_points)
        if augment:
            points = scale_translate(points)  # official order: points sampled, then augmented, then grouped
        return group_patches(points, cfg.num_groups, cfg.group_size)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        r"""Eq. 1-6 on one batch: patches, a random mask per cloud, the masked patches predicted, Chamfer-L2.

        The loss is the Chamfer-L2 itself (the official log shows it x1000).
        """
        cfg: PointMAEConfig = self.config
        patches, centres = self._patches(batch["points"], augment=cfg.augment)
        mask = random_patch_mask(patches.shape[0], cfg.num_groups, cfg.mask_ratio, device=patches.device)
        pred, target = self.model(patches, centres, mask)
        return {"loss": ChamferL2Loss()(pred, target)}

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """``[max, mean]`` over the encoder's tokens of all patches (no masking): :math:`2C` features."""
        tokens = self.model.encoder(*self._patches(batch["points"]))
        return torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        return self._check_pretrained().encoder

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW without weight decay on biases, 1-D tensors and the mask token (the official ``add_weight_decay``)."""
        train = self.config.train
        if train.optimizer != "adamw":
            return super().configure_optimizer(model)
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                plain = param.ndim <= 1 or name.endswith(".bias") or "token" in name
                (no_decay if plain else decay).append(param)
        groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": train.weight_decay}]
        return torch.optim.AdamW(groups, lr=train.lr, betas=tuple(train.betas))

    def lr_factor(self, epoch: int) -> float:
        r"""``cosine``: timm's ``CosineLRScheduler`` of the official code, per epoch, as a factor of ``train.lr``.

        Linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then
        :math:`\eta_{min} + \frac12(\eta - \eta_{min})(1 + \cos(\pi t / T))` with :math:`t` the epoch (not
        shifted by the warm-up) and :math:`T` = ``train.epochs``. Other schedules: the shared ones.
        """
        cfg: PointMAEConfig = self.config
        train = cfg.train
        if train.scheduler != "cosine" or train.lr <= 0:
            return super().lr_factor(epoch)
        if epoch < cfg.warmup_epochs:
            lr = cfg.warmup_lr + epoch * (train.lr - cfg.warmup_lr) / cfg.warmup_epochs
        else:
            lr = cfg.min_lr + 0.5 * (train.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / max(1, train.epochs)))
        return lr / train.lr
