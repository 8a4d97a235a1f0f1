"""SwitchVAE: a voxel and a multi-view VAE sharing one voxel decoder, with a random switch between encoders.

Paper: C. Wu, J. Pfrommer, M. Zhou, J. Beyerer, "Generative-Contrastive Learning for Self-Supervised
Latent Representations of 3D Shapes from Multi-Modal Euclidean Input", IEEE Transactions on Multimedia,
2023 (arXiv 2301.04612). Official code: TensorFlow/Keras, ``0xzhou/SwitchVAE``.
Paper-to-code map and departures: docs/methods.md#switchvae
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ssl3d.core.config import ConfigError
from ssl3d.core.seeding import epoch_seed
from ssl3d.datasets.modalities.cameras import rig_size
from ssl3d.methods.backbones.image import MultiViewVAEEncoder
from ssl3d.methods.backbones.voxel_cnn import VoxelDecoder, VoxelEncoder
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.losses.switchvae import (
    beta_tc_kl, gaussian_kl, kl_anneal_weight, latent_contrastive, weighted_bce,
)

__all__ = [
    "ImageVAE", "SwitchBTCVAE", "SwitchVAE", "SwitchVAEConfig",
    "SwitchVAENoContrast", "VoxelVAE", "VoxelVAEConfig", "choose_branch", "reparameterize",
]

_MODULE_OF = {"voxels": "voxel_encoder", "views": "image_encoder"}


@dataclass(frozen=True)
class SwitchVAEConfig(MethodConfig):
    """SwitchVAE settings; defaults are the paper's (Sec. 4, 4.1) or the official code's where the paper is silent."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=150, batch_size=32, optimizer="sgd", lr=2e-4, momentum=0.9, nesterov=True,
        scheduler="step", step_size=10, gamma=0.96, schedule_start=50,
    ))  # Sec. 4: SGD + Nesterov, lr 2e-4, x0.96 every 10 epochs after 50, batch 32
    latent_dim: int = field(default=128, metadata={"range": "[1, inf)"})  # size of z (Sec. 4: 128 for all experiments)
    hidden_dim: int = field(default=343, metadata={"range": "[1, inf)"})  # voxel encoder/decoder FC width (Sec. 4.1: 343 = 7^3)
    n_views: int = field(default=8, metadata={"range": "[1, inf)"})  # views fed to the image encoder (Sec. 4: 8), spread evenly around the shape (rigs: _rig_for)
    view_size: int = field(default=137, metadata={"range": "[1, inf)"})  # view height = width in pixels (Sec. 4.1: 137)
    view_dim: int = field(default=1024, metadata={"range": "[1, inf)"})  # per-view embedding and GRU width (Sec. 4.1: 1024)
    image_pool: Literal["flatten", "avg"] = "flatten"  # flatten ResNet's last feature map (Sec. 4.1) or average-pool it
    image_weights: str | None = field(default="IMAGENET1K_V1", metadata={"weights_for": ("resnet18",)})  # view ResNet18 init (Sec. 4.1: ImageNet): torchvision name, state-dict file or None = random
    p_image: float = field(default=0.2, metadata={"range": "[0, 1]"})  # probability that the decoder gets the image latent (Sec. 4: 20%)
    switch: Literal["batch", "epoch"] = "batch"  # one switch draw per batch (official code) or per epoch (Sec. 3.2 text)
    bce_gamma: float = field(default=0.8, metadata={"range": "[0, 1]"})  # weight of occupied voxels in the weighted BCE (Eq. 2: 0.8)
    lambda_kl: float = field(default=1.0, metadata={"range": "[0, inf)"})  # KL weight after warm-up (paper: unstated; official: 1)
    kl_warmup_epochs: int = field(default=100, metadata={"range": "[0, inf)"})  # linear KL ramp 0 -> lambda_kl over these epochs (official code: 100); 0 = off
    lambda_contras: float = field(default=1.0, metadata={"range": "[0, inf)"})  # contrastive weight (Table 1: 0 vs 1)
    contrast_norm: Literal["sphere", "unit", "none"] = "sphere"  # latent normalisation in Eq. 4 (docs/methods.md#switchvae)
    kl: Literal["gaussian", "beta_tc"] = "gaussian"  # Eq. 3, or beta-TCVAE decomposition (Sec. 4.4)
    beta: float = field(default=5.0, metadata={"range": "[0, inf)"})  # beta-TCVAE total-correlation weight (Sec. 4.4: 5); used when kl="beta_tc"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # one epoch keeps the README's first command (3 seeds) under 3 minutes on 2 cores, with the KL term on
        # from the start (a one-epoch warm-up would leave epoch 0 without it: an autoencoder, and the KL
        # variants such as switch-btcvae bitwise equal); docs/methods.md#switchvae
        # 4 views 90 degrees apart (every third camera of ring12); random init, so no weight file is needed
        "quick": {
            "train.epochs": 1, "train.batch_size": 16, "n_views": 4, "view_size": 64, "kl_warmup_epochs": 0,
            "image_weights": None,
        },
        # quick's architecture at the knee of the family's 3-seed ModelNet10 curve (validation split, paired rule):
        # the views' knee is 4 epochs, the largest that fits the 20-minute cap per seed, the voxels' 1; a family
        # takes the larger (docs/methods.md). One budget for the whole family keeps its comparisons fair.
        "cpu": {
            "train.epochs": 4, "train.batch_size": 16, "n_views": 4, "view_size": 64, "kl_warmup_epochs": 1,
            "image_weights": None,
        },
    }

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden_dim", "n_views", "view_size", "view_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        for name in ("p_image", "bce_gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)!r}")
        for name in ("lambda_kl", "lambda_contras", "beta", "kl_warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        _rig_for(self.n_views)  # views that cannot be spread evenly around the shape are refused here


def choose_branch(p_image: float, generator: torch.Generator | None = None) -> str:
    r"""One switch draw (Sec. 3.2): ``"views"`` with probability ``p_image``, else ``"voxels"``.

    Args:
        p_image: probability of the image branch, in :math:`[0, 1]`.
        generator: CPU generator to draw from (default: torch's global one).

    Returns:
        The modality whose latent goes to the decoder.
    """
    if not 0.0 <= p_image <= 1.0:
        raise ValueError(f"p_image must be in [0, 1]; got {p_image!r}")
    return "views" if float(torch.rand((), generator=generator)) < p_image else "voxels"


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Reparametrisation trick: :math:`z = \mu + e^{\log\sigma^2 / 2} \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`.

    Shapes:
        - **mu**, **logvar**, **output**: :math:`(B, D)`
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _rig_for(n_views: int) -> dict[str, Any]:
    """The data's camera rig for ``n_views`` views; the image encoder spreads them evenly over it (``select_views``).

    8 (Sec. 4): ``first8``, all of it, as the official code (the first 8 of MVCNN's 12-view ring: azimuths 0
    to 210 degrees). Other counts go evenly around the shape: a divisor of 12 takes every ``12 / n``-th camera
    of ``ring12`` (4: azimuths 0, 90, 180, 270), 20 the ``dodeca20`` rig, more ``random`` cameras; the rest
    cannot be spread evenly on a fixed rig and are refused.
    """
    ring = rig_size("ring12")
    if n_views == rig_size("first8"):
        return {"view_rig": "first8"}
    if ring % n_views == 0:
        return {"view_rig": "ring12"}
    if n_views == rig_size("dodeca20"):
        return {"view_rig": "dodeca20"}
    if n_views > rig_size("dodeca20"):
        return {"view_rig": "random", "n_views": n_views}
    divisors = [d for d in range(1, ring + 1) if ring % d == 0]
    raise ConfigError(f"method.n_views={n_views} cannot be spread evenly around the shape: use a divisor of 12 "
                      f"({', '.join(map(str, divisors))}: views of the 12-camera ring), 8 (the paper's, the official "
                      f"code's first 8 of that ring), 20 (dodecahedron) or more than 20 (random cameras)")


@register_method("switchvae")
class SwitchVAE(Method):
    """SwitchVAE (Wu et al., TMM 2023): voxel + multi-view VAE, shared decoder, switched latents."""

    name = "switchvae"
    Config = SwitchVAEConfig
    #: the encoder branches this variant builds (the switch picks among them)
    branches: ClassVar[tuple[str, ...]] = ("voxels", "views")
    pretrain_modalities = frozenset({"voxels", "views"})
    embed_modalities = frozenset({"voxels", "views"})
    reconstruct_modalities = frozenset({"voxels", "views"})
    paper = ("Wu, Pfrommer, Zhou, Beyerer, Generative-Contrastive Learning for Self-Supervised Latent "
             "Representations of 3D Shapes from Multi-Modal Euclidean Input, IEEE TMM 2023")
    version = "3"  # 2: the batch switch draws from its own (seed, epoch, step) generator; 3: views spread evenly, ImageNet init

    def __init__(self, config: SwitchVAEConfig | None = None) -> None:
        super().__init__(config)
        self._epoch = 0  # current epoch, for the KL warm-up (set by on_epoch_start)
        self._dataset_size: int | None = None  # pretraining set size, for beta-TCVAE
        self._run_seed = 0  # the run seed, for the switch draws (set by on_epoch_start)

    # -- networks -------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        cfg = self.config
        modules: dict[str, nn.Module] = {}
        if "voxels" in self.branches:
            modules["voxel_encoder"] = VoxelEncoder(latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim)
        if "views" in self.branches:
            modules["image_encoder"] = MultiViewVAEEncoder(cfg.latent_dim, cfg.n_views, cfg.view_size,
                                                           cfg.view_dim, cfg.image_pool, cfg.image_weights)
        modules["decoder"] = VoxelDecoder(latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim)
        return nn.ModuleDict(modules)

    def data_overrides(self) -> dict[str, Any]:
        # Every variant states the same view settings (voxel-vae loads no views), so the evaluation data of
        # the ablations hash alike and their leaderboard rows stay comparable.
        return {"voxel_resolution": 32, **_rig_for(self.config.n_views), "view_size": self.config.view_size}

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        return self._check_pretrained()[_MODULE_OF[modality]]

    def _encode(self, batch: dict[str, Tensor], modality: str) -> tuple[Tensor, Tensor]:
        return self.model[_MODULE_OF[modality]](batch[modality])

    # -- training -----------------------------------------------------------------------
    def pretrain_dataset(self, data: Dataset) -> Dataset:
        self._dataset_size = len(data)
        return data

    def on_epoch_start(self, epoch: int, run_seed: int) -> None:
        # the KL warm-up follows the epoch; the switch draws are seeded by (run seed, epoch, step)
        self._epoch, self._run_seed = epoch, run_seed

    def _switch(self, step: int) -> str:
        """The branch decoded at global ``step``: a function of (run seed, epoch, step) only.

        Not torch's global generator: the trainer seeds it differently on every DDP rank (augmentation),
        and all ranks must decode the same branch in a step. The epoch switch keeps the seed it always had
        (the trainer's epoch seed), so single-process epoch draws are unchanged.
        """
        if len(self.branches) == 1:
            return self.branches[0]
        seed = epoch_seed(self._run_seed, self._epoch)
        if self.config.switch == "batch":
            seed = (seed + 1_000_003 * (step + 1)) % 2**63
        return choose_branch(self.config.p_image, torch.Generator().manual_seed(seed))

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        cfg = self.config
        latents = {m: self._encode(batch, m) for m in self.branches}
        # Sample in training mode only; in eval mode z = mu, so the loss of a fixed batch is deterministic.
        sample = self.model.training
        z = {m: reparameterize(mu, logvar) if sample else mu for m, (mu, logvar) in latents.items()}
        alpha = self._switch(step)
        mu, logvar = latents[alpha]
        recon = weighted_bce(self.model["decoder"].logits(z[alpha]), batch["voxels"], gamma=cfg.bce_gamma)
        kl = gaussian_kl(mu, logvar)
        terms = {"recon": recon, "kl": kl}
        if cfg.kl == "beta_tc":
            size = max(self._dataset_size or 0, mu.shape[0])
            tc = beta_tc_kl(z[alpha], mu, logvar, size, cfg.beta)["tc"]
            kl = kl + (cfg.beta - 1.0) * tc  # official form: analytic KL + (beta - 1) TC
            terms["tc"] = tc
        weight = cfg.lambda_kl * kl_anneal_weight(self._epoch, cfg.kl_warmup_epochs)
        loss = recon + weight * kl
        if len(self.branches) == 2:
            contras = latent_contrastive(z["views"], z["voxels"], normalize=cfg.contrast_norm != "none")
            if cfg.contrast_norm == "sphere":
                contras = cfg.latent_dim * contras  # latents on the sphere of radius sqrt(D)
            loss = loss + cfg.lambda_contras * contras
            terms["contras"] = contras
            terms["image_branch"] = torch.tensor(float(alpha == "views"))  # epoch mean = switch frequency
        return {"loss": loss, **terms}

    # -- evaluation ---------------------------------------------------------------------
    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self._encode(batch, modality)[0]

    def reconstruct_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model["decoder"](self._encode(batch, modality)[0])

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        r"""Occupancy probabilities :math:`(B, 32, 32, 32)` of latents :math:`(B, D)` (eval mode, CPU float)."""
        model = self._check_pretrained()
        model.eval()
        device = next(model.parameters()).device
        return model["decoder"](z.to(device).float()).float().cpu()


@dataclass(frozen=True)
class VoxelVAEConfig(SwitchVAEConfig):
    """The voxel VAE's settings: SwitchVAE's, with no image encoder to initialise (no weight file asked for)."""

    image_weights: str | None = None  # unused: voxel-vae builds no image encoder


@register_method("voxel-vae")
class VoxelVAE(SwitchVAE):
    """Voxel VAE (Tables 1-2 baseline): the voxel encoder and decoder of SwitchVAE, trained alone."""

    name = "voxel-vae"
    Config = VoxelVAEConfig
    version = "1"  # one branch: no switch, unchanged by version 2
    branches = ("voxels",)
    pretrain_modalities = frozenset({"voxels"})
    embed_modalities = frozenset({"voxels"})
    reconstruct_modalities = frozenset({"voxels"})


@register_method("image-vae")
class ImageVAE(SwitchVAE):
    """Image VAE (Tables 1-2 baseline): multi-view image encoder -> voxel decoder, trained alone."""

    name = "image-vae"
    version = "2"  # one branch: no switch, unchanged by switchvae's 2; 2: views spread evenly, ImageNet init
    branches = ("views",)
    pretrain_modalities = frozenset({"views", "voxels"})
    embed_modalities = frozenset({"views"})
    reconstruct_modalities = frozenset({"views"})


@dataclass(frozen=True)
class SwitchVAENoContrastConfig(SwitchVAEConfig):
    """SwitchVAE without the contrastive term (Table 1, :math:`\\lambda_{contras} = 0`)."""

    lambda_contras: float = field(default=0.0, metadata={"range": "[0, inf)"})  # the ablation: no contrastive term


@register_method("switchvae-nocontrast")
class SwitchVAENoContrast(SwitchVAE):
    """SwitchVAE with :math:`\\lambda_{contras} = 0` (Table 1 ablation; Fig. 4b)."""

    name = "switchvae-nocontrast"
    untrained_network_of = "switchvae"  # only the loss or augmentation differs
    Config = SwitchVAENoContrastConfig


@dataclass(frozen=True)
class SwitchBTCVAEConfig(SwitchVAEConfig):
    """Switch-BetaTCVAE (Sec. 4.4): the KL of Eq. 3 replaced by the beta-TCVAE objective, beta = 5."""

    kl: Literal["gaussian", "beta_tc"] = "beta_tc"  # Sec. 4.4: beta-TCVAE KL


@register_method("switch-btcvae")
class SwitchBTCVAE(SwitchVAE):
    """Switch-BetaTCVAE (Sec. 4.4, Fig. 5): SwitchVAE with a beta-TCVAE KL (beta = 5) for disentanglement."""

    name = "switch-btcvae"
    untrained_network_of = "switchvae"  # only the loss or augmentation differs
    Config = SwitchBTCVAEConfig
