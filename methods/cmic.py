"""CMIC: single-image 3D shape retrieval by cross-modal instance and category contrastive learning.

Paper: Lin, Yang, Wang, Lai, Jia, Zhao, Gao, "Single Image 3D Shape Retrieval via Cross-Modal
Instance and Category Contrastive Learning", ICCV 2021. Official code: Jittor, ``IGLICT/IBSR_jittor``.
Not purely self-supervised: the category loss reads labels (``cmic-noncat`` reads none).
Paper-to-code map and departures: docs/methods.md#cmic
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl3d.methods.augment.colour_transfer import batch_colour_transfer
from ssl3d.methods.augment.crops import random_resized_crop_flip
from ssl3d.methods.augment.hsv import hsv_jitter
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig

#: images per encoder forward when embedding without gradients (bounds memory)
_EVAL_CHUNK = 256
#: queries per block of the query-conditioned similarity (bounds the [Q, G, V] tensors)
_QUERY_CHUNK = 1024


@dataclass(frozen=True)
class CMICConfig(MethodConfig):
    """CMIC settings; defaults are the paper's (Sec. 3.4, 4.1)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=500, batch_size=60, optimizer="adam", lr=5e-5, betas=(0.5, 0.999)))  # Sec. 4.1
    query_arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"  # f_q trunk (Sec. 3.4)
    render_arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet34"  # f_r1 trunk (paper; released code: resnet18)
    weights: Optional[str] = field(default="IMAGENET1K_V1", metadata={"weights_for": ("query_arch", "render_arch")})  # init of both trunks (released code: ImageNet): torchvision name, state-dict file or None = random
    embed_dim: int = field(default=128, metadata={"range": "[1, inf)"})  # embedding width of both encoders (Sec. 3.4)
    n_views: int = field(default=12, metadata={"range": "[1, inf)"})  # M views per shape (Sec. 3.4); fewer = evenly spaced views of the rig
    view_size: int = field(default=224, metadata={"range": "[1, inf)"})  # render side, pixels (Sec. 4.1)
    image_size: int = field(default=224, metadata={"range": "[1, inf)"})  # query image side, pixels (Sec. 4.1)
    tau: float = field(default=0.1, metadata={"range": "(0, inf)"})  # temperature of Eq. (4)-(5) (Sec. 4.1)
    beta1: float = field(default=0.2, metadata={"range": "[0, inf)"})  # weight of the category loss, Eq. (6) (Sec. 4.1)
    include_instance: bool = True  # keep the ground-truth shape in Eq. (5) (Table 4's better setting)
    instance_loss: Literal["contrastive", "triplet"] = "contrastive"  # Eq. (4)-(5) or the Sec. 4.3 triplets
    margin: float = field(default=0.2, metadata={"range": "[0, inf)"})  # triplet margin (triplet variant only; unstated in the paper)
    colour_aug: Literal["transfer", "hsv", "none"] = "transfer"  # Sec. 3.1 colour transfer, HSV jitter, or none
    affine_aug: bool = True  # random resized crop + flip of query image and mask (Sec. 4.3 "traditional")
    crop_scale: tuple[float, float] = field(default=(0.85, 0.95), metadata={"range": "(0, 1]"})  # crop area fraction range (released code)
    crop_ratio: tuple[float, float] = field(default=(0.75, 4 / 3), metadata={"range": "(0, inf)"})  # crop aspect-ratio range (torchvision's default)
    flip_prob: float = field(default=0.5, metadata={"range": "[0, 1]"})  # horizontal-flip probability of the query (released code)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # random init: CPU presets run anywhere (no weight file); n_views 6 = every other camera of ring12
        "quick": {"query_arch": "resnet18", "render_arch": "resnet18", "n_views": 6, "view_size": 32,
                  "image_size": 32, "train.epochs": 3, "train.batch_size": 32, "train.lr": 1e-3, "weights": None},
        # quick's networks at the paired knee (3 seeds, validation split, pretraining without the validation
        # part) of the ModelNet10 budget curve of the shape (views) encoder: 86.2 / 86.2 / 87.2 at 1 / 2 / 4
        # epochs, 1 not significantly below 4 (p = 0.052; docs/methods.md)
        "cpu": {"query_arch": "resnet18", "render_arch": "resnet18", "n_views": 6, "view_size": 32,
                "image_size": 32, "train.epochs": 1, "train.batch_size": 32, "train.lr": 1e-3, "weights": None},
    }
    #: fields a registered variant is defined by (a contradicting override is an error)
    FIXED: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for name in ("embed_dim", "n_views", "view_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0; got {self.tau}")
        if self.beta1 < 0 or self.margin < 0:
            raise ValueError(f"beta1 and margin must be >= 0; got {self.beta1}, {self.margin}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1; got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi; got {self.crop_ratio}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1]; got {self.flip_prob}")
        for key, value in self.FIXED.items():
            if getattr(self, key) != value:
                raise ValueError(f"this CMIC variant is defined by {key}={value!r}; got {getattr(self, key)!r} "
                                 "(use method 'cmic' to change it)")


