"""The pretraining cache, and snapshots shared by pretrainings that differ only in their number of epochs.

``<data root>/pretrain/<method>/<key>/`` holds one pretraining:

* ``final.pt``: the finished method (:meth:`Method.state_dict`), what every later run loads;
* ``last.pt`` (and its previous copy) while it trains, so an interrupted run resumes;
* ``epoch-<k>.pt``: snapshots at ``train.snapshot_epochs`` (budget curves, bench/sweep/curve.py);
* ``trajectory.json``: the pretraining's :func:`trajectory_key`, written before it trains;
* ``pretrain.lock``: one process trains a key at a time (bench/run/pretrain_lock.py).

**Key.** :func:`pretrain_key` hashes what determines the weights: the method's name, code version and
config (``train.snapshot_epochs`` and the other weight-neutral keys left out), the pretraining data and its
settings, and the seed.

**Trajectories.** The trainer seeds every epoch from (seed, epoch) and sets each epoch's learning rate from
the epoch alone, so the first E epochs of a 16-epoch pretraining are the whole of an E-epoch one, unless
something in an epoch reads the total (a cosine schedule: :meth:`Method.schedule_reads_total_epochs`).
:func:`trajectory_key` is the key without ``train.epochs``, and ``None`` for such a method. When a
pretraining of E epochs is not cached, :func:`pretrain_or_load` looks for an ``epoch-E.pt`` snapshot of its
trajectory first (a budget curve pretrained the same seed further) and, when there is one, serves it instead
of training again. That is how the knee-selection curve's seed-0 pretraining becomes the ``cpu`` preset's
seed 0 (docs/curves.md). The result records the snapshot it came from (``pretraining.from_snapshot``) and
the seconds its E epochs took in the longer run. On a CPU, float sums depend on the thread count, so a
snapshot trained with another thread count is another draw of the same training, not a bitwise copy.

**Published checkpoints.** A method started from one (``method.init_checkpoint``) has the file's SHA-256 in
its key and trajectory (``weights_config``); :func:`pretrain_or_load` records this run's file in the result
(``pretraining.init_checkpoint``) and refuses weights loaded from other bytes (bench/run/init_checkpoint.py).

**Label readers.** A method whose pretraining reads labels (``Method.reads_labels``: CMIC's category loss)
pretrains on :func:`pretraining_data`: the train split without the validation part its seed's budget is chosen
on (bench/features/splits.py: ``WithoutValidation``), so neither that part's shapes nor its labels shape the
weights that are then chosen on it. The withheld positions enter the key through the data's settings and the
result's ``pretraining.withheld_validation``; every other method's data, keys and results are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ssl3d.bench.features.splits import SELECTION_VAL_FRACTION, WithoutValidation
from ssl3d.bench.run.init_checkpoint import checkpoint_identity, record_checkpoint
from ssl3d.bench.run.pretrain_lock import KeyLock
from ssl3d.core.config import config_hash, to_dict
from ssl3d.core.distributed import barrier, broadcast_from_main, dist_info
from ssl3d.core.io import atomic_write_json, move_aside
from ssl3d.core.seeding import seed_everything
from ssl3d.methods import Method, RunContext
from ssl3d.methods.checkpoint import (CorruptCheckpointError, load_checkpoint, load_or_move_aside, previous_checkpoint,
                                     read_pretrain_info,
                                     save_checkpoint)
from ssl3d.methods.config import weights_config
from ssl3d.methods.trainer import snapshot_path

log = logging.getLogger("ssl3d.run")

TRAJECTORY_FILE = "trajectory.json"
REPLAY = "curve-replay"  # sub-folder of a pretraining where a curve re-trains snapshots asked for too late


def pretraining_data(method: Method, data: Any, seed: int, evaluated: str) -> Any:
    """What ``method`` pretrains on for a run of seed ``seed`` evaluated on dataset ``evaluated``: ``data`` itself,
    or, for a label reader pretraining on the evaluated dataset, ``data`` without the seed's validation part."""
    if method.reads_labels and data.name == evaluated:
        return WithoutValidation(data, seed)
    return data


