r"""The part-segmentation protocol: a per-point head on a method's point features.

Definition (also in docs/protocols.md):

1. **training shapes**: ``label_fraction`` of the train split's shapes of
   every category (at least one each), drawn with the run seed;
2. **features** :math:`f_i \in \mathbb{R}^D` of every point from
   ``method.point_features`` (points only, no augmentation), in one of three
   modes (Jing et al., CM-CV, CVPRW 2021, Sec. 4.5):

   * ``frozen`` - the pretrained encoder is fixed (eval mode, no grad) and
     only the head is trained; the features of every shape are computed once
     and held in memory when they fit in ``feature_cache_mb`` (the same
     numbers as recomputing them every epoch, at one encoder pass instead of
     ``epochs``), else recomputed per batch;
   * ``finetune`` - a *copy* of the pretrained method is trained with the head
     (the encoder from ``method.encoder("points")`` in train mode; the
     caller's method is left untouched);
   * ``scratch`` - the same network, randomly initialised with the run seed,
     trained like ``finetune``: the supervised reference;

3. **head** (:class:`PartSegHead`): per point,
   :math:`[\,f_i,\ \max_j f_j,\ \mathrm{onehot}(c)\,] \to 256 \to 128 \to P`
   (Linear + BN + ReLU, dropout 0.5 before the last layer), :math:`P` = the
   dataset's number of global part ids, :math:`c` = the shape's category;
4. **training**: cross-entropy over all points of every training shape,
   Adam (lr 0.003) with the learning rate multiplied by ``lr_gamma`` every
   ``lr_step`` epochs, batches of ``batch_size`` shapes, shuffled;
5. **prediction**: argmax over the parts of the shape's *own* category only
   (the ShapeNetPart convention: the category is known at test time);
6. **metrics** on the test split (:mod:`~ssl3d.bench.protocols.seg_metrics`):
   ``instance_miou``, ``class_miou`` and ``point_acc``, in %.

Paper settings. CM-CV (Sec. 4, "Evaluation of learned 2D and 3D features")
fine-tunes with Adam at an initial learning rate of 0.003 "decreased by 90%
every 20 epochs", and (Sec. 4.5, Table 5) reports the frozen / from-scratch /
fine-tuned settings with 2%, 20% and 100% of the ShapeNet part training data;
these are ``label_fraction`` 0.02 / 0.2 / 1.0 (here drawn per category). The
papers do not state the total number of epochs; a 90% decay every 20 epochs
implies a run several times longer than 20 epochs, so the default
``epochs=20`` (one constant-lr stage) is a CPU budget, not the paper's
setting: raise ``--set segmentation.epochs=...`` for paper-scale numbers.
CM-CV's own head (four FC blocks whose outputs are all concatenated with the
global feature) is replaced by the common head above so that every method is
scored by the same head. ParAE (Eckart et al., CVPR 2021, Sec. 4.4) evaluates
segmentation by fine-tuning vs. random initialisation (on S3DIS), i.e. the
``finetune`` vs. ``scratch`` comparison.

Every random choice (the subset, scratch and head initialisation, shuffling,
dropout) derives from the run seed, so one seed gives identical metrics on a
given device.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ssl3d.bench.protocols.head_training import check_labels, cross_entropy_step
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.seg_metrics import segmentation_metrics
from ssl3d.bench.protocols.svm import class_balanced_subset

__all__ = ["SegConfig", "PartSegHead", "SegmentationProtocol", "select_training_shapes"]

MODES = ("frozen", "finetune", "scratch")


@dataclass(frozen=True)
class SegConfig:
    """Segmentation protocol settings (``--set segmentation.KEY=VALUE``)."""

    mode: Literal["frozen", "finetune", "scratch"] = "frozen"  # encoder fixed / fine-tuned copy / random init
    label_fraction: float = field(default=1.0, metadata={"range": "(0, 1]"})  # fraction of training shapes kept per category (>= 1 each); paper: 0.02, 0.2, 1.0
    epochs: int = field(default=20, metadata={"range": "[1, inf)"})  # training epochs (a CPU budget; see the module docstring for the papers' setting)
    batch_size: int = field(default=16, metadata={"range": "[1, inf)"})  # shapes per training / prediction batch
    lr: float = field(default=0.003, metadata={"range": "(0, inf)"})  # Adam initial learning rate (CM-CV Sec. 4)
    lr_step: int = field(default=20, metadata={"range": "[1, inf)"})  # epochs between learning-rate decays (CM-CV: every 20 epochs)
    lr_gamma: float = field(default=0.1, metadata={"range": "(0, 1]"})  # learning-rate multiplier at each decay (CM-CV: "decreased by 90%")
    weight_decay: float = field(default=0.0, metadata={"range": "[0, inf)"})  # Adam L2 penalty on head (and encoder) weights
    feature_cache_mb: int = field(default=2048, metadata={"range": "[0, inf)"})  # frozen mode: keep all per-point features in memory up to this size; 0 = never

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"segmentation.mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"segmentation.label_fraction must be in (0, 1]; got {self.label_fraction}")
        for key in ("epochs", "batch_size", "lr_step"):
            if getattr(self, key) < 1:
                raise ValueError(f"segmentation.{key} must be a positive integer; got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"segmentation.lr must be > 0; got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"segmentation.lr_gamma must be in (0, 1]; got {self.lr_gamma}")
        if self.weight_decay < 0:
            raise ValueError(f"segmentation.weight_decay must be >= 0; got {self.weight_decay}")
        if self.feature_cache_mb < 0:
            raise ValueError(f"segmentation.feature_cache_mb must be >= 0; got {self.feature_cache_mb}")


class PartSegHead(nn.Module):
    r"""Per-point part classifier on :math:`[\,f_i,\ g,\ \mathrm{onehot}(c)\,]`.

    With :math:`g = \max_j f_j` the max-pooled global feature of the shape's
    own point features, the first layer is split by linearity,

    .. math::
        W\,[f_i, g, e_c] = W_f f_i + W_s [g, e_c],

    so the per-shape term is computed once per shape and the
    :math:`(B, N, 2D + C)` concatenation is never materialised. Then
    BN + ReLU, Linear + BN + ReLU for each further hidden width, dropout and
    a final Linear to :math:`P` logits.

    Args:
        feature_dim: :math:`D`, per-point feature width.
        num_categories: :math:`C`, width of the category one-hot.
        num_parts: :math:`P`, number of global part ids (logits per point).
        hidden: hidden widths.
        dropout: dropout probability before the last layer.

    Shapes:
        - **input:** features :math:`(B, N, D)`, category :math:`(B,)` int64
        - **output:** logits :math:`(B, N, P)`
    """

    def __init__(
        self,
        feature_dim: int,
        num_categories: int,
        num_parts: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for key, value in (("feature_dim", feature_dim), ("num_categories", num_categories), ("num_parts", num_parts)):
            if value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value}")
        if len(hidden) == 0:
            raise ValueError("hidden must list at least one layer width")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.num_categories = num_categories
        # bias-free: BatchNorm follows
        self.point_in = nn.Linear(feature_dim, hidden[0], bias=False)
        self.shape_in = nn.Linear(feature_dim + num_categories, hidden[0], bias=False)
        layers: list[nn.Module] = [nn.BatchNorm1d(hidden[0]), nn.ReLU()]
        for prev, width in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(prev, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden[-1], num_parts)]
        self.body = nn.Sequential(*layers)

    def forward(self, features: Tensor, category: Tensor) -> Tensor:
        b, n, _ = features.shape
        onehot = F.one_hot(category, self.num_categories).to(features.dtype)
        shape_term = self.shape_in(torch.cat([features.max(dim=1).values, onehot], dim=-1))
        h = self.point_in(features) + shape_term.unsqueeze(1)
        return self.body(h.reshape(b * n, -1)).reshape(b, n, -1)


def select_training_shapes(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the training shapes kept: ``round(fraction * n_c)`` (>= 1) of each category ``c``."""
    return class_balanced_subset(np.asarray(labels), fraction, np.random.default_rng(seed))


