"""The shared pretraining loop: :func:`fit` builds a method's model and trains it, one epoch at a time.

Each epoch is re-seeded from ``(run seed, epoch)``, so a run resumed from ``last.pt`` ends with the weights of
an uninterrupted one, and epoch k of a longer run is a k-epoch run (the pretraining cache relies on it).
Options (DDP, precision, compilation, loading), checkpoints and per-epoch logging: docs/scaling.md.
The loop sees a method through :class:`TrainableMethod`, so it does not import the base class (which imports it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ssl3d.core.distributed import DistInfo, StepModule, all_reduce_mean, barrier, dist_info
from ssl3d.core.seeding import epoch_seed, seed_everything
from ssl3d.methods.checkpoint import load_latest_good, save_checkpoint
from ssl3d.methods.config import MethodConfig, TrainConfig, weights_config
from ssl3d.methods.run_context import RunContext

EPOCH_RECORD = "ssl3d_epoch"  # the LogRecord attribute holding each epoch's scalars (bench/run/tracking.py listens)
_UNTRAINED_INFO = {"epochs": 0, "steps": 0, "seconds": 0.0, "note": "random initialisation, no pretraining"}


class TrainableMethod(Protocol):
    """What :func:`fit` uses of a :class:`~ssl3d.methods.base.Method` (see its hooks for the meaning)."""

    name: ClassVar[str]
    pretrain_modalities: ClassVar[frozenset[str]]
    config: MethodConfig
    model: nn.Module | None
    pretrain_info: dict[str, Any]

    @property
    def pretrains(self) -> bool: ...
    def build_model(self) -> nn.Module: ...
    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]: ...
    def pretrain_dataset(self, data: Dataset) -> Dataset: ...
    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer: ...
    def lr_factor(self, epoch: int) -> float: ...
    def on_epoch_start(self, epoch: int, run_seed: int) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """Pretraining produced a NaN/inf loss; names the step and the last good checkpoint."""


@dataclass
class _Loop:
    """What every epoch of one pretraining shares: the method, the run, this rank, and what steps the model."""

    method: TrainableMethod
    run: RunContext
    info: DistInfo
    log: logging.Logger
    model: nn.Module
    step_fn: nn.Module  # StepModule, in DDP when distributed, compiled when asked
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]  # each param group's lr before lr_factor
    scaler: torch.amp.GradScaler | None  # fp16 on CUDA only
    config_json: dict[str, Any]  # what last.pt must have been written with to be resumed

    @property
    def train(self) -> TrainConfig:
        """The method's training settings."""
        return self.method.config.train

    @property
    def last_path(self) -> Path | None:
        """Where ``last.pt`` goes; None when the run keeps no checkpoints."""
        return self.run.checkpoint_dir / "last.pt" if self.run.checkpoint_dir is not None else None


@dataclass
class _Progress:
    """Where a pretraining stands after its last finished epoch: what ``last.pt`` holds and a resume restores."""

    epoch: int = 0  # epochs finished
    history: list[dict] = field(default_factory=list)  # one record per finished epoch
    seconds: float = 0.0  # training seconds so far (kept across resumes)
    step: int = 0  # optimiser steps so far


@dataclass
class _Batches:
    """This rank's DataLoader, the generator that shuffles it, its DDP sampler and the steps of an epoch."""

    loader: DataLoader
    generator: torch.Generator
    sampler: DistributedSampler | None
    per_rank: int  # this rank's share of the global batch
    steps_per_epoch: int