def withheld_record(data: Any) -> dict[str, Any]:
    """The result's record of what a label reader's pretraining withheld (``{}`` for any other data)."""
    if not isinstance(data, WithoutValidation):
        return {}
    return {"withheld_validation": {"rule": "bench curve --split val's carve of the run seed", "seed": data.seed,
                                    "fraction": SELECTION_VAL_FRACTION, "positions": data.withheld.tolist()}}


def pretrain_key(method: Method, data_name: str, data_settings: dict[str, Any], seed: int) -> str:
    # weights_config: settings that change no weights (train.snapshot_epochs) do not split the cache
    return config_hash({"method": method.name, "version": method.version, "config": weights_config(method.config),
                        "data": data_name, "data_settings": data_settings, "seed": seed}, length=16)


def trajectory_key(method: Method, data_name: str, data_settings: dict[str, Any], seed: int) -> str | None:
    """:func:`pretrain_key` without ``train.epochs``; None when an epoch's training reads the total."""
    if method.schedule_reads_total_epochs():
        return None
    config = weights_config(method.config)
    config["train"].pop("epochs", None)
    return config_hash({"trajectory_of": method.name, "version": method.version, "config": config,
                        "data": data_name, "data_settings": data_settings, "seed": seed}, length=16)


def trajectory_snapshot(method_root: Path, trajectory: str | None, epoch: int) -> Path | None:
    """The ``epoch-<epoch>.pt`` of any pretraining of ``trajectory`` under ``method_root`` (or None)."""
    if trajectory is None or epoch < 0:
        return None
    for marker in sorted(Path(method_root).glob(f"*/{TRAJECTORY_FILE}")):
        try:
            if json.loads(marker.read_text()).get("trajectory") != trajectory:
                continue
        except (OSError, ValueError, AttributeError) as exc:  # a damaged marker only hides its folder's snapshots
            log.warning("%s: unreadable (%s); its snapshots are not shared", marker, exc)
            continue
        for folder in (marker.parent, marker.parent / REPLAY):
            if snapshot_path(folder, epoch).exists():
                return snapshot_path(folder, epoch)
    return None


def _bookkeeping(snapshot: Path, state: dict[str, Any], epoch: int) -> tuple[list[dict], int | None]:
    """The first ``epoch`` history records and the step count of the pretraining that wrote ``snapshot``.

    Snapshots carry both; older ones only the weights, and then their pretraining's final.pt gives the history.
    """
    if "history" in state:
        return list(state["history"])[:epoch], state.get("step")
    for folder in (snapshot.parent, snapshot.parent.parent):  # a replayed snapshot's pretraining is one up
        final = folder / "final.pt"
        if final.exists():
            try:
                return list(read_pretrain_info(final).get("history") or [])[:epoch], None
            except Exception as exc:  # noqa: BLE001 - bookkeeping only: a file that cannot give it is named
                log.warning("%s: no history read (%s); the served pretraining records none", final, exc)
    return [], None


def _load_snapshot_as_pretraining(method: Method, snapshot: Path, state: dict[str, Any],
                                  device: torch.device) -> None:
    """Make ``method`` (a config of E epochs) the pretraining whose epoch-E weights ``state`` (from ``snapshot``) holds."""
    epochs = method.config.train.epochs
    history, steps = _bookkeeping(snapshot, state, epochs)
    last = history[-1] if history else {}
    info = {"epochs": epochs, "steps": steps, "seconds": last.get("seconds"), "final_loss": last.get("loss"),
            "history": history, "from_snapshot": str(snapshot)}
    method.load_state_dict({"method": method.name, "version": method.version, "config": to_dict(method.config),
                            "model": state["model"], "pretrain_info": info}).to(device)


def _usable_snapshot(method_root: Path, trajectory: str | None, epochs: int) -> tuple[Path | None, dict | None]:
    """The snapshot to serve and its state, checked by loading it; a damaged one is named, moved aside, and
    training follows (None, None)."""
    snapshot = trajectory_snapshot(method_root, trajectory, epochs)
    if snapshot is None:
        return None, None
    try:
        state = load_checkpoint(snapshot)
        if state.get("epoch") != epochs:
            raise ValueError(f"it holds epoch {state.get('epoch')}")
    except (CorruptCheckpointError, ValueError) as exc:
        aside = move_aside(snapshot)
        log.warning("%s: not served (%s); %s, pretraining instead", snapshot, exc,
                    f"moved to {aside.name}" if aside else "it is gone")
        return None, None
    return snapshot, state


