r"""The classification protocol: a supervised head on a method's global features, the epoch chosen on validation.

Definition (also in docs/protocols.md, with how it differs from Point-BERT / Point-MAE):

1. **labelled shapes**: ``label_fraction`` of the train split's shapes of every
   class (at least one each), drawn with the run seed; their train-split
   positions are recorded (``labelled_indices``; None when all are labelled);
2. **validation**: ``val_fraction`` of the labelled shapes of every class
   (at least one when a class has two or more), drawn with the run seed
   (:func:`~ssl3d.bench.features.splits.carve_validation`), is held out; the
   rest is the *fitting* part. Positions recorded (``val_indices``). The test
   split takes no part in any choice;
3. **network**, by ``mode``:

   * ``linear`` - frozen encoder (``method.embed``, eval mode, computed once),
     features standardised with the fitting part's mean / std, one ``Linear``;
   * ``mlp`` - the same frozen, standardised features, a three-layer head
     ``D -> 512 -> 256 -> C`` (Linear + BN + ReLU + dropout 0.5);
   * ``finetune`` - a copy of the pretrained method whose ``encoder(modality)``
     trains with the ``mlp`` head (the caller's method is unchanged);
   * ``scratch`` - the same network randomly initialised with the run seed,
     trained like ``finetune``: the supervised reference (ParAE Table 2);

4. **training**: cross-entropy, ``optimizer`` (AdamW, lr 0.001, weight decay
   0.05 by default; Adam and SGD with momentum offered), learning rate on a
   cosine schedule over ``epochs``; batches of ``batch_size``, shuffled. In
   ``finetune`` / ``scratch`` on points, every training batch is augmented by
   :func:`~ssl3d.bench.protocols.cls_train.scale_translate` (Point-BERT /
   Point-MAE's ``PointcloudScaleAndTranslate``); frozen modes train on the
   cached, unaugmented features;
5. **selection**: after every epoch the validation accuracy is computed; the
   weights of the first epoch with the highest one are kept (no validation
   shapes, e.g. one labelled shape per class: the last epoch);
6. **test, once**, with the kept weights: ``overall_acc`` and ``mean_class_acc``
   of a single unaugmented pass, and (points only, ``votes`` = k > 0) ``vote_acc``
   and ``vote_mean_class_acc`` from the mean of the logits of k augmented copies
   of every test shape (:func:`scale_translate`, drawn with the run seed) -
   one vote, reported beside the single pass, never a maximum over repeats.
   The test logits of both (``test_logits``, ``vote_logits``) are kept in the
   run's ``artifacts.npz``.

Every random choice derives from the run seed through independent streams
(:func:`~ssl3d.bench.features.splits.stream_seed`), and the caller's torch RNG
state is restored afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.cls_train import (
    ClassifierHead, DataInputs, EncoderClassifier, FeatureInputs, predict_logits, standardisation, train_epoch,
)
from ssl3d.bench.features.splits import SplitView, carve_validation, class_balanced_subset, stream_seed
from ssl3d.bench.protocols.svm import accuracy_metrics

__all__ = ["ClassificationConfig", "ClassificationProtocol", "labelled_and_validation"]

log = logging.getLogger("ssl3d.classification")  # one INFO line per epoch: long scratch runs show progress in logs

MODES = ("finetune", "linear", "mlp", "scratch")
FROZEN = ("linear", "mlp")
# independent random streams of the run seed (fixed numbers: a new stream must not shift the others)
LABELS, VALIDATION, SCRATCH_INIT, HEAD_INIT, SHUFFLE, TRAIN_AUGMENT, VOTES = range(7)


@dataclass(frozen=True)
class ClassificationConfig:
    """Classification protocol settings (``--set classification.KEY=VALUE``)."""

    mode: Literal["finetune", "linear", "mlp", "scratch"] = "linear"  # frozen + linear head / frozen + 3-layer head / fine-tuned copy / random init
    label_fraction: float = field(default=1.0, metadata={"range": "(0, 1]"})  # fraction of each class's training shapes labelled (>= 1 each); ParAE: 0.2, 0.5, 1.0
    val_fraction: float = field(default=0.2, metadata={"range": "(0, 1)"})  # share of each class's labelled shapes held out to choose the epoch
    epochs: int = field(default=20, metadata={"range": "[1, inf)"})  # training epochs (a CPU budget; Point-BERT / Point-MAE fine-tune 300)
    batch_size: int = field(default=32, metadata={"range": "[2, inf)"})  # shapes per batch (>= 2: BatchNorm)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"  # AdamW as Point-MAE's fine-tuning; SGD uses `momentum`
    lr: float = field(default=0.001, metadata={"range": "(0, inf)"})  # initial learning rate
    weight_decay: float = field(default=0.05, metadata={"range": "[0, inf)"})  # decoupled (adamw) or L2 (adam, sgd); Point-MAE: 0.05
    momentum: float = field(default=0.9, metadata={"range": "[0, 1)"})  # SGD momentum
    schedule: Literal["cosine", "constant"] = "cosine"  # learning rate over epochs: cosine to 0, or constant
    train_augment: bool = True  # finetune / scratch on points: scale-and-translate every training batch
    votes: int = field(default=10, metadata={"range": "[0, inf)"})  # k augmented copies whose mean logits give vote_acc (points); 0 = no voting
    standardize: bool = True  # linear / mlp: standardise frozen features with the fitting part's mean and std

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"classification.mode must be one of {', '.join(MODES)}; got {self.mode!r}")


def labelled_and_validation(labels: np.ndarray, label_fraction: float, val_fraction: float,
                            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labelled, fit, val) positions in the train split: the labelled subset, then validation carved from it."""
    labels = np.asarray(labels)
    if label_fraction < 1.0:
        labelled = class_balanced_subset(labels, label_fraction, np.random.default_rng(stream_seed(seed, LABELS)))
    else:
        labelled = np.arange(len(labels))
    fit_pos, val_pos = carve_validation(labels[labelled], val_fraction, stream_seed(seed, VALIDATION))
    return labelled, labelled[fit_pos], labelled[val_pos]


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream))


