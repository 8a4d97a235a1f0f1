r"""CrossPoint: point-cloud features from contrast within and across modalities.

Paper: M. Afham, I. Dissanayake, D. Dissanayake, A. Dharmasiri, K. Thilakarathna, R. Rodrigo,
"CrossPoint: Self-Supervised Cross-Modal Contrastive Learning for 3D Point Cloud Understanding",
CVPR 2022 (official code: github.com/MohamedAfham/CrossPoint). Sec. 3.1: intra-modal instance
discrimination between two augmented clouds; Sec. 3.2: cross-modal instance discrimination between
the clouds' mean projection and a rendered view; Sec. 3.3: their sum.
Paper-to-code map and departures: docs/methods.md#crosspoint
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

import torch
from torch import Tensor, nn

from ssl3d.methods.augment.colour_jitter import colour_jitter
from ssl3d.methods.augment.crops import random_crop_flip
from ssl3d.methods.augment.points import (
    clipped_jitter, normalize_unit_sphere, random_input_dropout, random_scale, random_translate, rotate_y,
)
from ssl3d.methods.backbones.dgcnn import DGCNN
from ssl3d.methods.backbones.image import GREY_MEAN, GREY_STD, TRUNK_DIMS, resnet_trunk
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.checkpoint import tensor_entries
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.crosspoint_keys import from_official_image_state, from_official_point_state
from ssl3d.methods.losses.crosspoint import CrossPointLoss
from ssl3d.methods.parae import random_point_subset

__all__ = ["CrossPoint", "CrossPointConfig", "CrossPointNet", "ImageBranch"]

_EVAL_CHUNK = 256  # views per trunk forward when embedding `views` (bounds memory with many views)
_CPU = {"pretrain_points": 512, "k": 10, "image_arch": "resnet18", "n_views": 12, "view_size": 48}


@dataclass(frozen=True)
class CrossPointConfig(MethodConfig):
    """CrossPoint settings; defaults are the released code's (``train_crosspoint.py``, ``scripts/script.sh``)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=20, optimizer="adam", lr=1e-3, weight_decay=1e-6, scheduler="cosine"))  # script.sh: 100 epochs, batch 20; Adam 1e-3, wd 1e-6, cosine to 0
    n_points: int = field(default=2048, metadata={"range": "[1, inf)"})  # points per cloud in the data (the ShapeNet clouds' 2048)
    pretrain_points: int = field(default=2048, metadata={"range": "[1, inf)"})  # random subset per shape for the pretext task, shared by its two clouds (all when the cloud has fewer)
    k: int = field(default=15, metadata={"range": "[1, inf)"})  # DGCNN neighbours (script.sh and the SVM notebook: --k 15)
    emb_dims: int = field(default=1024, metadata={"range": "[1, inf)"})  # DGCNN aggregation width; the embedding is max+avg pooled, 2 x emb_dims
    proj_dim: int = field(default=256, metadata={"range": "[1, inf)"})  # output width of both projection heads (the invariant space)
    image_arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"  # image feature extractor f_theta_I (Sec. 4.1: ResNet-50)
    image_hidden: int = field(default=512, metadata={"range": "[1, inf)"})  # hidden width of the image projection head
    image_weights: str | None = field(default=None, metadata={"weights_for": ("image_arch",)})  # trunk init: None = random (as released: resnet50() untrained), a torchvision name or a state-dict file
    temperature: float = field(default=0.1, metadata={"range": "(0, inf)"})  # NT-Xent temperature of both terms (NTXentLoss(temperature=0.1))
    view_rig: Literal["ring12", "first8", "dodeca20", "random"] = "random"  # cameras of the rendered views (random: per-shape random viewpoints, as ShapeNetRender's)
    n_views: int = field(default=24, metadata={"range": "[1, inf)"})  # views rendered per shape for the random rig, one drawn per step (24: the 3D-R2N2 layout ShapeNetRender uses)
    view_size: int = field(default=224, metadata={"range": "[1, inf)"})  # view side in pixels (the code resizes to 224 x 224)
    scale_low: float = field(default=0.5, metadata={"range": "(0, inf)"})  # isotropic scale range of each cloud, low end
    scale_high: float = field(default=2.0, metadata={"range": "(0, inf)"})  # isotropic scale range of each cloud, high end
    translate: float = field(default=0.5, metadata={"range": "[0, inf)"})  # per-axis shift, as a fraction of the cloud's extent on that axis
    jitter_std: float = field(default=0.01, metadata={"range": "[0, inf)"})  # std of the per-coordinate Gaussian jitter
    jitter_clip: float = field(default=0.05, metadata={"range": "[0, inf)"})  # the jitter is clipped to +-jitter_clip
    max_dropout: float = field(default=0.875, metadata={"range": "[0, 1)"})  # input dropout: up to this fraction of points replaced by the first
    brightness: float = field(default=0.4, metadata={"range": "[0, inf)"})  # view colour jitter: brightness spread
    contrast: float = field(default=0.4, metadata={"range": "[0, inf)"})  # view colour jitter: contrast spread
    saturation: float = field(default=0.4, metadata={"range": "[0, inf)"})  # view colour jitter: saturation spread (no effect on grey views)
    flip_prob: float = field(default=0.5, metadata={"range": "[0, 1]"})  # probability of a horizontal flip of the view
    init_checkpoint: str | None = None  # a released state dict loaded after building: the point model (dgcnn_cls_best.pth) or an image model whose first convolution reads one channel; None = the seeded initialisation

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # a smoke test: the cpu networks and views, one epoch on 256-point clouds (a few minutes on synth)
        "quick": {**_CPU, "n_points": 256, "pretrain_points": 256, "train.epochs": 1, "train.batch_size": 16},
        # 2-core CPU: DGCNN k and pretraining subset of parae-dgcnn's cpu preset, ResNet18 on cmcv's cpu views
        # (12 random cameras at 48 px); about 9 min per epoch idle, so 2 epochs fit 20 minutes per seed (not a
        # knee: no budget curve yet; docs/methods.md#crosspoint)
        "cpu": {**_CPU, "n_points": 1024, "train.epochs": 2},
    }

    def __post_init__(self) -> None:
        if not self.scale_low <= self.scale_high:
            raise ValueError(f"scale_low must be <= scale_high; got {self.scale_low} > {self.scale_high}")