def _remember_trajectory(folder: Path, trajectory: str | None, epochs: int) -> None:
    """Write ``trajectory.json`` (a cache hit of a pretraining made before markers existed gets one too)."""
    if trajectory is None or (folder / TRAJECTORY_FILE).exists() or not dist_info().is_main:
        return
    try:
        atomic_write_json(folder / TRAJECTORY_FILE, {"trajectory": trajectory, "epochs": epochs})
    except OSError as exc:  # a read-only cache only loses the sharing, never the run
        log.warning("%s: not written (%s); its snapshots are not shared", folder / TRAJECTORY_FILE, exc)


def pretrain_or_load(method: Method, dataset, seed: int, device: torch.device, cache_root: Path, progress: bool) -> dict:
    """Pretrain ``method`` on ``dataset``, or load the cached weights or a snapshot of its trajectory.

    Returns the cache's side of the result's ``pretraining`` block: ``cached``, ``key``, ``path``.
    """
    if not method.pretrains:
        method.pretrain(dataset, RunContext(device=device, seed=seed, progress=progress))
        return {"cached": False, "key": None}
    settings = {g: dataset.settings(g) for g in dataset.groups()}
    identity = checkpoint_identity(method)  # this run's file and the digest its key is made of
    key = pretrain_key(method, dataset.name, settings, seed)
    folder = cache_root / "pretrain" / method.name / key
    final = folder / "final.pt"
    # a damaged final.pt is moved aside; last.pt holds the same weights, so pretraining again only reloads it
    then = "; pretraining again (resuming from last.pt if intact)"
    state = load_or_move_aside(final, "cpu", log, then=then)
    if state is None:
        folder.mkdir(parents=True, exist_ok=True)
        # one job trains a key at a time (sweeps on shared filesystems); a waiter then loads its final.pt
        with KeyLock(folder / "pretrain.lock", what=f"the pretraining {method.name}/{key}") if dist_info().is_main \
                else contextlib.nullcontext():
            barrier()  # the other ranks look for final.pt only once rank 0 holds the lock
            state = load_or_move_aside(final, "cpu", log, then=then)
            if state is None:
                epochs = method.config.train.epochs
                trajectory = trajectory_key(method, dataset.name, settings, seed)
                # rank 0 chooses for all: ranks that looked at the folders at other moments could disagree
                snapshot, snapshot_state = (_usable_snapshot(folder.parent, trajectory, epochs) if dist_info().is_main
                                            else (None, None))
                snapshot = broadcast_from_main(snapshot)
                if snapshot is not None:
                    log.info("pretraining %s/%s: the epoch-%d snapshot %s of the same trajectory",
                             method.name, key, epochs, snapshot)
                    seed_everything(seed)
                    _load_snapshot_as_pretraining(method, snapshot, snapshot_state or load_checkpoint(snapshot), device)
                    method.after_pretraining(dataset)
                else:
                    _remember_trajectory(folder, trajectory, epochs)  # before training: its snapshots are shared
                    method.pretrain(dataset, RunContext(device=device, seed=seed, checkpoint_dir=folder,
                                                        progress=progress))
                record_checkpoint(method, identity)  # before final.pt: weights from other bytes never enter the key
                if dist_info().is_main:
                    save_checkpoint(final, method.state_dict())
                    # a trained run's last.pt holds the same weights as final.pt (a served one's, if any, an
                    # interrupted start): either way the older state is no longer needed
                    previous_checkpoint(folder / "last.pt").unlink(missing_ok=True)
                barrier()
                return {"cached": False, "key": key, "path": str(final), **withheld_record(dataset)}
    method.load_state_dict(state).to(device)
    record_checkpoint(method, identity)
    log.info("pretraining cache hit: %s", final)
    _remember_trajectory(folder, trajectory_key(method, dataset.name, settings, seed), method.config.train.epochs)
    return {"cached": True, "key": key, "path": str(final), **withheld_record(dataset)}
