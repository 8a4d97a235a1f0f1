r"""CM-CV: joint 2D/3D self-supervision by cross-modality and cross-view correspondence.

Jing, Zhang and Tian, "Self-supervised Feature Learning by Cross-modality and
Cross-view Correspondences", CVPR Workshops 2021 (no official code exists).

Implemented:

* Sec. 3.2, the three networks: :math:`F_{img}` = torchvision ResNet18, the
  512-d global-average-pooled feature; :math:`F_p` = DGCNN, four EdgeConv
  blocks of two layers (64/64/64/128), a 512-d point-wise layer and max-pooling
  (``DGCNN.from_preset("cmcv")``); :math:`F_f` = FC 1024 -> 256 -> 2 on
  :math:`[F_{img}(img), F_p(p)]`.
* Sec. 3.3 and Algorithm 1, the samples :math:`(p, img_1, img_2, img_3)`,
  labels :math:`y = (1, 1, 0)` (:class:`CrossViewSampler`) and the loss
  :math:`L = L_{triplet} + \beta L_{cross}` (Eq. 1-3,
  :class:`~ssl3d.methods.losses.cmcv.CMCVLoss`); ``cm`` is the ablation
  without the cross-view term (":math:`F_p`-CM", Tables 1-5).
* Sec. 4.1, the augmentation (random crop, horizontal flip p = 0.5; rotation
  about the up axis in :math:`[0, 2\pi)`, Gaussian jitter 0.02), 2048 points,
  V = 180 random views, and SGD (lr 0.001, momentum 0.9, weight decay 5e-4,
  x0.1 every 40,000 of 120,000 iterations, batch 32).
* Sec. 4.2, the pretext metrics of Tables 1-2 (:func:`pretext_metrics`).

Departures from the paper:

* No pretrained weights (none exist offline); the renders are grey, so
  :math:`F_{img}`'s first convolution takes 1 channel (random init), and the
  colour ``image`` query is turned into BT.601 luminance
  (:math:`0.299 R + 0.587 G + 0.114 B`) and resized to ``view_size``.
* Renders come from the benchmark's renderer (two-light grey shading, the
  random-camera ranges of Sec. 3.1), not the paper's Phong renderer.
* "Randomly cropped" is unstated: training takes a random square crop of side
  ``round(crop_fraction * view_size)`` (7/8, the ImageNet 224-of-256 ratio);
  evaluation takes the centre crop, so both see objects at the same scale.
  ``view_size`` 224 is our choice (the paper gives no size).
* :math:`F_f`'s activation, the margin :math:`\alpha`, the weight :math:`\beta`
  and DGCNN's :math:`k` are unstated: ReLU, 1, 1 and 20. :math:`F_f`'s last
  layer starts at zero (every pair at chance); initialisation is unstated.
* Iterations: the shared loop schedules per epoch, so an "epoch" here is
  ``iterations_per_epoch`` steps (the sampler is that many batches long,
  every object used equally often to within one, in a shuffled order): 120
  epochs x 1000 steps with the x0.1 step every 40 epochs is exactly the
  paper's schedule.
* ``heldout_views`` of the V views of every object are never used in training;
  the pretext metrics are measured on them (on the pretraining objects), not
  on the test split as in Tables 1-2, because ``pretrain`` sees only the
  pretraining data. mPD is the plain (not squared) Euclidean distance.
* ``quick`` (2-core CPU): 256 points, k = 10, 12 views of 48 px (2 held
  out, 42-px crops), batch 16, 2 passes over the data (90 steps on default
  synth), SGD lr 0.01 without decay (the paper's 0.001 barely moves in 90 steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ssl3d.methods.base import Method, RunContext, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.core.seeding import epoch_seed

LUMA = (0.299, 0.587, 0.114)  # BT.601 luminance weights: colour queries -> grey
_EVAL_CHUNK = 256  # images per F_img forward at evaluation (bounds memory with many views)


@dataclass(frozen=True)
class CMCVConfig(MethodConfig):
    """CM-CV settings; defaults are the paper's (Sec. 3-4.1) where it states them."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=120, batch_size=32, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4,
        scheduler="step", step_size=40, gamma=0.1))  # 120 x 1000 = 120k iterations, x0.1 every 40k
    iterations_per_epoch: int = field(default=1000, metadata={"range": "[0, inf)"})  # optimisation steps per epoch; 0 = one pass over the objects
    cross_view: bool = True  # include the cross-view triplet term (Eq. 1); False = the `cm` ablation
    alpha: float = field(default=1.0, metadata={"range": "[0, inf)"})  # triplet margin on squared distances (Eq. 1; unstated in the paper)
    beta: float = field(default=1.0, metadata={"range": "[0, inf)"})  # weight of the cross-modality term (Eq. 3; unstated in the paper)
    n_points: int = field(default=2048, metadata={"range": "[1, inf)"})  # points per cloud (Sec. 3.1)
    k: int = field(default=20, metadata={"range": "[1, inf)"})  # DGCNN neighbours (unstated; DGCNN's default)
    n_views: int = field(default=180, metadata={"range": "[1, inf)"})  # V random views rendered per object (Sec. 4.1)
    heldout_views: int = field(default=10, metadata={"range": "[0, inf)"})  # of the V views, kept out of training for the pretext metrics
    view_size: int = field(default=224, metadata={"range": "[1, inf)"})  # rendered view side, pixels (our choice)
    crop_fraction: float = field(default=0.875, metadata={"range": "(0, 1]"})  # side of the random training crop / centre eval crop, relative to view_size
    flip_prob: float = field(default=0.5, metadata={"range": "[0, 1]"})  # horizontal-flip probability of training images (Sec. 4.1)
    jitter_sigma: float = field(default=0.02, metadata={"range": "[0, inf)"})  # std of Gaussian point jitter (Sec. 4.1)
    fusion_hidden: int = field(default=256, metadata={"range": "[1, inf)"})  # hidden width of F_f (Sec. 3.2)
    metric_pairs: int = 200  # pairs of the pretext metrics (half positive, half negative)
    metric_seed: int = field(default=0, metadata={"range": "[0, inf)"})  # seed of the pretext-metric pairs (fixed: the same pairs for every run seed)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {"n_points": 256, "k": 10, "n_views": 12, "heldout_views": 2, "view_size": 48,
                  "iterations_per_epoch": 0, "train.epochs": 2, "train.batch_size": 16, "train.lr": 0.01,
                  "train.scheduler": "none"},
    }

    def __post_init__(self) -> None:
        lows = {"iterations_per_epoch": 0, "heldout_views": 0, "n_points": 1, "k": 1, "n_views": 1, "view_size": 1,
                "fusion_hidden": 1, "metric_pairs": 1, "jitter_sigma": 0, "alpha": 0, "beta": 0}
        bad = [f"{name} must be >= {low}, got {getattr(self, name)}" for name, low in lows.items()
               if not getattr(self, name) >= low]
        if not 0 < self.crop_fraction <= 1:
            bad.append(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if not 0 <= self.flip_prob <= 1:
            bad.append(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if bad:
            raise ValueError("invalid CM-CV config: " + "; ".join(bad))

    @property
    def train_views(self) -> int:
        """Views per object the sampler may use (the first ``n_views - heldout_views``)."""
        if self.n_views - self.heldout_views < 2:
            raise ValueError(f"n_views - heldout_views must be >= 2 (two training views per object); "
                             f"got n_views={self.n_views}, heldout_views={self.heldout_views}")
        return self.n_views - self.heldout_views

    @property
    def crop_size(self) -> int:
        return max(1, round(self.crop_fraction * self.view_size))


@dataclass(frozen=True)
class CMConfig(CMCVConfig):
    """The ``cm`` ablation: CM-CV trained with the cross-modality term only."""

    cross_view: bool = False  # fixed: this variant is defined by leaving Eq. 1 out

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cross_view:
            raise ValueError("method 'cm' has no cross-view term; use method 'cmcv' for cross_view=True")


class CrossViewSampler(Dataset):
    r"""Training samples of Sec. 3.3 / Algorithm 1 over a dataset of ``points`` + ``views``.

    An epoch of ``len`` = ``length`` (or :math:`n`) samples uses every object
    :math:`\lfloor len / n \rfloor` times, and once more :math:`len \bmod n`
    objects drawn from a per-epoch permutation (so draws per object differ by
    at most one; :math:`k \bmod n` would favour the first, e.g. label-sorted,
    objects every epoch). Sample :math:`k` is the cloud :math:`p` of object
    :math:`i` (:meth:`object_index`), two distinct random views
    :math:`img_1, img_2` among its first ``train_views``, and a random view
    :math:`img_3` of an object :math:`j \ne i` drawn uniformly from the
    :math:`n - 1` others (labels :math:`y = (1, 1, 0)` are implied).

    The permutation depends only on ``(seed, epoch)``; :meth:`set_epoch`
    writes the epoch to shared memory, so (persistent) DataLoader workers and
    all ranks agree. Views and negatives come from torch's global generator,
    which the trainer re-seeds every epoch (workers seed from the loader's
    generator): a seed gives the same samples for a given ``num_workers``.
    Category labels are not passed on.

    Shapes:
        - **output:** ``points`` :math:`(N, 3)`; ``img1``, ``img2``, ``img3``
          :math:`(C, H, W)`; ``index``, ``negative_index`` scalars
    """

    def __init__(self, data: Dataset, train_views: int, length: int = 0, seed: int = 0) -> None:
        if len(data) < 2:
            raise ValueError(f"CM-CV needs at least 2 objects to draw negatives; got {len(data)}")
        if train_views < 2:
            raise ValueError(f"train_views must be >= 2; got {train_views}")
        self.data, self.train_views, self.length, self.seed = data, train_views, length, seed
        # shared memory: worker processes (persistent ones too) read the epoch the main process sets
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cached: tuple[int, list[int]] | None = None  # (epoch, its permutation), per process

    def __len__(self) -> int:
        return self.length or len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (call before iterating over the epoch)."""
        self._epoch.fill_(int(epoch))

    def object_index(self, k: int) -> int:
        """The object of sample ``k`` in the current epoch (see the class docstring)."""
        n = len(self.data)
        full = (len(self) // n) * n
        if k < full:
            return k % n
        epoch = int(self._epoch)
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._cached = (epoch, torch.randperm(n, generator=g).tolist())
        return self._cached[1][k - full]

    def _views(self, i: int) -> Tensor:
        views = self.data[i]["views"]
        if views.shape[0] < self.train_views:
            raise ValueError(f"object {i} has {views.shape[0]} views; the sampler needs {self.train_views}")
        return views

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        n = len(self.data)
        i = self.object_index(int(k))
        j = int(torch.randint(n - 1, ()))
        j += j >= i  # skip i: uniform over the other n - 1 objects
        sample = self.data[i]
        views = self._views(i)
        a, b = torch.randperm(self.train_views)[:2].tolist()
        c = int(torch.randint(self.train_views, ()))
        return {"points": sample["points"], "img1": views[a], "img2": views[b], "img3": self._views(j)[c],
                "index": torch.tensor(i), "negative_index": torch.tensor(j)}


def rotate_jitter(points: Tensor, sigma: float) -> Tensor:
    r"""Sec. 4.1: :math:`p' = p R_y(\theta)^\top + \epsilon`, :math:`\theta \sim U[0, 2\pi)` about +Y, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)`.

    Shapes:
        - **points:** :math:`(B, N, 3)` -> :math:`(B, N, 3)`
    """
    theta = torch.rand(points.shape[0], device=points.device) * (2 * math.pi)
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)
    return points @ rot.transpose(1, 2) + sigma * torch.randn_like(points)


def random_crop_flip(images: Tensor, size: int, flip_prob: float) -> Tensor:
    """Independent random ``size`` x ``size`` crops, each flipped horizontally with ``flip_prob``.

    Shapes:
        - **images:** :math:`(B, C, H, W)` -> :math:`(B, C, size, size)`
    """
    b, _, h, w = images.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the image size {h}x{w}")
    dev = images.device
    top = torch.randint(h - size + 1, (b,), device=dev)
    left = torch.randint(w - size + 1, (b,), device=dev)
    flip = torch.rand(b, device=dev) < flip_prob
    ar = torch.arange(size, device=dev)
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)  # flipping = reading columns backwards
    rows = top[:, None] + ar
    out = images[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # advanced indices come first: [B, size, size, C]


def center_crop(images: Tensor, size: int) -> Tensor:
    """The central ``size`` x ``size`` window of images :math:`(..., H, W)`."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the image size {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


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


def _in_batch_triplets(views: Tensor, train_views: int) -> tuple[Tensor, Tensor, Tensor]:
    """(img1, img2, img3) from a plain batch of views: the negative is another object of the batch."""
    b, v = views.shape[:2]
    if b < 2:
        raise ValueError("in-batch negatives need a batch of at least 2 objects")
    usable = min(v, train_views)
    if usable < 2:
        raise ValueError(f"need >= 2 views per object; got {v}")
    ab = torch.rand(b, usable, device=views.device).argsort(dim=1)[:, :2]
    neg = (torch.arange(b, device=views.device) + 1 + torch.randint(b - 1, (b,), device=views.device)) % b
    c = torch.randint(usable, (b,), device=views.device)
    rows = torch.arange(b, device=views.device)
    return views[rows, ab[:, 0]], views[rows, ab[:, 1]], views[neg, c]


@torch.no_grad()
def pretext_metrics(model: CMCVNet, data: Dataset, config: CMCVConfig) -> dict[str, Any]:
    r"""Tables 1-2 of Sec. 4.2 on ``metric_pairs`` pairs drawn with ``metric_seed``.

    :math:`m` = ``metric_pairs // 2`` anchors :math:`i` with a different object
    :math:`j`, two distinct held-out views :math:`a, b` of :math:`i` and one
    held-out view :math:`c` of :math:`j` (all views if none are held out).
    Cross-modality accuracy (%) of :math:`F_f` over the :math:`2m` pairs
    :math:`(a, p_i)` (same) and :math:`(c, p_i)` (different); mPD = mean (std)
    of :math:`\|F_{img}(a) - F_{img}(b)\|_2` (positive) and
    :math:`\|F_{img}(a) - F_{img}(c)\|_2` (negative). Eval mode, centre crops,
    no point augmentation.
    """
    n, m = len(data), max(1, config.metric_pairs // 2)
    held = config.heldout_views if config.heldout_views >= 2 else 0
    first = config.n_views - held if held else 0
    pool = held or config.n_views
    g = torch.Generator().manual_seed(config.metric_seed)
    anchor = torch.randint(n, (m,), generator=g)
    other = torch.randint(n - 1, (m,), generator=g)
    other += (other >= anchor).long()
    ab = torch.rand(m, pool, generator=g).argsort(dim=1)[:, :2] + first
    c = torch.randint(pool, (m,), generator=g) + first
    device = next(model.parameters()).device
    model.eval()
    crop = config.crop_size
    correct, d_pos, d_neg = 0, [], []
    for s in range(0, m, 32):
        idx = range(s, min(m, s + 32))
        samples = [data[int(anchor[t])] for t in idx]
        points = torch.stack([x["points"] for x in samples]).to(device)
        imgs = torch.stack([torch.stack([x["views"][ab[t, 0]], x["views"][ab[t, 1]], data[int(other[t])]["views"][c[t]]])
                            for x, t in zip(samples, idx)]).to(device)  # [b, 3, C, H, W]
        b = imgs.shape[0]
        f = model.image(center_crop(imgs, crop).reshape(b * 3, imgs.shape[2], crop, crop)).view(b, 3, -1)
        logits = model.pair_logits(f[:, [0, 2]], model.points(points).global_feature)  # pairs (a, p), (c, p)
        correct += int((logits.argmax(-1) == torch.tensor([1, 0], device=device)).sum())
        d_pos.append((f[:, 0] - f[:, 1]).norm(dim=-1).cpu())
        d_neg.append((f[:, 0] - f[:, 2]).norm(dim=-1).cpu())
    pos, neg = torch.cat(d_pos).double(), torch.cat(d_neg).double()
    return {"pairs": 2 * m, "seed": config.metric_seed, "views": "held-out" if held else "all (none held out)",
            "cross_modality_acc": round(100.0 * correct / (2 * m), 3),
            "positive_mpd": round(float(pos.mean()), 4), "positive_mpd_std": round(float(pos.std(unbiased=False)), 4),
            "negative_mpd": round(float(neg.mean()), 4), "negative_mpd_std": round(float(neg.std(unbiased=False)), 4)}


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

    def lr_factor(self, epoch: int) -> float:
        # The trainer calls this at the start of every epoch, before iterating the loader: the only
        # hook that tells a method the epoch, which picks the sampler's permutation.
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)
        return super().lr_factor(epoch)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        if "img1" in batch:
            imgs = torch.stack([batch["img1"], batch["img2"], batch["img3"]], dim=1)
        else:  # a plain dataset batch: build the triplets inside it
            imgs = torch.stack(_in_batch_triplets(batch["views"], cfg.train_views), dim=1)
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
        """Train (shared loop), then store the pretext metrics in ``pretrain_info["pretext_metrics"]``."""
        self._run_seed = (run or RunContext()).seed
        try:
            super().pretrain(data, run)
        finally:
            self._sampler = None  # it holds the pretraining data
        probe = data[0] if len(data) >= 2 else {}
        if "points" in probe and "views" in probe and probe["views"].shape[0] == self.config.n_views:
            self.pretrain_info["pretext_metrics"] = pretext_metrics(self.model, data, self.config)
        else:  # e.g. a random-init run handed the evaluation split without views
            self.pretrain_info["pretext_metrics"] = {"note": "not computed: the data lacks points/views"}
        return self

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
    Config = CMConfig