class ImageBranch(nn.Module):
    r"""The image feature extractor :math:`f_{\theta_I}` and projection head :math:`g_{\phi_I}` (Sec. 3.2).

    Views in :math:`[0, 1]` are standardised with ImageNet's statistics (averaged over RGB for the
    one-channel renders), then ``resnet`` (a torchvision ResNet, ``fc`` removed) and ``inv_head``:
    Linear (no bias) -> BatchNorm -> ReLU -> Linear (no bias), the released ``ResNet`` module's
    layout and key names.

    Shapes:
        - **images:** :math:`(B, 1, H, W)` -> ``features`` :math:`(B, D_{trunk})`, ``forward`` :math:`(B, D_{proj})`
    """

    def __init__(self, arch: str, hidden: int, out_dim: int, weights: str | None = None) -> None:
        super().__init__()
        self.resnet = resnet_trunk(arch, in_channels=1, weights=weights)
        self.inv_head = nn.Sequential(nn.Linear(TRUNK_DIMS[arch], hidden, bias=False), nn.BatchNorm1d(hidden),
                                      nn.ReLU(inplace=True), nn.Linear(hidden, out_dim, bias=False))

    def features(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be grey [B, 1, H, W]; got {tuple(images.shape)}")
        return self.resnet((images - GREY_MEAN) / GREY_STD)

    def forward(self, images: Tensor) -> Tensor:
        return self.inv_head(self.features(images))


class CrossPointNet(nn.Module):
    r"""Point branch :math:`f_{\theta_P}` (``points``, DGCNN) + :math:`g_{\phi_P}` (``point_head``), and ``image``.

    ``points`` is the DGCNN classifier's encoder (four one-layer EdgeConvs 64/64/128/256, a point-wise
    layer to ``emb_dims``, max and average pooling concatenated); ``point_head`` is the released
    ``inv_head``: Linear -> BatchNorm -> ReLU -> Linear, :math:`2E \to E \to` ``proj_dim``.
    """

    def __init__(self, cfg: CrossPointConfig) -> None:
        super().__init__()
        self.points = DGCNN.from_preset("dgcnn-cls", k=cfg.k, global_dim=cfg.emb_dims)
        self.point_head = nn.Sequential(nn.Linear(self.points.global_dim, cfg.emb_dims), nn.BatchNorm1d(cfg.emb_dims),
                                        nn.ReLU(inplace=True), nn.Linear(cfg.emb_dims, cfg.proj_dim))
        self.image = ImageBranch(cfg.image_arch, cfg.image_hidden, cfg.proj_dim, cfg.image_weights)


@register_method("crosspoint")
class CrossPoint(Method):
    """CrossPoint (Afham et al., CVPR 2022): DGCNN + ResNet trained by intra- and cross-modal NT-Xent."""

    name = "crosspoint"
    Config = CrossPointConfig
    pretrain_modalities = frozenset({"points", "views"})
    embed_modalities = frozenset({"points", "views"})
    paper = ("Afham, Dissanayake, Dissanayake, Dharmasiri, Thilakarathna, Rodrigo, CrossPoint: Self-Supervised "
             "Cross-Modal Contrastive Learning for 3D Point Cloud Understanding, CVPR 2022")
    version = "1"

    def build_model(self) -> nn.Module:
        self.loss = CrossPointLoss(self.config.temperature)
        return CrossPointNet(self.config)

    def load_official_state(self, state: Mapping[str, Any]) -> None:
        """A released point model (``DGCNN(args)``, ``cls=-1``) or image model (``ResNet``: ``resnet.*`` keys)
        state dict, mapped by :mod:`ssl3d.methods.crosspoint_keys` onto its branch; the other branch keeps its
        initialisation. ``module.`` prefixes (``nn.DataParallel``) are dropped."""
        if state and all(key.startswith("module.") for key in state):
            state = {key[len("module."):]: value for key, value in state.items()}
        state = tensor_entries(state, "a released CrossPoint point or image model state dict")
        reference = self.model.state_dict()
        image = any(key.startswith("resnet.") for key in state)
        mapped = (from_official_image_state if image else from_official_point_state)(state, reference)
        self.model.load_state_dict({**reference, **mapped})

    def data_overrides(self) -> dict[str, Any]:
        cfg = self.config
        settings = {"n_points": cfg.n_points, "view_rig": cfg.view_rig, "view_size": cfg.view_size}
        if cfg.view_rig == "random":  # the fixed rigs define their own views
            settings["n_views"] = cfg.n_views
        return settings

    def augment_points(self, points: Tensor) -> Tensor:
        """Sec. 3.1's transformation T, the released chain: normalise, scale, rotate, translate, jitter, drop."""
        cfg = self.config
        x = random_scale(normalize_unit_sphere(points), cfg.scale_low, cfg.scale_high)
        x = random_translate(rotate_y(x), cfg.translate)
        return random_input_dropout(clipped_jitter(x, cfg.jitter_std, cfg.jitter_clip), cfg.max_dropout)

    def augment_views(self, views: Tensor) -> Tensor:
        """One random view per shape (views :math:`(B, V, 1, H, W)`), colour-jittered and flipped as released."""
        cfg = self.config
        b, v = views.shape[:2]
        pick = torch.randint(v, (b,), device=views.device)
        images = views[torch.arange(b, device=views.device), pick]
        images = colour_jitter(images, cfg.brightness, cfg.contrast, cfg.saturation)
        return random_crop_flip(images, min(images.shape[-2:]), cfg.flip_prob)  # a full-size crop: the flip only

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """Eq. 5 on one batch: both clouds through the DGCNN as one batch of 2B, as the released code does."""
        points = random_point_subset(batch["points"], self.config.pretrain_points)
        clouds = torch.cat([self.augment_points(points), self.augment_points(points)])
        z1, z2 = self.model.point_head(self.model.points(clouds).global_feature).chunk(2)
        h = self.model.image(self.augment_views(batch["views"]))
        terms = self.loss(z1, z2, h)
        return {"loss": terms["total"], "imid": terms["imid"].detach(), "cmid": terms["cmid"].detach()}

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        model = self._check_pretrained()
        return model.points if modality == "points" else model.image.resnet

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """``points``: the DGCNN feature before the projection head (the released SVM's ``point_model(x)[2]``);
        ``views``: the image trunk's feature, before its head, averaged over the shape's views."""
        if modality == "points":
            return self.model.points(batch["points"]).global_feature
        views = batch["views"]
        if views.dim() != 5:
            raise ValueError(f"views must be [B, V, C, H, W]; got {tuple(views.shape)}")
        b, v = views.shape[:2]
        flat = views.flatten(0, 1)
        feats = torch.cat([self.model.image.features(chunk) for chunk in flat.split(_EVAL_CHUNK)])
        return feats.view(b, v, -1).mean(dim=1)