def _stream_seed(seed: int, stream: int) -> int:
    # independent streams, so e.g. the head starts the same in every mode whatever the encoder init consumed
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _rng_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """Restore the caller's torch RNG state afterwards (the protocol seeds its own)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])
    return torch.random.fork_rng(devices=[])


class _PointFeatures:
    """Per-point features of a batch in the protocol's mode (see module docstring)."""

    def __init__(self, method, mode: str, seed: int, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        if mode == "frozen":
            method.require_pretrained()
            self.method = method
            self.encoder: nn.Module | None = None
            return
        if mode == "finetune":
            method.require_pretrained()
            net = copy.deepcopy(method)
        else:
            net = type(method)(method.config)
            torch.manual_seed(_stream_seed(seed, 1))
            net.model = net.build_model()
        net.model.to(device)
        # only the encoder is trained; whatever else the method holds stays fixed
        net.model.requires_grad_(False)
        self.encoder = net.encoder("points")
        self.encoder.requires_grad_(True)
        self.method = net

    def parameters(self) -> list[nn.Parameter]:
        return [] if self.encoder is None else list(self.encoder.parameters())

    def of_batch(self, batch: dict, train: bool) -> Tensor:
        """Features of a loader batch: the cached ones when the batch carries them."""
        if "features" in batch:
            return batch["features"].to(self.device)
        return self(batch["points"], train=train)

    def __call__(self, points: Tensor, train: bool) -> Tensor:
        if self.encoder is None:
            return self.method.point_features(points).to(self.device)
        self.method.model.eval()
        self.encoder.train(train)
        with torch.set_grad_enabled(train):
            return self.method.point_features_batch(points.to(self.device)).float()


class _FeatureTable(Dataset):
    """The frozen encoder's features of every shape of a dataset, computed once (see ``frozen`` mode)."""

    def __init__(self, source: _PointFeatures, data, indices: Sequence[int], batch_size: int) -> None:
        features, point_labels, labels = [], [], []
        loader = DataLoader(Subset(data, list(indices)), batch_size=batch_size, shuffle=False, num_workers=0)
        with torch.no_grad():
            for batch in loader:
                features.append(source(batch["points"], train=False).cpu())
                point_labels.append(batch["point_labels"])
                labels.append(batch["label"])
        self.features = torch.cat(features)
        self.point_labels = torch.cat(point_labels)
        self.labels = torch.cat(labels)

    @staticmethod
    def size_mb(n_shapes: int, n_points: int, feature_dim: int) -> float:
        return n_shapes * n_points * feature_dim * 4 / 2**20  # float32

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"features": self.features[index], "point_labels": self.point_labels[index],
                "label": self.labels[index]}