@dataclass(frozen=True)
class CMICNonCatConfig(CMICConfig):
    """``cmic-noncat``: instance loss only (Table 2/3, no category loss)."""

    beta1: float = field(default=0.0, metadata={"range": "[0, inf)"})  # fixed: no category loss
    FIXED: ClassVar[dict[str, Any]] = {"beta1": 0.0}


@dataclass(frozen=True)
class CMICHSVConfig(CMICConfig):
    """``cmic-hsv``: HSV jitter instead of colour transfer (Table 2)."""

    colour_aug: Literal["transfer", "hsv", "none"] = "hsv"  # fixed
    FIXED: ClassVar[dict[str, Any]] = {"colour_aug": "hsv"}


@dataclass(frozen=True)
class CMICNoAugConfig(CMICConfig):
    """``cmic-noaug``: affine augmentation only, no colour augmentation (Table 2, Aug = x)."""

    colour_aug: Literal["transfer", "hsv", "none"] = "none"  # fixed
    FIXED: ClassVar[dict[str, Any]] = {"colour_aug": "none", "affine_aug": True}


@dataclass(frozen=True)
class CMICTripletConfig(CMICConfig):
    """``cmic-triplet``: the triplet Instance-Category loss of Sec. 4.3 (Table 2)."""

    instance_loss: Literal["contrastive", "triplet"] = "triplet"  # fixed
    FIXED: ClassVar[dict[str, Any]] = {"instance_loss": "triplet"}


def select_views(views: Tensor, n_views: int) -> Tensor:
    """``n_views`` views of ``views`` :math:`(B, V, C, H, W)` spread evenly around the ring (all when ``V <= n_views``).

    The rule SwitchVAE uses too: :func:`ssl3d.methods.backbones.image.select_views` (floor(k V / n)).
    """
    from ssl3d.methods.backbones.image import select_views as spread

    return spread(views, n_views)


