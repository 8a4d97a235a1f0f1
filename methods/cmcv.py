"""CM-CV: joint 2D/3D self-supervision by cross-modality and cross-view correspondence.

Paper: L. Jing, L. Zhang, Y. Tian, "Self-supervised Feature Learning by Cross-modality and
Cross-view Correspondences", CVPR Workshops 2021 (no official code).
Paper-to-code map and departures: docs/methods.md#cm-cv
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ssl3d.methods.augment.crops import center_crop, random_crop_flip
from ssl3d.methods.augment.points import rotate_jitter
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.cmcv_config import CMConfig, CMCVConfig
from ssl3d.methods.cmcv_metrics import pretext_metrics
from ssl3d.methods.run_context import RunContext
from ssl3d.methods.samplers import CrossViewSampler, in_batch_triplets

LUMA = (0.299, 0.587, 0.114)  # BT.601 luminance weights: colour queries -> grey
_EVAL_CHUNK = 256  # images per F_img forward at evaluation (bounds memory with many views)


class ViewEncoder(nn.Module):
    r"""Multi-view descriptor of Sec. 4.2-4.4: :math:`\max_v F_{img}(\mathrm{crop}(I_v))`.

    Shares :math:`F_{img}` with the method (it is not a copy).

    Shapes:
        - **views:** :math:`(B, V, 1, H, W)` -> :math:`(B, 512)`
    """

    def __init__(self, image_encoder: nn.Module, crop: int) -> None:
        super().__init__()
        self.image_encoder, self.crop = image_encoder, crop

    def forward(self, views: Tensor) -> Tensor:
        if views.dim() != 5:
            raise ValueError(f"views must be [B, V, C, H, W]; got {tuple(views.shape)}")
        b, v = views.shape[:2]
        flat = center_crop(views, self.crop).flatten(0, 1)
        feats = torch.cat([self.image_encoder(chunk) for chunk in flat.split(_EVAL_CHUNK)])
        return feats.view(b, v, -1).amax(dim=1)


class QueryImageEncoder(nn.Module):
    """Colour query ``image`` -> BT.601 grey -> resize to ``view_size`` -> centre crop -> :math:`F_{img}`.

    Shapes:
        - **image:** :math:`(B, 3, H, W)` -> :math:`(B, 512)`
    """

    def __init__(self, image_encoder: nn.Module, view_size: int, crop: int) -> None:
        super().__init__()
        self.image_encoder, self.view_size, self.crop = image_encoder, view_size, crop

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W]; got {tuple(image.shape)}")
        grey = (image * image.new_tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        if grey.shape[-2:] != (self.view_size, self.view_size):
            grey = F.interpolate(grey, size=(self.view_size, self.view_size), mode="bilinear",
                                 align_corners=False, antialias=True)
        return self.image_encoder(center_crop(grey, self.crop))


class CMCVNet(nn.Module):
    r""":math:`F_{img}` (``image``), :math:`F_p` (``points``) and :math:`F_f` (``fusion``) of Sec. 3.2.

    Shapes:
        - **image(x):** :math:`(B, 1, H, W)` -> :math:`(B, 512)`
        - **points(p).global_feature:** :math:`(B, N, 3)` -> :math:`(B, 512)`
        - **fusion(z):** :math:`(..., 1024)` -> :math:`(..., 2)` (class 1 = same object)
    """

    def __init__(self, k: int = 20, fusion_hidden: int = 256) -> None:
        super().__init__()
        from ssl3d.methods.backbones.dgcnn import DGCNN
        from ssl3d.methods.backbones.image import ImageEncoder

        self.image = ImageEncoder("resnet18", in_channels=1)
        self.points = DGCNN.from_preset("cmcv", k=k)
        width = self.image.out_dim + self.points.global_dim
        self.fusion = nn.Sequential(nn.Linear(width, fusion_hidden), nn.ReLU(inplace=True), nn.Linear(fusion_hidden, 2))
        # start F_f at chance (y_hat = 1/2 for every pair, L_cross = 3 ln 2) so that early
        # updates follow the correspondence signal instead of a random initial bias
        nn.init.zeros_(self.fusion[-1].weight)
        nn.init.zeros_(self.fusion[-1].bias)

    def pair_logits(self, image_features: Tensor, point_features: Tensor) -> Tensor:
        """:math:`F_f([f_{img}, f_p])` for image features :math:`(B, K, 512)` and clouds :math:`(B, 512)` -> :math:`(B, K, 2)`."""
        expanded = point_features.unsqueeze(1).expand(-1, image_features.shape[1], -1)
        return self.fusion(torch.cat([image_features, expanded], dim=-1))


@register_method("cmcv")
class CMCV(Method):
    """CM-CV (Jing et al., CVPRW 2021): F_img + F_p trained by cross-modality and cross-view correspondence."""

    name = "cmcv"
    Config = CMCVConfig
    pretrain_modalities = frozenset({"points", "views"})
    embed_modalities = frozenset({"points", "views", "image"})
    point_feature_modalities = frozenset({"points"})
    paper = ("Jing, Zhang, Tian, Self-supervised Feature Learning by Cross-modality and Cross-view "
             "Correspondences, CVPR Workshops 2021")
    version = "2"  # 2: balanced per-epoch draws when iterations_per_epoch is set (one pass, as in quick: unchanged)

    def __init__(self, config: CMCVConfig | None = None) -> None:
        super().__init__(config)
        self._run_seed = 0  # the run seed of pretrain(), for the sampler's per-epoch permutations
        self._sampler: CrossViewSampler | None = None

    def build_model(self) -> nn.Module:
        _ = self.config.train_views  # validates n_views vs heldout_views
        from ssl3d.methods.losses.cmcv import CMCVLoss

        self.loss = CMCVLoss(self.config.alpha, self.config.beta, cross_view=self.config.cross_view)
        return CMCVNet(self.config.k, self.config.fusion_hidden)

    def data_overrides(self) -> dict[str, Any]:
        cfg = self.config
        return {"view_rig": "random", "n_views": cfg.n_views, "view_size": cfg.view_size, "n_points": cfg.n_points}

    def pretrain_dataset(self, data: Dataset) -> Dataset:
        cfg = self.config
        self._sampler = CrossViewSampler(data, cfg.train_views, cfg.iterations_per_epoch * cfg.train.batch_size,
                                         seed=self._run_seed)
        return self._sampler

    def on_epoch_start(self, epoch: int, run_seed: int) -> None:
        # the epoch picks the sampler's permutation (the sampler was built with the same run seed)
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        if "img1" in batch:
            imgs = torch.stack([batch["img1"], batch["img2"], batch["img3"]], dim=1)
        else:  # a plain dataset batch: build the triplets inside it
            imgs = torch.stack(in_batch_triplets(batch["views"], cfg.train_views), dim=1)
        b = imgs.shape[0]
        imgs = random_crop_flip(imgs.flatten(0, 1), cfg.crop_size, cfg.flip_prob)
        f = self.model.image(imgs).view(b, 3, -1)
        fp = self.model.points(rotate_jitter(batch["points"], cfg.jitter_sigma)).global_feature
        logits = self.model.pair_logits(f, fp)
        terms = self.loss(f[:, 0], f[:, 1], f[:, 2], logits)
        labels = torch.tensor([1, 1, 0], device=logits.device)
        acc = (logits.detach().argmax(-1) == labels).float().mean()
        return {"loss": terms["total"], "triplet": terms["triplet"].detach(), "cross": terms["cross"].detach(),
                "pair_acc": acc}

    def pretrain(self, data: Dataset, run: RunContext | None = None) -> "CMCV":
        """Train (shared loop); :meth:`after_pretraining` stores the pretext metrics."""
        self._run_seed = (run or RunContext()).seed
        try:
            return super().pretrain(data, run)
        finally:
            self._sampler = None  # it holds the pretraining data

    def after_pretraining(self, data: Dataset) -> None:
        """Store the pretext metrics in ``pretrain_info["pretext_metrics"]`` (also for served snapshots)."""
        probe = data[0] if len(data) >= 2 else {}
        if "points" in probe and "views" in probe and probe["views"].shape[0] == self.config.n_views:
            self.pretrain_info["pretext_metrics"] = pretext_metrics(self.model, data, self.config)
        else:  # e.g. a random-init run handed the evaluation split without views
            self.pretrain_info["pretext_metrics"] = {"note": "not computed: the data lacks points/views"}

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        model = self._check_pretrained()
        if modality == "points":
            return model.points
        if modality == "views":
            return ViewEncoder(model.image, self.config.crop_size)
        return QueryImageEncoder(model.image, self.config.view_size, self.config.crop_size)

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        if modality == "points":
            return self.model.points(batch["points"]).global_feature
        return self.encoder(modality)(batch[modality])

    def point_features_batch(self, points: torch.Tensor) -> torch.Tensor:
        return self.model.points(points).point_features


@register_method("cm")
class CM(CMCV):
    """The ``cm`` ablation of CM-CV (":math:`F_p`-CM"): cross-modality correspondence only, no Eq. 1."""

    name = "cm"
    untrained_network_of = "cmcv"  # only the loss or augmentation differs
    Config = CMConfig