@dataclass
class _EpochTotals:
    """What one epoch's steps add up to: each loss term's sum, batches, items, and the dataset indices seen."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    n_batches: int = 0
    n_items: int = 0
    seen: list[int] = field(default_factory=list)

    def add(self, terms: dict[str, torch.Tensor], items: int) -> None:
        """Count one step: its loss terms and its batch size."""
        for key, value in terms.items():
            self.sums[key] += float(value.detach())
        self.n_batches += 1
        self.n_items += items


def fit(method: TrainableMethod, data: Dataset, run: RunContext) -> None:
    """Build ``method.model`` and train it on ``data``, resuming from ``run.checkpoint_dir`` when it holds a run."""
    seed_everything(run.seed)  # same initial weights on every rank
    method.model = method.build_model().to(run.device)
    if not method.pretrains:
        method.pretrain_info = dict(_UNTRAINED_INFO)
        return
    dataset = method.pretrain_dataset(data)
    if len(dataset) == 0:
        raise ValueError(f"{method.name}: the pretraining data is empty")
    loop = _setup(method, run, dist_info())
    progress = _resume(loop)
    if progress.epoch == 0:
        _save_snapshot(loop, progress)  # epoch 0: the untrained network, when listed
    batches = _make_batches(dataset, loop.train, run, loop.info)
    for epoch in range(progress.epoch, loop.train.epochs):
        _run_epoch(loop, batches, progress, epoch)
    method.pretrain_info = _pretrain_info(loop, progress, batches.per_rank)


def _setup(method: TrainableMethod, run: RunContext, info: DistInfo) -> _Loop:
    """Ready the built model (SyncBatchNorm, channels-last), wrap its step, and build the optimiser and scaler."""
    train = method.config.train
    if info.enabled and train.sync_bn:
        method.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.model)
    model = method.model
    if train.channels_last:  # only 4-D weights change format; image batches follow their encoder's weights
        model.to(memory_format=torch.channels_last)
    step_fn = _wrap_step(method, run, info)
    optimizer = method.configure_optimizer(model)
    scaler = torch.amp.GradScaler("cuda") if run.device.type == "cuda" and train.precision == "fp16" else None
    return _Loop(method, run, info, logging.getLogger(run.logger_name), model, step_fn, optimizer,
                 [group["lr"] for group in optimizer.param_groups], scaler, weights_config(method.config))


def _wrap_step(method: TrainableMethod, run: RunContext, info: DistInfo) -> nn.Module:
    """``method.training_step`` as a module, so DDP sees every pretext forward; compiled when ``train.compile``."""
    train = method.config.train
    step_fn: nn.Module = StepModule(method)
    if info.enabled:
        step_fn = DistributedDataParallel(step_fn, device_ids=[run.device.index] if run.device.type == "cuda" else None,
                                          find_unused_parameters=train.find_unused_parameters)
    if train.compile:
        step_fn = torch.compile(step_fn)
    return step_fn


def _resume(loop: _Loop) -> _Progress:
    """Restore weights, optimiser and progress from the newest good ``last.pt`` / ``prev.pt``; else start at 0."""
    path = loop.last_path
    resumed = load_latest_good(path, loop.run.device, loop.log) if path is not None else None
    if resumed is None:
        return _Progress()
    resumed_from, state = resumed
    if state.get("config") != loop.config_json:
        raise ValueError(f"{resumed_from} was written with another config; delete it to start over")
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    progress = _Progress(state["epoch"], state["history"], state["seconds"], state["step"])
    loop.log.info("%s: resumed from %s after epoch %d/%d", loop.method.name, resumed_from, progress.epoch,
                  loop.train.epochs)
    return progress


def _make_batches(dataset: Dataset, train: TrainConfig, run: RunContext, info: DistInfo) -> _Batches:
    """The loader of this rank's shard of every epoch: the global batch split over ranks, no tiny last batch."""
    generator = torch.Generator()
    per_rank = max(1, train.batch_size // info.world_size)
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=run.seed,
                                 drop_last=True) if info.enabled else None
    shard = len(dataset) // info.world_size
    loader = DataLoader(dataset, batch_size=min(per_rank, shard), shuffle=sampler is None, sampler=sampler,
                        drop_last=shard > per_rank,  # no tiny last batch for BatchNorm
                        num_workers=train.num_workers, generator=generator, pin_memory=run.device.type == "cuda",
                        persistent_workers=train.num_workers > 0)
    steps = len(loader) if not train.max_steps_per_epoch else min(len(loader), train.max_steps_per_epoch)
    return _Batches(loader, generator, sampler, per_rank, steps)


def _run_epoch(loop: _Loop, batches: _Batches, progress: _Progress, epoch: int) -> None:
    """Train epoch ``epoch`` (0-based), then record, log, checkpoint and snapshot it; the ranks meet at the end."""
    t0 = time.perf_counter()
    _start_epoch(loop, batches, epoch)
    totals = _train_epoch(loop, batches, progress, epoch)
    epoch_s = time.perf_counter() - t0
    progress.seconds += epoch_s
    record = _epoch_record(loop, totals, epoch, progress.seconds)
    progress.history.append(record)
    progress.epoch = epoch + 1
    _trace(loop.run, loop.info, epoch, totals.seen, record)
    _log_epoch(loop, record, epoch_s, totals.n_items)
    _save_checkpoint(loop, progress)
    _save_snapshot(loop, progress)
    barrier()


