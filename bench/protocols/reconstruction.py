"""The reconstruction protocol: decode test inputs to voxels and compare with the truth.

Definition (also in docs/protocols.md), following SwitchVAE (Wu et al., TMM
2023, Section 4.2, Table 1) and 3D-R2N2:

* for every test shape, ``method.reconstruct(batch, modality)`` decodes the
  input of ``--modality`` (``voxels`` for auto-encoding, ``views`` for
  single/multi-view reconstruction) into occupancy probabilities [R, R, R];
* the prediction is ``p >= reconstruction.threshold`` (0.5);
* per shape, with TP/FP/FN/TN voxel counts: IoU = TP / (TP + FP + FN),
  precision = TP / (TP + FP), recall = TP / (TP + FN), accuracy =
  (TP + TN) / R^3; an empty denominator counts 1 when prediction and truth
  agree that the set is empty (both empty), else 0;
* metrics (%) are means over test shapes.

Methods without a voxel decoder cannot run this protocol; the runner says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.features.views import FirstViews, batched


@dataclass(frozen=True)
class ReconstructionConfig:
    """Reconstruction settings (``--set reconstruction.KEY=VALUE``)."""

    threshold: float = field(default=0.5, metadata={"range": "[0, 1]"})  # occupancy probability at or above which a voxel is predicted occupied
    n_views: int = field(default=0, metadata={"range": "[0, inf)"})  # give the method only the first n views of `views` inputs (0 = all)


def voxel_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-shape IoU, precision, recall, accuracy (fractions) of boolean grids [B, R, R, R]."""
    pred = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    target = np.asarray(target, dtype=bool).reshape(len(target), -1)
    tp = (pred & target).sum(1).astype(float)
    fp = (pred & ~target).sum(1).astype(float)
    fn = (~pred & target).sum(1).astype(float)
    tn = (~pred & ~target).sum(1).astype(float)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        # 0/0: both sides agree the set is empty -> 1
        return np.where(den > 0, num / np.maximum(den, 1), 1.0)

    return {"iou": ratio(tp, tp + fp + fn), "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), (fn == 0) * 1.0),
            "recall": np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), (fp == 0) * 1.0),
            "accuracy": (tp + tn) / pred.shape[1]}


@register_protocol("reconstruction")
class ReconstructionProtocol(Protocol):
    """Voxel reconstruction quality on the test split (see module docstring)."""

    name = "reconstruction"
    Config = ReconstructionConfig
    needs = "reconstruct"

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys((modality, "voxels")))

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        per_shape: dict[str, list[np.ndarray]] = {"iou": [], "precision": [], "recall": [], "accuracy": []}
        for batch in batched(FirstViews(test_data, self.config.n_views), ctx.batch_size, ctx.progress,
                             f"reconstruct ({modality})"):
            probs = method.reconstruct(batch, modality)
            target = batch["voxels"]
            if probs.shape != target.shape:
                raise ValueError(f"{method.name} reconstructs {tuple(probs.shape)} but the truth is {tuple(target.shape)}")
            scores = voxel_metrics((probs >= self.config.threshold).numpy(), (target > 0.5).numpy())
            for key, value in scores.items():
                per_shape[key].append(value)
        metrics = {k: 100.0 * float(np.concatenate(v).mean()) for k, v in per_shape.items()}
        return ProtocolResult(metrics, {"threshold": self.config.threshold, "n_test": int(len(test_data)),
                                        "input_modality": modality})