class CMICNet(nn.Module):
    r""":math:`f_q` (``query``), :math:`f_{r1}` (``render``) and :math:`f_{r2}` (``attention``) of Sec. 3.3-3.4.

    Inputs in [0, 1] are mapped to [-1, 1] (as in the released code).

    Shapes:
        - **embed_query(image, mask):** :math:`(B, 3, H, W), (B, H, W)` -> :math:`(B, D)`, unit norm
        - **embed_views(views):** :math:`(B, V, 1, H, W)` -> :math:`(B, V, D)`, unit norm
        - **attend(query, views):** :math:`(Q, D), (G, V, D)` -> :math:`(Q, G, D)` merged
          embeddings and :math:`(Q, G, V)` weights
    """

    def __init__(self, query_arch: str = "resnet50", render_arch: str = "resnet34", embed_dim: int = 128,
                 weights: Optional[str] = None) -> None:
        super().__init__()
        from ssl3d.methods.backbones.image import ImageEncoder

        self.query = ImageEncoder(query_arch, in_channels=4, out_dim=embed_dim, head="bn_linear", weights=weights)
        self.render = ImageEncoder(render_arch, in_channels=1, out_dim=embed_dim, head="bn_linear", weights=weights)
        self.attention = nn.Linear(embed_dim, embed_dim, bias=False)

    def embed_query(self, image: Tensor, mask: Tensor) -> Tensor:
        if image.dim() != 4 or mask.shape != (image.shape[0], *image.shape[2:]):
            raise ValueError(f"image must be [B, 3, H, W] and mask [B, H, W]; got {tuple(image.shape)}, "
                             f"{tuple(mask.shape)}")
        x = torch.cat([image, mask.unsqueeze(1).to(image.dtype)], dim=1) * 2 - 1
        if torch.is_grad_enabled():
            return F.normalize(self.query(x), dim=-1)
        return F.normalize(torch.cat([self.query(c) for c in x.split(_EVAL_CHUNK)]), dim=-1)

    def embed_views(self, views: Tensor) -> Tensor:
        if views.dim() != 5:
            raise ValueError(f"views must be [B, V, C, H, W]; got {tuple(views.shape)}")
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:]) * 2 - 1
        feats = self.render(flat) if torch.is_grad_enabled() else torch.cat(
            [self.render(c) for c in flat.split(_EVAL_CHUNK)])
        return F.normalize(feats, dim=-1).view(b, v, -1)

    def attention_weights(self, query: Tensor, views: Tensor) -> Tensor:
        """Softmax over views of :math:`(W v^q_i) \\cdot v^r_{j,m}`: :math:`(Q, G, V)`."""
        return torch.einsum("qd,gvd->qgv", self.attention(query), views).softmax(dim=-1)

    def attend(self, query: Tensor, views: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.attention_weights(query, views)
        return torch.einsum("qgv,gvd->qgd", weights, views), weights

    def similarity(self, query: Tensor, views: Tensor) -> Tensor:
        r"""Cosine of :math:`v^q_i` and :math:`v^r_{ji}` for every pair: :math:`(Q, G)`.

        Computed without the :math:`(Q, G, D)` merged embeddings:
        :math:`v^q_i \cdot v^r_{ji} = \sum_m a_{im} (v^q_i \cdot v^r_{j,m})` and
        :math:`\lVert v^r_{ji}\rVert^2 = a^\top (V_j V_j^\top) a`.
        """
        query = F.normalize(query, dim=-1)
        gram = torch.einsum("gvd,gud->gvu", views, views)
        out = []
        for q in query.split(_QUERY_CHUNK):
            w = self.attention_weights(q, views)
            dots = torch.einsum("qgv,qd,gvd->qg", w, q, views)
            sq_norm = torch.einsum("qgv,gvu,qgu->qg", w, gram, w)
            out.append(dots / sq_norm.clamp_min(0).sqrt().clamp_min(1e-12))
        return torch.cat(out)


@register_method("cmic")
class CMIC(Method):
    """CMIC (Lin et al., ICCV 2021): query/render encoders + attention, Instance-Category contrastive loss."""

    name = "cmic"
    reads_labels = True  # the category loss (beta1 > 0) reads each shape's class label
    Config = CMICConfig
    pretrain_modalities = frozenset({"image", "mask", "views"})
    embed_modalities = frozenset({"image", "views"})
    query_conditioned = True
    paper = ("Lin et al., Single Image 3D Shape Retrieval via Cross-Modal Instance and Category Contrastive "
             "Learning, ICCV 2021")

    def build_model(self) -> nn.Module:
        from ssl3d.methods.losses.cmic import CMICLoss

        cfg = self.config
        self.loss = CMICLoss(cfg.tau, cfg.beta1, cfg.include_instance, instance=cfg.instance_loss, margin=cfg.margin)
        return CMICNet(cfg.query_arch, cfg.render_arch, cfg.embed_dim, cfg.weights)

    def data_overrides(self) -> dict[str, Any]:
        return {"view_rig": "ring12", "view_size": self.config.view_size, "image_size": self.config.image_size}

    def augment(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Colour augmentation (Sec. 3.1-3.2, inside the masks), then the shared affine of image and mask."""
        cfg = self.config
        if cfg.colour_aug == "transfer":
            image = batch_colour_transfer(image, mask)
        elif cfg.colour_aug == "hsv":
            image = hsv_jitter(image, mask)
        if cfg.affine_aug:
            both = random_resized_crop_flip(torch.cat([image, mask.unsqueeze(1)], dim=1), cfg.crop_scale,
                                            cfg.crop_ratio, cfg.flip_prob)
            image, mask = both[:, :3], both[:, 3]
        return image, mask

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        if "shape_index" in batch:  # several photos per shape: keep each shape's first photo (no false negatives)
            sid = batch["shape_index"]
            first = (sid.unsqueeze(1) == sid.unsqueeze(0)).float().argmax(dim=1) == torch.arange(
                len(sid), device=sid.device)
            batch = {k: v[first] for k, v in batch.items()}
        image, mask = self.augment(batch["image"], batch["mask"])
        query = self.model.embed_query(image, mask)
        views = self.model.embed_views(select_views(batch["views"], self.config.n_views))
        shape, _ = self.model.attend(query, views)  # shape[i, j] = v^r_{ji}, shape j for query i
        # beta1 = 0 (cmic-noncat) passes no labels at all: the variant is then label-free
        terms = self.loss(query, shape, batch["label"] if self.config.beta1 > 0 else None)
        with torch.no_grad():
            sims = (query.unsqueeze(1) * F.normalize(shape, dim=-1)).sum(-1)
            hit = (sims.argmax(dim=1) == torch.arange(len(sims), device=sims.device)).float().mean()
        return {"loss": terms["total"], "inst": terms["inst"].detach(), "cats": terms["cats"].detach(),
                "batch_top1": hit}

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        if modality == "image":
            return self.model.embed_query(batch["image"], batch["mask"])
        return self.model.embed_views(select_views(batch["views"], self.config.n_views)).mean(dim=1)

    def ibsr_similarity_batch(self, query: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Cosine of each query embedding [Q, D] with its attention-merged embedding of each shape [G, V, C, H, W] -> [Q, G]."""
        model = self._check_pretrained()
        per_view = model.embed_views(select_views(views, self.config.n_views))
        return model.similarity(query.to(per_view.dtype), per_view)

    def encoder(self, modality: str) -> nn.Module:
        """``image``: :math:`f_q` on [B, 4, H, W] (RGB + mask in [-1, 1]); ``views``: :math:`f_{r1}` on single views [B, 1, H, W]."""
        self._check_modality(modality, self.embed_modalities, "encode")
        model = self._check_pretrained()
        return model.query if modality == "image" else model.render


@register_method("cmic-noncat")
class CMICNonCat(CMIC):
    """CMIC without the category loss (Tables 2-3, "Category x"): uses no labels."""

    name = "cmic-noncat"
    reads_labels = False  # beta1 = 0: no category loss, no labels
    untrained_network_of = "cmic"  # only the loss or augmentation differs
    Config = CMICNonCatConfig


@register_method("cmic-hsv")
class CMICHSV(CMIC):
    """CMIC with HSV jitter instead of colour transfer (Table 2, Aug = HSV)."""

    name = "cmic-hsv"
    untrained_network_of = "cmic"  # only the loss or augmentation differs
    Config = CMICHSVConfig


@register_method("cmic-noaug")
class CMICNoAug(CMIC):
    """CMIC with affine augmentation only (Table 2, Aug = x)."""

    name = "cmic-noaug"
    untrained_network_of = "cmic"  # only the loss or augmentation differs
    Config = CMICNoAugConfig


@register_method("cmic-triplet")
class CMICTriplet(CMIC):
    """CMIC with the triplet Instance-Category loss of Sec. 4.3 (Table 2, Instance = Triplet)."""

    name = "cmic-triplet"
    untrained_network_of = "cmic"  # only the loss or augmentation differs
    Config = CMICTripletConfig