def _start_epoch(loop: _Loop, batches: _Batches, epoch: int) -> None:
    """Re-seed every generator from (run seed, epoch), call the method's epoch hook, set the lr, enter train mode.

    An epoch then depends only on the weights and optimiser state it starts from (and the thread count: CPU float
    sums depend on it). Persistent DataLoader workers (``train.num_workers > 0``) draw their base seed once, when
    created, so draws inside them differ after a resume (the presets load in the main process).
    """
    seed = epoch_seed(loop.run.seed, epoch)
    seed_everything(seed + 1_000_003 * loop.info.rank)  # augmentation differs across ranks
    batches.generator.manual_seed(seed)
    if batches.sampler is not None:
        batches.sampler.set_epoch(epoch)
    loop.method.on_epoch_start(epoch, loop.run.seed)
    factor = loop.method.lr_factor(epoch)
    for group, base in zip(loop.optimizer.param_groups, loop.base_lrs):
        group["lr"] = base * factor
    loop.model.train()


def _train_epoch(loop: _Loop, batches: _Batches, progress: _Progress, epoch: int) -> _EpochTotals:
    """The epoch's optimiser steps (at most ``steps_per_epoch``) under a progress bar; counts ``progress.step``."""
    totals = _EpochTotals()
    bar = tqdm(total=batches.steps_per_epoch, desc=f"pretrain {loop.method.name} {epoch + 1}/{loop.train.epochs}",
               disable=not loop.run.progress or not loop.info.is_main, leave=False, dynamic_ncols=True)
    for batch_idx, batch in enumerate(batches.loader):
        if batch_idx >= batches.steps_per_epoch:
            break
        if "index" in batch:
            totals.seen.extend(batch["index"].tolist())
        batch = {k: v.to(loop.run.device, non_blocking=True) for k, v in batch.items()}
        terms = _train_step(loop, batch, progress.step, epoch)
        totals.add(terms, len(next(iter(batch.values()))))
        progress.step += 1
        bar.update(1)
        if batch_idx % loop.train.log_every == 0:
            bar.set_postfix(loss=f"{totals.sums['loss'] / totals.n_batches:.4g}")
    bar.close()
    return totals


def _train_step(loop: _Loop, batch: dict[str, torch.Tensor], step: int, epoch: int) -> dict[str, torch.Tensor]:
    """One optimiser step on ``batch`` (autocast, fp16 loss scaling, gradient clipping); returns its loss terms."""
    with _autocast(loop.run.device, loop.train.precision):
        terms = loop.step_fn(batch, step)
    loss = terms["loss"]
    _check_finite(loop, loss, step, epoch)
    loop.optimizer.zero_grad(set_to_none=True)
    if loop.scaler is not None:
        loop.scaler.scale(loss).backward()
        loop.scaler.unscale_(loop.optimizer)
    else:
        loss.backward()
    if loop.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(loop.model.parameters(), loop.train.grad_clip)
    if loop.scaler is not None:
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
    else:
        loop.optimizer.step()
    return terms


def _check_finite(loop: _Loop, loss: torch.Tensor, step: int, epoch: int) -> None:
    """Stop at a NaN/inf loss with :class:`NonFiniteLossError`, naming the step and the last good checkpoint."""
    if torch.isfinite(loss):
        return
    path = loop.last_path
    last = f"{path} (after epoch {epoch})" if path and path.exists() else "none"
    raise NonFiniteLossError(f"{loop.method.name}: loss is {loss.item()} at step {step} (epoch {epoch + 1}); "
                             f"last good checkpoint: {last}")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context for ``train.precision`` (none for fp32; fp16 needs CUDA)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA; use bf16 or fp32 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _epoch_record(loop: _Loop, totals: _EpochTotals, epoch: int, seconds: float) -> dict[str, Any]:
    """The epoch's history entry: each term's mean over steps and ranks, the 1-based epoch, lr, total seconds."""
    record = all_reduce_mean({k: v / max(1, totals.n_batches) for k, v in totals.sums.items()}, loop.run.device)
    record.update(epoch=epoch + 1, lr=loop.optimizer.param_groups[0]["lr"], seconds=round(seconds, 3))
    return record


