"""Configuration dataclasses shared by every method: the training section and the base config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ssl3d.core.config import to_dict
from ssl3d.methods.checkpoint import published_sha256


@dataclass(frozen=True)
class TrainConfig:
    """The shared pretraining loop's settings (``--set train.KEY=VALUE``)."""

    epochs: int = field(default=100, metadata={"range": "[0, inf)"})  # passes over the pretraining data; 0 = no pretraining (random-init baselines)
    batch_size: int = field(default=32, metadata={"range": "[1, inf)"})  # shapes per optimisation step
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # torch.optim algorithm
    lr: float = field(default=1e-3, metadata={"range": "[0, inf)"})  # initial learning rate
    weight_decay: float = field(default=0.0, metadata={"range": "[0, inf)"})  # L2 penalty (decoupled for adamw)
    momentum: float = field(default=0.9, metadata={"range": "[0, 1]"})  # SGD momentum (ignored by Adam)
    nesterov: bool = False  # Nesterov momentum for SGD
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"range": "[0, 1)"})  # Adam/AdamW betas
    scheduler: Literal["none", "step", "cosine"] = "none"  # learning-rate schedule, stepped per epoch
    step_size: int = field(default=20, metadata={"range": "[1, inf)"})  # epochs between decays of the step schedule
    gamma: float = field(default=0.1, metadata={"range": "(0, inf)"})  # multiplicative decay of the step schedule
    schedule_start: int = field(default=0, metadata={"range": "[0, inf)"})  # epochs before the step schedule starts decaying (SwitchVAE waits 50)
    grad_clip: float = field(default=0.0, metadata={"range": "[0, inf)"})  # clip the global gradient norm to this value; 0 disables
    max_steps_per_epoch: int = field(default=0, metadata={"range": "[0, inf)"})  # cap on optimisation steps per epoch; 0 = the whole dataset
    num_workers: int = field(default=0, metadata={"range": "[0, inf)"})  # DataLoader worker processes
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype (fp16 on CUDA only, with GradScaler)
    compile: bool = False  # torch.compile the training step (PyTorch 2 compiler)
    channels_last: bool = False  # 2-D convolutions (image encoders) in NHWC memory format: faster with CUDA AMP
    sync_bn: bool = False  # SyncBatchNorm across ranks under DDP (BN-heavy backbones, small per-GPU batches)
    find_unused_parameters: bool = True  # DDP option; safe default for methods with branches that skip weights
    log_every: int = field(default=10, metadata={"range": "[1, inf)"})  # optimisation steps between progress-bar/log updates
    snapshot_epochs: tuple[int, ...] = field(default=(), metadata={"range": "[0, inf)"})  # also keep epoch-<k>.pt after these epochs (budget curves); changes no weights, so not part of the cache key


# settings that change what is written but never the weights: left out of the pretraining cache key
# and of the resume check, so a run with snapshots shares (and resumes) the cache of one without
WEIGHT_NEUTRAL_TRAIN_KEYS = ("snapshot_epochs",)


#: the config field (``str | None``) of a method that can start from a published checkpoint
#: (``--set method.init_checkpoint=PATH``, docs/adding-a-method.md#evaluating-a-published-checkpoint)
INIT_CHECKPOINT = "init_checkpoint"


def weights_config(config: Any) -> dict[str, Any]:
    """``to_dict(config)`` without the weight-neutral ``train`` keys: what determines the weights.

    A published checkpoint enters as ``sha256:<digest>`` of its file, not as its path: the contents determine
    the weights, so one file under two paths shares a pretraining and two files at one path never do. Unset,
    the field is left out (the keys of pretrainings without one stay what they were).
    """
    data = to_dict(config)
    for key in WEIGHT_NEUTRAL_TRAIN_KEYS:
        data.get("train", {}).pop(key, None)
    path = data.pop(INIT_CHECKPOINT, None)
    if path is not None:
        data[INIT_CHECKPOINT] = f"sha256:{published_sha256(path)}"
    return data


@dataclass(frozen=True)
class MethodConfig:
    """Base config of a method: subclasses add their fields and keep ``train``.

    ``PRESETS`` maps a preset name to dotted overrides of the field defaults;
    the defaults are the paper's values (preset ``paper``), ``quick`` is sized
    for a 2-core CPU in minutes.
    """

    train: TrainConfig = field(default_factory=TrainConfig)  # the shared training loop

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}