def _optimizer(params: list[torch.nn.Parameter], cfg: ClassificationConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    algo = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return algo(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _frozen_features(method, data, modality: str, batch_size: int,
                     augment: torch.Generator | None) -> FeatureInputs:
    """``method.embed`` of a whole split (eval mode), points optionally augmented, in dataset order."""
    feats, labels = [], []
    for batch, y in DataInputs(data, modality, batch_size).batches(None, augment):
        out = method.embed(batch, modality)
        if out.ndim != 2 or out.shape[0] != len(y) or not torch.isfinite(out).all():
            raise ValueError(f"{method.name}.embed returned shape {tuple(out.shape)} (or non-finite values); "
                             "expected finite [B, D]")
        feats.append(out.float())
        labels.append(y)
    return FeatureInputs(torch.cat(feats), torch.cat(labels).long(), batch_size)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(axis=1) == labels))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@register_protocol("classification")
class ClassificationProtocol(Protocol):
    """Supervised classification: frozen + linear / MLP head, fine-tuned, or from scratch (module docstring)."""

    name = "classification"
    Config = ClassificationConfig
    needs = "embed"

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg: ClassificationConfig = self.config
        device = torch.device(ctx.device)
        num_classes = len(train_data.class_names)
        labelled, fit_idx, val_idx = labelled_and_validation(train_data.labels, cfg.label_fraction,
                                                             cfg.val_fraction, ctx.seed)
        fit_data, val_data = SplitView(train_data, fit_idx, "fit"), SplitView(train_data, val_idx, "val")
        votes = cfg.votes if modality == "points" else 0  # the augmentation is defined on points only
        scope = torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])
        with scope:
            if cfg.mode in FROZEN:
                model, inputs, test_inputs = self._frozen(method, fit_data, val_data, modality, num_classes, ctx)
            else:
                model, inputs, test_inputs = self._trainable(method, fit_data, val_data, modality, num_classes, ctx)
            start = [p.detach().clone() for p in model.parameters() if p.requires_grad]
            history = self._fit(model, inputs, ctx)
            test_inputs = test_inputs(test_data)  # built only now: nothing before this line reads the test split
            logits, y_test = predict_logits(model, test_inputs, device)
            metrics = accuracy_metrics(y_test, logits.argmax(axis=1))
            artifacts = {"test_logits": logits.astype(np.float32), "test_labels": y_test}
            if votes:
                generator = _generator(ctx.seed, VOTES)
                total = np.zeros_like(logits)
                for _ in range(votes):
                    copy_inputs = (_frozen_features(method, test_data, modality, cfg.batch_size, generator)
                                   if cfg.mode in FROZEN else test_inputs)
                    augment = None if cfg.mode in FROZEN else generator
                    total += predict_logits(model, copy_inputs, device, augment=augment)[0]
                artifacts["vote_logits"] = (total / votes).astype(np.float32)
                vote = accuracy_metrics(y_test, artifacts["vote_logits"].argmax(axis=1))
                metrics.update(vote_acc=vote["overall_acc"], vote_mean_class_acc=vote["mean_class_acc"])
            moved = [p.detach() for p in model.parameters() if p.requires_grad]
        change = math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(moved, start)))
        details: dict[str, Any] = {
            "mode": cfg.mode, "label_fraction": cfg.label_fraction, "n_labelled": int(len(labelled)),
            "labelled_indices": labelled.tolist() if cfg.label_fraction < 1.0 else None,
            "val_fraction": cfg.val_fraction, "stratified_by": "label", "val_indices": val_idx.tolist(),
            "n_fit": int(len(fit_idx)), "n_val": int(len(val_idx)), "n_test": int(len(y_test)),
            "votes": votes, "vote_augmentation": "scale_translate (scale U[2/3, 3/2], shift U[-0.2, 0.2] per axis)"
            if votes else None, "trained_parameter_change": change, **history,
        }
        return ProtocolResult(metrics, details, artifacts)

    def _frozen(self, method, fit_data, val_data, modality: str, num_classes: int, ctx: EvalContext):
        cfg: ClassificationConfig = self.config
        method.require_pretrained()
        fit = _frozen_features(method, fit_data, modality, cfg.batch_size, None)
        val = _frozen_features(method, val_data, modality, cfg.batch_size, None) if len(val_data) else None
        mean, std = standardisation(fit.features) if cfg.standardize else (None, None)
        torch.manual_seed(stream_seed(ctx.seed, HEAD_INIT))  # head init, then dropout
        head = ClassifierHead(fit.features.shape[1], num_classes, cfg.mode, mean, std).to(ctx.device)
        test = lambda data: _frozen_features(method, data, modality, cfg.batch_size, None)  # noqa: E731
        return head, {"fit": fit, "val": val, "augment": None}, test

    def _trainable(self, method, fit_data, val_data, modality: str, num_classes: int, ctx: EvalContext):
        cfg: ClassificationConfig = self.config
        device = torch.device(ctx.device)
        model = EncoderClassifier(method, modality, cfg.mode == "scratch", stream_seed(ctx.seed, SCRATCH_INIT),
                                  device)
        probe = next(DataInputs(fit_data, modality, 2).batches())[0]
        with torch.no_grad():
            dim = int(model.features(probe, train=False).shape[1])
        torch.manual_seed(stream_seed(ctx.seed, HEAD_INIT))  # head init, then dropout
        model.head = ClassifierHead(dim, num_classes, "mlp").to(device)
        augment = _generator(ctx.seed, TRAIN_AUGMENT) if cfg.train_augment and modality == "points" else None
        inputs = {"fit": DataInputs(fit_data, modality, cfg.batch_size),
                  "val": DataInputs(val_data, modality, cfg.batch_size) if len(val_data) else None,
                  "augment": augment}
        return model, inputs, lambda data: DataInputs(data, modality, cfg.batch_size)

    def _fit(self, model: torch.nn.Module, inputs: dict, ctx: EvalContext) -> dict[str, Any]:
        """Train for ``epochs``, keep the weights of the best validation epoch (the first of ties); load them."""
        cfg: ClassificationConfig = self.config
        device = torch.device(ctx.device)
        optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], cfg)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
                    if cfg.schedule == "cosine" else None)
        shuffle = _generator(ctx.seed, SHUFFLE)
        losses, val_accs = [], []
        best_epoch, best_acc, best = cfg.epochs, -1.0, None
        bar = tqdm(range(1, cfg.epochs + 1), desc=f"classification ({cfg.mode})", disable=not ctx.progress,
                   leave=False, dynamic_ncols=True)
        for epoch in bar:
            start = time.perf_counter()
            losses.append(train_epoch(model, inputs["fit"], optimizer, shuffle, inputs["augment"], device))
            if schedule is not None:
                schedule.step()
            if inputs["val"] is not None:
                val_accs.append(_accuracy(*predict_logits(model, inputs["val"], device)))
                if val_accs[-1] > best_acc:  # strictly better: ties keep the earlier epoch
                    best_epoch, best_acc, best = epoch, val_accs[-1], _state(model)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            log.info("classification (%s) epoch %d/%d: loss %.4f%s, %.1fs", cfg.mode, epoch, cfg.epochs, losses[-1],
                     f", val acc {val_accs[-1]:.2f}" if val_accs else "", time.perf_counter() - start)
        if best is not None:
            model.load_state_dict(best)
        return {"epochs": cfg.epochs, "selected_epoch": best_epoch,
                "selection": "first epoch with the best validation accuracy" if best is not None
                else "last epoch (no validation shapes)",
                "val_acc": round(best_acc, 4) if best is not None else None,
                "val_acc_by_epoch": [round(v, 4) for v in val_accs],
                "train_loss_by_epoch": [round(v, 6) for v in losses]}
