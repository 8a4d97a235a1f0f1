"""CM-CV's settings (Jing et al., CVPRW 2021): the ``cmcv`` config and the ``cm`` ablation's.

Defaults are the paper's (Sec. 3-4.1) where it states them; the choices made where it
does not: docs/methods.md#cm-cv
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ssl3d.methods.config import MethodConfig, TrainConfig

__all__ = ["CMConfig", "CMCVConfig"]


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
        # quick's networks at the larger knee of the two ModelNet10 budget curves (validation split): views flat
        # from 1 epoch; points first lose 4 points to the untrained DGCNN and recover up to 4 epochs, the largest
        # budget measured (docs/methods.md)
        "cpu": {"n_points": 256, "k": 10, "n_views": 12, "heldout_views": 2, "view_size": 48,
                "iterations_per_epoch": 0, "train.epochs": 4, "train.batch_size": 16, "train.lr": 0.01,
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