def _relative_change(before: list[Tensor], after: list[Tensor]) -> float:
    if not before:
        return 0.0
    diff = sum(float((a.detach() - b).pow(2).sum()) for a, b in zip(after, before))
    norm = sum(float(b.pow(2).sum()) for b in before)
    return math.sqrt(diff) / max(math.sqrt(norm), 1e-12)


@register_protocol("segmentation")
class SegmentationProtocol(Protocol):
    """Part segmentation with a per-point head: frozen, fine-tuned or from scratch (see module docstring)."""

    name = "segmentation"
    Config = SegConfig
    needs = "point_features"

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        return ("points", "point_labels")

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg: SegConfig = self.config
        if modality != "points":
            raise ValueError(f"the segmentation protocol works on 'points' only; got modality {modality!r}")
        num_parts = int(train_data.num_parts)
        if num_parts == 0:
            raise ValueError(f"dataset {train_data.name!r} has no part labels (num_parts == 0); "
                             "the segmentation protocol needs a dataset with parts")
        class_names = list(train_data.class_names)
        category_parts = train_data.category_parts
        missing = [c for c in class_names if not category_parts.get(c)]
        if missing:
            raise ValueError(f"dataset {train_data.name!r} lists no parts for categories: {', '.join(missing)}")
        device = torch.device(ctx.device)
        part_mask = torch.zeros(len(class_names), num_parts, dtype=torch.bool)
        for c, name in enumerate(class_names):
            part_mask[c, list(category_parts[name])] = True
        part_mask = part_mask.to(device)

        keep = select_training_shapes(train_data.labels, cfg.label_fraction, _stream_seed(ctx.seed, 0))
        # a lone last shape would leave batch-level BatchNorm in the encoder with a single sample
        drop_last = len(keep) % cfg.batch_size == 1 and len(keep) > 1

        with _rng_scope(device):
            source = _PointFeatures(method, cfg.mode, ctx.seed, device)
            first_points = train_data[int(keep[0])]["points"]
            feature_dim = self._feature_dim(source, first_points)
            table_mb = _FeatureTable.size_mb(len(keep) + len(test_data), first_points.shape[0], feature_dim)
            cached = cfg.mode == "frozen" and table_mb <= cfg.feature_cache_mb
            if cached:
                train_set = _FeatureTable(source, train_data, keep.tolist(), cfg.batch_size)
                test_set = _FeatureTable(source, test_data, range(len(test_data)), cfg.batch_size)
            else:
                train_set, test_set = Subset(train_data, keep.tolist()), test_data
            shuffle = torch.Generator().manual_seed(_stream_seed(ctx.seed, 2))
            train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=shuffle,
                                      drop_last=drop_last, num_workers=0)
            test_loader = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
            torch.manual_seed(_stream_seed(ctx.seed, 3))  # head init, then dropout
            head = PartSegHead(feature_dim, len(class_names), num_parts).to(device)
            encoder_start = [p.detach().clone() for p in source.parameters()]
            optimizer = torch.optim.Adam([*head.parameters(), *source.parameters()], lr=cfg.lr,
                                         weight_decay=cfg.weight_decay)
            schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
            losses = []
            bar = tqdm(range(cfg.epochs), desc=f"segmentation ({cfg.mode})", disable=not ctx.progress,
                       leave=False, dynamic_ncols=True)
            for _ in bar:
                losses.append(self._train_epoch(head, source, train_loader, optimizer, num_parts, device))
                schedule.step()
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            preds, targets, labels = self._predict(head, source, test_loader, part_mask, device)
            change = _relative_change(encoder_start, source.parameters())

        scores = segmentation_metrics(preds, targets, [class_names[c] for c in labels], category_parts)
        per_category = scores.pop("per_category")
        details = {
            "mode": cfg.mode, "label_fraction": cfg.label_fraction, "n_train_shapes": int(len(keep)),
            "n_test_shapes": len(preds), "epochs": cfg.epochs, "final_train_loss": losses[-1],
            "train_loss_by_epoch": [round(v, 6) for v in losses], "feature_dim": feature_dim,
            "num_parts": num_parts, "encoder_param_change": change, "features_cached": cached,
            "per_category_miou": {c: round(v, 4) for c, v in per_category.items()},
        }
        return ProtocolResult(scores, details)

    @staticmethod
    def _feature_dim(source: _PointFeatures, points: Tensor) -> int:
        # one shape through the encoder in eval mode (no BN statistics updated)
        with torch.no_grad():
            out = source(points.unsqueeze(0), train=False)
        if out.ndim != 3 or out.shape[:2] != (1, points.shape[0]):
            raise ValueError(f"point_features returned shape {tuple(out.shape)} for [1, {points.shape[0]}, 3]; "
                             "expected [B, N, D]")
        return int(out.shape[-1])

    @staticmethod
    def _train_epoch(head: PartSegHead, source: _PointFeatures, loader: DataLoader,
                     optimizer: torch.optim.Optimizer, num_parts: int, device: torch.device) -> float:
        """One pass over the training shapes; returns the mean per-point cross-entropy."""
        head.train()
        total, count = 0.0, 0
        for batch in loader:
            target = batch["point_labels"].to(device)
            check_labels(target, num_parts, "point_labels")
            logits = head(source.of_batch(batch, train=True), batch["label"].to(device))
            total += cross_entropy_step(optimizer, logits, target, "segmentation") * len(target)
            count += len(target)
        return total / max(count, 1)

    @staticmethod
    @torch.no_grad()
    def _predict(head: PartSegHead, source: _PointFeatures, loader: DataLoader, part_mask: Tensor,
                 device: torch.device) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        """Per test shape: predicted parts (argmax within its category), true parts, category index."""
        head.eval()
        preds, targets, labels = [], [], []
        for batch in loader:
            category = batch["label"].to(device)
            logits = head(source.of_batch(batch, train=False), category)
            logits = logits.masked_fill(~part_mask[category].unsqueeze(1), float("-inf"))
            preds.extend(logits.argmax(dim=-1).cpu().numpy())
            targets.extend(batch["point_labels"].numpy())
            labels.extend(batch["label"].tolist())
        return preds, targets, labels
