"""The shared pretraining loop: optimiser, schedule, progress, checkpoints, resume.

Reproducibility and resume work together: at the start of every epoch the
python, numpy and torch generators and the DataLoader's shuffling generator
are re-seeded from ``(run seed, epoch)``. An epoch therefore depends only on
the weights and optimiser state it starts from, which the checkpoint holds, so
a run killed after epoch k and resumed from ``last.pt`` gives exactly the
weights an uninterrupted run gives (on the same thread count: CPU float sums
depend on it). One exception: with ``train.num_workers > 0`` the persistent
DataLoader workers draw their base seed once, when the first epoch after a start
or a resume creates them, so random draws made inside workers differ after a
resume (the presets load in the main process: ``num_workers = 0``). The same
seeding makes epoch k of a longer run a k-epoch run, which the pretraining cache
uses (bench/pretrain_cache.py). A damaged ``last.pt`` is moved aside and
the run resumes from ``prev.pt``, one epoch earlier (:mod:`ssl3d.methods.checkpoint`).

Before each epoch the loop calls ``method.on_epoch_start(epoch, run seed)``,
then sets the learning rate from ``method.lr_factor(epoch)``; a resumed run
starts with the first epoch it has not finished.

After each epoch the loop logs one INFO line whose record carries the epoch's
scalars (``extra={"ssl3d_epoch": ...}``: loss terms, lr, seconds, items/s) for
experiment trackers to pick up (``bench/tracking.py`` listens; this layer never
imports it). Without progress bars, or when stderr is not a terminal, it also
prints one plain line per epoch to stderr, so a run in the background (a
SLURM job, ``nohup``) can be followed with ``tail -f``.

The loop sees a method through :class:`TrainableMethod`, the part of
:class:`~ssl3d.methods.base.Method` it uses, so this module does not import
the base class (which imports this module for ``Method.pretrain``).
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
from ssl3d.methods.config import MethodConfig, weights_config
from ssl3d.methods.run_context import RunContext


class TrainableMethod(Protocol):
    """What :func:`fit` uses of a :class:`~ssl3d.methods.base.Method` (see its hooks for the meaning)."""

    name: ClassVar[str]
    pretrain_modalities: ClassVar[frozenset[str]]
    config: MethodConfig
    model: nn.Module | None
    pretrain_info: dict[str, Any]

    def build_model(self) -> nn.Module: ...
    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]: ...
    def pretrain_dataset(self, data: Dataset) -> Dataset: ...
    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer: ...
    def lr_factor(self, epoch: int) -> float: ...
    def on_epoch_start(self, epoch: int, run_seed: int) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """Pretraining produced a NaN/inf loss; names the step and the last good checkpoint."""


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA; use bf16 or fp32 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


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


def fit(method: TrainableMethod, data: Dataset, run: RunContext) -> None:
    """Build ``method.model`` and train it on ``data`` (see module docstring)."""
    log = logging.getLogger(run.logger_name)
    train = method.config.train
    info = dist_info()
    seed_everything(run.seed)  # same initial weights on every rank
    method.model = model = method.build_model().to(run.device)
    if train.epochs == 0 or not method.pretrain_modalities:
        method.pretrain_info = {"epochs": 0, "steps": 0, "seconds": 0.0, "note": "random initialisation, no pretraining"}
        return

    dataset = method.pretrain_dataset(data)
    if len(dataset) == 0:
        raise ValueError(f"{method.name}: the pretraining data is empty")
    if info.enabled and train.sync_bn:
        method.model = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if train.channels_last:  # only 4-D weights change format; image batches follow their encoder's weights
        model.to(memory_format=torch.channels_last)
    step_fn: torch.nn.Module = StepModule(method)
    if info.enabled:
        step_fn = DistributedDataParallel(step_fn, device_ids=[run.device.index] if run.device.type == "cuda" else None,
                                          find_unused_parameters=train.find_unused_parameters)
    if train.compile:
        step_fn = torch.compile(step_fn)
    optimizer = method.configure_optimizer(model)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    scaler = torch.amp.GradScaler("cuda") if run.device.type == "cuda" and train.precision == "fp16" else None
    config_json = weights_config(method.config)  # snapshot epochs change no weights: a resume may add some
    snapshots = set(train.snapshot_epochs)
    ckpt_path = run.checkpoint_dir / "last.pt" if run.checkpoint_dir is not None else None
    start_epoch, history, seconds, step = 0, [], 0.0, 0
    resumed = load_latest_good(ckpt_path, run.device, log) if ckpt_path is not None else None
    if resumed is not None:
        resumed_from, state = resumed
        if state.get("config") != config_json:
            raise ValueError(f"{resumed_from} was written with another config; delete it to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, seconds, step = state["epoch"], state["history"], state["seconds"], state["step"]
        log.info("%s: resumed from %s after epoch %d/%d", method.name, resumed_from, start_epoch, train.epochs)
    if start_epoch == 0 and 0 in snapshots:
        _save_snapshot(run, info, model, 0, history, step)

    generator = torch.Generator()
    # the global batch is split over ranks; each rank reads its own shard of every epoch
    per_rank = max(1, train.batch_size // info.world_size)
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=run.seed,
                                 drop_last=True) if info.enabled else None
    shard = len(dataset) // info.world_size
    loader = DataLoader(
        dataset,
        batch_size=min(per_rank, shard),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=shard > per_rank,  # no tiny last batch for BatchNorm
        num_workers=train.num_workers,
        generator=generator,
        pin_memory=run.device.type == "cuda",
        persistent_workers=train.num_workers > 0,
    )
    steps_per_epoch = len(loader) if not train.max_steps_per_epoch else min(len(loader), train.max_steps_per_epoch)
    for epoch in range(start_epoch, train.epochs):
        t0 = time.perf_counter()
        seed = epoch_seed(run.seed, epoch)
        seed_everything(seed + 1_000_003 * info.rank)  # augmentation differs across ranks
        generator.manual_seed(seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
        method.on_epoch_start(epoch, run.seed)
        seen: list[int] = []
        factor = method.lr_factor(epoch)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        model.train()
        sums: dict[str, float] = defaultdict(float)
        n_batches = n_items = 0
        bar = tqdm(total=steps_per_epoch, desc=f"pretrain {method.name} {epoch + 1}/{train.epochs}",
                   disable=not run.progress or not info.is_main, leave=False, dynamic_ncols=True)
        for batch_idx, batch in enumerate(loader):
            if batch_idx >= steps_per_epoch:
                break
            if "index" in batch:
                seen.extend(batch["index"].tolist())
            batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
            with _autocast(run.device, train.precision):
                terms = step_fn(batch, step)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                last = f"{ckpt_path} (after epoch {start_epoch if epoch == start_epoch else epoch})" if ckpt_path and ckpt_path.exists() else "none"
                raise NonFiniteLossError(
                    f"{method.name}: loss is {loss.item()} at step {step} (epoch {epoch + 1}); last good checkpoint: {last}"
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            for key, value in terms.items():
                sums[key] += float(value.detach())
            n_batches += 1
            n_items += len(next(iter(batch.values())))
            step += 1
            bar.update(1)
            if batch_idx % train.log_every == 0:
                bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4g}")
        bar.close()
        epoch_s = time.perf_counter() - t0
        seconds += epoch_s
        record = all_reduce_mean({k: v / max(1, n_batches) for k, v in sums.items()}, run.device)
        record.update(epoch=epoch + 1, lr=optimizer.param_groups[0]["lr"], seconds=round(seconds, 3))
        history.append(record)
        _trace(run, info, epoch, seen, record)
        rate = n_items * info.world_size / epoch_s if epoch_s > 0 else 0.0  # every rank reads its own shard
        log.info("%s epoch %d/%d: %s", method.name, epoch + 1, train.epochs,
                 ", ".join(f"{k}={v:.5g}" for k, v in record.items() if k not in ("epoch",)),
                 extra={"ssl3d_epoch": {**record, "epoch_seconds": epoch_s, "items_per_s": rate}})
        if info.is_main and (not run.progress or not sys.stderr.isatty()) and not _console_shows(log, logging.INFO):
            print(f"pretrain {method.name} epoch {epoch + 1}/{train.epochs}: loss {record['loss']:.5g}, "
                  f"{epoch_s:.1f}s, {rate:.1f} items/s", file=sys.stderr, flush=True)
        if ckpt_path is not None and info.is_main:  # one writer; every rank holds the same weights
            _save_checkpoint(ckpt_path, model, optimizer, config_json, epoch + 1, history, seconds, step)
        if epoch + 1 in snapshots:
            _save_snapshot(run, info, model, epoch + 1, history, step)
        barrier()

    final = history[-1] if history else {}
    method.pretrain_info = {
        "epochs": train.epochs,
        "steps": step,
        "seconds": round(seconds, 3),
        "final_loss": final.get("loss", math.nan),
        "history": history,
        "shapes_per_second": round(step * per_rank * info.world_size / seconds, 3) if seconds > 0 else None,
        "world_size": info.world_size,
    }


def epoch_seconds(history: list[dict]) -> list[float]:
    """Each epoch's own seconds from a pretraining's ``history`` (whose ``seconds`` are running totals, kept
    across a resume): what a cost estimate needs, since a shared CPU slows single epochs, not whole runs."""
    totals = [float(record.get("seconds") or 0.0) for record in history]
    return [round(b - a, 3) for a, b in zip([0.0] + totals, totals)]


def snapshot_path(checkpoint_dir: Path, epoch: int) -> Path:
    """Where :func:`fit` keeps the weights after ``epoch`` when ``train.snapshot_epochs`` lists it."""
    return Path(checkpoint_dir) / f"epoch-{epoch}.pt"


def _save_snapshot(run: RunContext, info: DistInfo, model: nn.Module, epoch: int, history: list[dict],
                   step: int) -> None:
    # the history and step count up to here let a shorter pretraining be served from this file
    # (bench/pretrain_cache.py) with its own bookkeeping
    if run.checkpoint_dir is not None and info.is_main:
        save_checkpoint(snapshot_path(run.checkpoint_dir, epoch),
                        {"model": model.state_dict(), "epoch": epoch, "history": list(history), "step": step})


def _save_checkpoint(path, model, optimizer, config_json, epoch, history, seconds, step) -> None:
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": config_json,
                           "epoch": epoch, "history": history, "seconds": seconds, "step": step}, keep_previous=True)
