r"""Scene semantic segmentation (S3DIS protocol): ``semseg`` and ParAE Table 3's ``semseg-areas``.

Definition (also in docs/scenes.md):

1. **data**: a scene dataset (:class:`~ssl3d.datasets.scene_dataset.SceneDataset`);
   its ``test`` split is the area ``data.test_area`` (default 5), its ``train``
   split every other area, cut into 1 m x 1 m blocks of ``data.block_points``
   points with ``data.channels`` input channels (9: xyz, rgb, normalised room
   xyz, the DGCNN S3DIS reference input);
2. **training blocks**: those of ``semseg.train_areas`` (empty: every
   training area), ``label_fraction`` of them drawn with the run seed;
3. **features** from ``method.point_features`` in one of four modes:
   ``scratch`` (the method's network re-initialised with the run seed: the
   supervised reference), ``finetune`` (a copy of the pretrained encoder,
   trained with the head), ``linear`` and ``decoder`` (frozen pretrained
   encoder; a linear per-point layer, or the MLP head below);
4. **head**: the DGCNN segmentation head on :math:`[f_i, \max_j f_j]`
   (:class:`~ssl3d.bench.protocols.semseg_train.SceneHead`), or one Linear
   layer in ``linear`` mode;
5. **training**: per-point cross-entropy, Adam (``lr``) with cosine
   annealing to ``lr / 100`` over ``epochs`` (the schedule of the public
   DGCNN S3DIS code), batches of ``batch_size`` blocks, shuffled. There is no
   model selection: the model after the last epoch is scored;
6. **evaluation on whole rooms**: every test room is cut into evaluation
   blocks that use every point (:func:`~ssl3d.datasets.scene_blocks.evaluation_blocks`),
   block scores (softmax) are merged per point
   (:func:`~ssl3d.datasets.scene_blocks.merge_block_scores`); metrics over all
   points of the test area: ``miou``, ``point_acc`` and per-class IoU (details).

``semseg-areas`` is ParAE's Section 4.4 experiment (Table 3): for each
training area separately (``train_areas``, default all five), the same network
is trained in ``scratch`` and in ``finetune`` mode and both are tested on the
test area; metrics per area ``miou:area<a>:<mode>``, ``point_acc:...`` and the
deltas ``delta_miou:area<a>`` / ``delta_point_acc:area<a>`` (finetune minus
scratch: Table 3's cells), plus their means over areas. The pretrained model
is the runner's single pretraining on the unlabelled ``train`` split (Areas
1-4 and 6), exactly the paper's "single pre-trained model". Means and 95% CIs
over seeds come from the leaderboard (``bench suite --seeds``).

Paper settings (ParAE Sec. 4.4 mirrors Sauder & Sievers' JigSaw3D set-up on
DGCNN; neither states epochs or optimiser). The public DGCNN S3DIS code trains
4096-point blocks for 100 epochs; the tasks' epochs and block sizes are CPU
budgets stated in bench/protocols/tasks.py and docs/scenes.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.semseg_train import train_and_score
from ssl3d.core.config import ConfigError
from ssl3d.datasets import DATASETS
from ssl3d.datasets.scene_dataset import SceneDataset

__all__ = ["SemSegAreasProtocol", "SemSegConfig", "SemSegProtocol"]

MODES = ("scratch", "finetune", "linear", "decoder")


@dataclass(frozen=True)
class SemSegConfig:
    """Scene segmentation settings (``--set semseg.KEY=VALUE`` / ``semseg-areas.KEY=VALUE``)."""

    mode: Literal["scratch", "finetune", "linear", "decoder"] = "finetune"  # encoder re-initialised / fine-tuned / frozen + linear / frozen + MLP head (semseg only)
    train_areas: tuple[int, ...] = ()  # supervised training areas, each in the train split; () = all of them
    label_fraction: float = field(default=1.0, metadata={"range": "(0, 1]"})  # fraction of the training blocks kept (seeded)
    epochs: int = field(default=20, metadata={"range": "[1, inf)"})  # training epochs (a CPU budget; DGCNN's S3DIS code: 100)
    batch_size: int = field(default=16, metadata={"range": "[1, inf)"})  # blocks per training / prediction batch
    lr: float = field(default=1e-3, metadata={"range": "(0, inf)"})  # Adam initial learning rate (DGCNN's Adam setting)
    weight_decay: float = field(default=1e-4, metadata={"range": "[0, inf)"})  # Adam L2 penalty (DGCNN: 1e-4)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"semseg.mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"semseg.label_fraction must be in (0, 1]; got {self.label_fraction}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"semseg.{key} must be a positive integer; got {getattr(self, key)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"semseg.lr must be > 0 and weight_decay >= 0; got {self.lr}, {self.weight_decay}")
        if any(isinstance(a, bool) or not isinstance(a, int) for a in self.train_areas):
            raise ValueError(f"semseg.train_areas must be area numbers; got {self.train_areas!r}")


class _SceneProtocol(Protocol):
    needs = "point_features"

    def supports(self, method_cls, task, modality=None) -> str | None:
        reason = super().supports(method_cls, task, modality)
        if reason:
            return reason
        dataset = DATASETS.get(task.dataset)
        if not issubclass(dataset, SceneDataset):
            return f"cannot be scored by {self.name} on {task.name}: {task.dataset} is not a scene dataset"
        lacking = sorted(set(method_cls.pretrain_modalities) - set(dataset.available_modalities))
        if lacking:  # it pretrains on the task's (scene) train split, which has no views or voxels
            return (f"pretrains on {', '.join(sorted(method_cls.pretrain_modalities))}; {task.dataset} provides "
                    f"{', '.join(sorted(dataset.available_modalities))}")
        return None

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        return ("points", "point_labels")

    def _areas(self, train_data) -> list[int]:
        have = sorted(set(train_data.block_areas.tolist()))
        wanted = list(self.config.train_areas) or have
        missing = [a for a in wanted if a not in have]
        if missing:
            raise ValueError(f"{self.name}.train_areas {missing} are not training areas of {train_data.name} "
                             f"(test area {train_data.config.test_area}); training areas: {have}")
        return wanted

    @staticmethod
    def _check(method, train_data, modality: str) -> None:
        if modality != "points":
            raise ValueError(f"scene segmentation works on 'points' only; got {modality!r}")
        if not isinstance(train_data, SceneDataset):
            raise ValueError(f"{train_data.name} is not a scene dataset")
        _check_channels(method, train_data.config)

    def check_run(self, method, data_config) -> None:
        _check_channels(method, data_config)


def _check_channels(method, data_config) -> None:
    """The method's input width must be the blocks' (refused before pretraining, not after)."""
    want = getattr(method.config, "in_channels", 3)
    have = data_config.channels
    if want != have:
        hint = (f"--set method.in_channels={have} or data.channels={want}" if hasattr(method.config, "in_channels")
                else f"--set data.channels={want} (xyz only)")
        raise ConfigError(f"{method.name} takes {want} input channels but the blocks have {have} (data.channels); "
                          f"pass {hint}")


@register_protocol("semseg")
class SemSegProtocol(_SceneProtocol):
    """One scene-segmentation model in one mode (see the module docstring)."""

    name = "semseg"
    Config = SemSegConfig

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        self._check(method, train_data, modality)
        areas = self._areas(train_data)
        metrics, details = train_and_score(method, train_data, test_data, mode=self.config.mode, areas=areas,
                                           cfg=self.config, seed=ctx.seed, device=torch.device(ctx.device),
                                           progress=ctx.progress)
        per_class = {f"iou:{c}": v for c, v in details["per_class_iou"].items()}
        return ProtocolResult({**metrics, **per_class}, details)


@register_protocol("semseg-areas")
class SemSegAreasProtocol(_SceneProtocol):
    """ParAE Table 3: per training area, fine-tuned minus from-scratch mIoU / accuracy on the test area."""

    name = "semseg-areas"
    Config = SemSegConfig

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        self._check(method, train_data, modality)
        method.require_pretrained()
        metrics: dict[str, float] = {}
        details: dict[str, dict] = {}
        for area in self._areas(train_data):
            for mode in ("scratch", "finetune"):
                m, d = train_and_score(method, train_data, test_data, mode=mode, areas=[area], cfg=self.config,
                                       seed=ctx.seed, device=torch.device(ctx.device), progress=ctx.progress)
                for key, value in m.items():
                    metrics[f"{key}:area{area}:{mode}"] = value
                details[f"area{area}:{mode}"] = d
            for key in ("miou", "point_acc"):
                metrics[f"delta_{key}:area{area}"] = metrics[f"{key}:area{area}:finetune"] - metrics[f"{key}:area{area}:scratch"]
        for key in ("miou", "point_acc"):
            metrics[f"delta_{key}:mean"] = float(np.mean([v for k, v in metrics.items() if k.startswith(f"delta_{key}:area")]))
        return ProtocolResult(metrics, {"test_area": test_data.config.test_area, "runs": details})
