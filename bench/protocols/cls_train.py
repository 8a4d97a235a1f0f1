r"""The pieces of the ``classification`` protocol: heads, the augmentation, inputs, one training epoch.

The protocol (:mod:`ssl3d.bench.protocols.classification`) wires them together;
they live apart so each is tested alone:

* :class:`ClassifierHead` - ``linear`` (one ``Linear``) or ``mlp`` (three
  layers, PointNet's classification head layout), optionally preceded by a fixed
  standardisation fitted on the fitting part's frozen features;
* :func:`scale_translate` - Point-BERT / Point-MAE's ``PointcloudScaleAndTranslate``
  (per shape, per axis scale :math:`s \sim U[2/3, 3/2]`, shift :math:`t \sim U[-0.2, 0.2]`),
  drawn from an explicit generator so the augmented copies are reproducible;
* :class:`FeatureInputs` (cached frozen features) and :class:`DataInputs`
  (dataset batches through a trainable encoder) - what an epoch iterates over;
* :class:`EncoderClassifier` - a trainable copy of the method's encoder + a head.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from ssl3d.bench.protocols.head_training import cross_entropy_step
from ssl3d.methods.augment.scale_translate import scale_translate  # Point-MAE's, also its fine-tuning's

__all__ = ["ClassifierHead", "DataInputs", "EncoderClassifier", "FeatureInputs", "scale_translate", "train_epoch",
           "predict_logits"]


class ClassifierHead(nn.Module):
    """``linear``: ``Linear(D, C)``; ``mlp``: ``D -> 512 -> 256 -> C`` (Linear + BN + ReLU + dropout 0.5).

    Args:
        in_dim: feature width :math:`D`.
        num_classes: :math:`C`.
        kind: ``"linear"`` or ``"mlp"``.
        mean, std: a fixed standardisation ``(f - mean) / std`` applied first (frozen features);
            None for none (fine-tuning: the features move, the MLP's BatchNorm adapts).
    """

    def __init__(self, in_dim: int, num_classes: int, kind: str, mean: Tensor | None = None,
                 std: Tensor | None = None, dropout: float = 0.5) -> None:
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"head kind must be 'linear' or 'mlp'; got {kind!r}")
        self.register_buffer("mean", torch.zeros(in_dim) if mean is None else mean.float().clone())
        self.register_buffer("std", torch.ones(in_dim) if std is None else std.float().clone())
        if kind == "linear":
            self.body: nn.Module = nn.Linear(in_dim, num_classes)
        else:  # bias-free before BatchNorm
            self.body = nn.Sequential(
                nn.Linear(in_dim, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(512, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(256, num_classes),
            )

    def forward(self, features: Tensor) -> Tensor:
        return self.body((features - self.mean) / self.std)


def standardisation(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of ``features`` (std 1 where a dimension is constant)."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def _batches(n: int, batch_size: int, shuffle: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=shuffle) if shuffle is not None else torch.arange(n)
    chunks = list(order.split(batch_size))
    if shuffle is not None and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks = chunks[:-1]  # a lone shape would leave a training BatchNorm with one sample
    return chunks


class FeatureInputs:
    """Precomputed features ``[S, D]`` and labels ``[S]``, served in (shuffled) batches."""

    def __init__(self, features: Tensor, labels: Tensor, batch_size: int) -> None:
        self.features, self.labels, self.batch_size = features, labels, batch_size

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, shuffle: torch.Generator | None = None,
                augment: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        # augmentations act on inputs, not on cached features: ``augment`` is accepted and unused
        for idx in _batches(len(self.labels), self.batch_size, shuffle):
            yield self.features[idx], self.labels[idx]


class DataInputs:
    """A dataset split in (shuffled) batches of dicts, points augmented when a generator is given."""

    def __init__(self, data: Any, modality: str, batch_size: int) -> None:
        self.data, self.modality, self.batch_size = data, modality, batch_size

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, shuffle: torch.Generator | None = None,
                augment: torch.Generator | None = None) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
        for idx in _batches(len(self.data), self.batch_size, shuffle):
            batch = default_collate([self.data[int(i)] for i in idx])
            if augment is not None and self.modality == "points":
                batch["points"] = scale_translate(batch["points"], augment)
            yield batch, batch["label"]


class EncoderClassifier(nn.Module):
    """A method's encoder (a trainable copy, or a fresh random one) and a head: batch dict -> logits.

    ``embed_batch`` of the copy computes the features, so the classifier sees exactly what
    ``method.embed`` gives, with gradients; parts of the method other than ``encoder(modality)``
    stay fixed.
    """

    def __init__(self, method: Any, modality: str, scratch: bool, seed: int, device: torch.device) -> None:
        super().__init__()
        if scratch:
            net = type(method)(method.config)
            torch.manual_seed(seed)
            net.model = net.build_model()
        else:
            method.require_pretrained()
            net = copy.deepcopy(method)
        net.model.to(device)
        net.model.requires_grad_(False)
        self.net, self.modality, self.device = net, modality, device
        self.encoder = net.encoder(modality)
        self.encoder.requires_grad_(True)
        self.head: nn.Module | None = None

    def features(self, batch: dict[str, Tensor], train: bool) -> Tensor:
        self.net.model.eval()
        self.encoder.train(train)
        moved = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, Tensor)}
        with torch.set_grad_enabled(train):
            return self.net.embed_batch(moved, self.modality).float()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.features(batch, self.training))


def train_epoch(model: nn.Module, inputs: FeatureInputs | DataInputs, optimizer: torch.optim.Optimizer,
                shuffle: torch.Generator, augment: torch.Generator | None, device: torch.device) -> float:
    """One pass over ``inputs`` in train mode; returns the mean cross-entropy."""
    model.train()
    total, count = 0.0, 0
    for x, y in inputs.batches(shuffle, augment):
        y = y.to(device)
        logits = model(x if isinstance(x, dict) else x.to(device))
        total += cross_entropy_step(optimizer, logits, y, "classification") * len(y)
        count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: FeatureInputs | DataInputs, device: torch.device,
                   augment: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[S, C]`` (eval mode, dataset order) and labels ``[S]``."""
    model.eval()
    logits, labels = [], []
    for x, y in inputs.batches(None, augment):
        logits.append(model(x if isinstance(x, dict) else x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy().astype(np.int64)