def _log_epoch(loop: _Loop, record: dict[str, Any], epoch_s: float, n_items: int) -> None:
    """Log the epoch's INFO line, its record carrying the scalars for trackers; a plain stderr line if none shows it."""
    rate = n_items * loop.info.world_size / epoch_s if epoch_s > 0 else 0.0  # every rank reads its own shard
    name, epochs = loop.method.name, loop.train.epochs
    loop.log.info("%s epoch %d/%d: %s", name, record["epoch"], epochs,
                  ", ".join(f"{k}={v:.5g}" for k, v in record.items() if k not in ("epoch",)),
                  extra={EPOCH_RECORD: {**record, "epoch_seconds": epoch_s, "items_per_s": rate}})
    # for runs in the background (SLURM, nohup): one line per epoch to follow with tail -f
    if loop.info.is_main and (not loop.run.progress or not sys.stderr.isatty()) \
            and not _console_shows(loop.log, logging.INFO):
        print(f"pretrain {name} epoch {record['epoch']}/{epochs}: loss {record['loss']:.5g}, "
              f"{epoch_s:.1f}s, {rate:.1f} items/s", file=sys.stderr, flush=True)


def _console_shows(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` from ``logger`` already reaches a terminal stream (then no plain line too)."""
    if not logger.isEnabledFor(level):
        return False
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if (type(handler) is logging.StreamHandler and handler.level <= level
                    and getattr(handler, "stream", None) in (sys.stderr, sys.stdout)):
                return True
        node = node.parent if node.propagate else None
    return False


def _trace(run: RunContext, info: DistInfo, epoch: int, indices: list[int], record: dict) -> None:
    """With $SSL3D_TRACE_DIR set, each rank writes what it trained on per epoch (for debugging sharding)."""
    folder = os.environ.get("SSL3D_TRACE_DIR")
    if not folder:
        return
    path = Path(folder) / f"rank{info.rank}-epoch{epoch}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": info.rank, "world_size": info.world_size, "epoch": epoch,
                                "indices": indices, "record": record}))


def _save_checkpoint(loop: _Loop, progress: _Progress) -> None:
    """Write ``last.pt`` (the old one becomes ``prev.pt``): rank 0 only, as every rank holds the same weights."""
    if loop.last_path is None or not loop.info.is_main:
        return
    save_checkpoint(loop.last_path, {"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                                     "config": loop.config_json, "epoch": progress.epoch, "history": progress.history,
                                     "seconds": progress.seconds, "step": progress.step}, keep_previous=True)


def _save_snapshot(loop: _Loop, progress: _Progress) -> None:
    """Keep ``epoch-<k>.pt`` (rank 0) if ``train.snapshot_epochs`` lists k, the epochs finished; its history and
    step count let the pretraining cache serve a k-epoch run from it with its own bookkeeping."""
    if progress.epoch not in loop.train.snapshot_epochs or loop.run.checkpoint_dir is None or not loop.info.is_main:
        return
    save_checkpoint(snapshot_path(loop.run.checkpoint_dir, progress.epoch),
                    {"model": loop.model.state_dict(), "epoch": progress.epoch, "history": list(progress.history),
                     "step": progress.step})


def _pretrain_info(loop: _Loop, progress: _Progress, per_rank: int) -> dict[str, Any]:
    """What ``method.pretrain_info`` reports of a finished pretraining: epochs, steps, time, losses, throughput."""
    final = progress.history[-1] if progress.history else {}
    world, seconds = loop.info.world_size, progress.seconds
    return {
        "epochs": loop.train.epochs,
        "steps": progress.step,
        "seconds": round(seconds, 3),
        "final_loss": final.get("loss", math.nan),
        "history": progress.history,
        "shapes_per_second": round(progress.step * per_rank * world / seconds, 3) if seconds > 0 else None,
        "world_size": world,
    }


def epoch_seconds(history: list[dict]) -> list[float]:
    """Each epoch's own seconds from a pretraining's ``history`` (whose ``seconds`` are running totals, kept
    across a resume): what a cost estimate needs, since a shared CPU slows single epochs, not whole runs."""
    totals = [float(record.get("seconds") or 0.0) for record in history]
    return [round(b - a, 3) for a, b in zip([0.0] + totals, totals)]


def snapshot_path(checkpoint_dir: Path, epoch: int) -> Path:
    """Where :func:`fit` keeps the weights after ``epoch`` when ``train.snapshot_epochs`` lists it."""
    return Path(checkpoint_dir) / f"epoch-{epoch}.pt"
