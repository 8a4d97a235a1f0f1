"""The training loop's pieces (methods/trainer.py): checkpoints, snapshots, resume, epoch records and logs (CPU)."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Iterator

import pytest
import torch
from torch import nn

from ssl3d.core.distributed import DistInfo
from ssl3d.core.seeding import epoch_seed, seed_everything
from ssl3d.methods import Method, MethodConfig, RunContext, TrainConfig
from ssl3d.methods import trainer
from ssl3d.methods.checkpoint import load_checkpoint
from ssl3d.methods.trainer import EPOCH_RECORD, NonFiniteLossError, snapshot_path

N_ITEMS, BATCH = 10, 4  # 2 steps per epoch (the last 2 items are dropped: no tiny last batch)


@dataclass(frozen=True)
class _TinyConfig(MethodConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, batch_size=BATCH, lr=1e-2))
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}


class _Tiny(Method):
    """Regresses a vector's sum with one linear layer; reads ``last.pt`` as each epoch starts; may stop or NaN."""

    name = "tiny-pieces"
    Config = _TinyConfig
    pretrain_modalities = frozenset({"points"})
    folder: Path | None = None
    seen_at_start: list[int | None] = []  # the epoch last.pt holds when each epoch starts (None: no file)
    stop_at: int | None = None
    nan_at_step: int | None = None

    def build_model(self) -> nn.Module:
        return nn.Linear(8, 1)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x = batch["points"]
        loss = nn.functional.mse_loss(self.model(x).squeeze(1), x.sum(dim=1))
        if step == type(self).nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "twice": 2 * loss.detach()}

    def on_epoch_start(self, epoch: int, run_seed: int) -> None:
        last = type(self).folder / "last.pt" if type(self).folder else None
        type(self).seen_at_start.append(load_checkpoint(last)["epoch"] if last and last.exists() else None)
        if epoch == type(self).stop_at:
            raise KeyboardInterrupt  # a killed run


class _Vectors(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.points = torch.randn(N_ITEMS, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[i], "index": torch.tensor(i)}


@pytest.fixture(autouse=True)
def _reset_tiny():
    _Tiny.folder, _Tiny.seen_at_start, _Tiny.stop_at, _Tiny.nan_at_step = None, [], None, None
    yield


def _pretrain(folder: Path | None, **train: Any) -> _Tiny:
    _Tiny.folder = folder
    method = _Tiny.from_preset("quick", {f"train.{k}": v for k, v in train.items()})
    return method.pretrain(_Vectors(), RunContext(seed=5, checkpoint_dir=folder, progress=False))


def _loop(folder: Path | None, rank: int = 0, **train: Any) -> trainer._Loop:
    """The loop's shared state for a freshly built tiny method, as :func:`trainer.fit` sets it up, then seen
    as ``rank`` of 2 processes (set afterwards: no process group, so no DDP wrapper)."""
    method = _Tiny.from_preset("quick", {f"train.{k}": v for k, v in train.items()})
    method.model = method.build_model()
    loop = trainer._setup(method, RunContext(seed=5, checkpoint_dir=folder, progress=False), DistInfo())
    loop.info = DistInfo(rank, 2)
    return loop


@contextlib.contextmanager
def _logging_to(logger: logging.Logger, handler: logging.Handler) -> Iterator[None]:
    """``handler`` on ``logger`` at INFO for the block; the logger as it was afterwards."""
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _weights(method: Method) -> list[torch.Tensor]:
    return [t.clone() for t in method.model.state_dict().values()]


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# -- checkpoints ------------------------------------------------------------------------------------------------

def test_last_pt_is_written_after_every_epoch_and_the_one_before_kept_as_prev(tmp_path):
    method = _pretrain(tmp_path)
    assert _Tiny.seen_at_start == [None, 1, 2]  # each epoch starts from the checkpoint of the one before
    last, prev = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "prev.pt")
    assert (last["epoch"], last["step"], prev["epoch"], prev["step"]) == (3, 6, 2, 4)
    assert _without_seconds(last["history"]) == _without_seconds(method.pretrain_info["history"])
    assert all(torch.equal(a, b) for a, b in zip(last["model"].values(), _weights(method)))
    assert last["config"] == trainer.weights_config(method.config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]  # no snapshots unless asked


def test_save_checkpoint_writes_on_rank_0_only_and_only_with_a_folder(tmp_path):
    progress = trainer._Progress(epoch=2, history=[{"loss": 1.0}], seconds=1.5, step=7)
    trainer._save_checkpoint(_loop(tmp_path, rank=1), progress)
    trainer._save_checkpoint(_loop(None), progress)
    assert not list(tmp_path.iterdir())
    trainer._save_checkpoint(_loop(tmp_path), progress)
    state = load_checkpoint(tmp_path / "last.pt")
    assert {k: state[k] for k in ("epoch", "history", "seconds", "step")} == \
        {"epoch": 2, "history": [{"loss": 1.0}], "seconds": 1.5, "step": 7}
    assert set(state["optimizer"]) == {"state", "param_groups"}


# -- snapshots --------------------------------------------------------------------------------------------------

def test_snapshots_are_kept_at_the_listed_epochs_only_with_their_bookkeeping(tmp_path):
    seed_everything(5)  # what fit does before building the model
    initial = list(_Tiny.from_preset("quick").build_model().state_dict().values())
    method = _pretrain(tmp_path, snapshot_epochs="0,2")
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == ["epoch-0.pt", "epoch-2.pt"]
    zero, two = load_checkpoint(snapshot_path(tmp_path, 0)), load_checkpoint(snapshot_path(tmp_path, 2))
    assert (zero["epoch"], zero["step"], zero["history"]) == (0, 0, [])
    assert all(torch.equal(a, b) for a, b in zip(zero["model"].values(), initial))  # the untrained network
    assert (two["epoch"], two["step"]) == (2, 4)
    assert two["history"] == method.pretrain_info["history"][:2]


def test_save_snapshot_skips_unlisted_epochs_other_ranks_and_runs_without_a_folder(tmp_path):
    listed = trainer._Progress(epoch=1, step=2)
    trainer._save_snapshot(_loop(tmp_path, snapshot_epochs="2"), listed)  # epoch 1 not listed
    trainer._save_snapshot(_loop(tmp_path, rank=1, snapshot_epochs="1"), listed)
    trainer._save_snapshot(_loop(None, snapshot_epochs="1"), listed)
    assert not list(tmp_path.iterdir())
    trainer._save_snapshot(_loop(tmp_path, snapshot_epochs="1"), listed)
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-1.pt"]


# -- resume -----------------------------------------------------------------------------------------------------

def test_an_interrupted_run_resumed_from_last_pt_ends_exactly_like_an_uninterrupted_one(tmp_path):
    torch.set_num_threads(1)
    reference = _pretrain(None)
    _Tiny.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        _pretrain(tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    _Tiny.stop_at, _Tiny.seen_at_start = None, []
    resumed = _pretrain(tmp_path / "run")
    assert _Tiny.seen_at_start == [2]  # only the unfinished epoch ran
    assert all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(reference)))
    assert _without_seconds(resumed.pretrain_info["history"]) == _without_seconds(reference.pretrain_info["history"])
    assert resumed.pretrain_info["steps"] == reference.pretrain_info["steps"] == 6


def test_resume_restores_progress_weights_and_optimiser_and_starts_fresh_without_a_checkpoint(tmp_path):
    assert trainer._resume(_loop(tmp_path)) == trainer._Progress()
    assert trainer._resume(_loop(None)) == trainer._Progress()
    source = _loop(tmp_path)
    nn.init.constant_(source.model.weight, 0.25)
    source.optimizer.param_groups[0]["lr"] = 0.5
    trainer._save_checkpoint(source, trainer._Progress(epoch=2, history=[{"loss": 3.0}] * 2, seconds=4.0, step=9))
    target = _loop(tmp_path)
    assert trainer._resume(target) == trainer._Progress(2, [{"loss": 3.0}] * 2, 4.0, 9)
    assert torch.equal(target.model.weight, torch.full_like(target.model.weight, 0.25))
    assert target.optimizer.param_groups[0]["lr"] == 0.5


def test_resume_refuses_a_checkpoint_written_with_another_config(tmp_path):
    trainer._save_checkpoint(_loop(tmp_path, lr=0.1), trainer._Progress(epoch=1))
    with pytest.raises(ValueError, match="another config"):
        trainer._resume(_loop(tmp_path, lr=0.2))
    trainer._resume(_loop(tmp_path, lr=0.1, snapshot_epochs="1"))  # snapshots change no weights: accepted


# -- one epoch, one step ----------------------------------------------------------------------------------------

def test_start_epoch_reseeds_from_run_seed_and_epoch_and_sets_the_lr_factor():
    loop = _loop(None, rank=1)
    loop.method.lr_factor = lambda epoch: 0.5 ** epoch
    batches = trainer._make_batches(_Vectors(), loop.train, loop.run, DistInfo())
    loop.model.eval()
    trainer._start_epoch(loop, batches, 2)
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    assert loop.model.training
    assert batches.generator.initial_seed() == epoch_seed(5, 2)
    assert torch.initial_seed() == epoch_seed(5, 2) + 1_000_003  # rank 1: its own augmentation draws


def test_batches_split_the_global_batch_and_cap_the_steps():
    train = _Tiny.from_preset("quick", {"train.max_steps_per_epoch": 1}).config.train
    one = trainer._make_batches(_Vectors(), train, RunContext(), DistInfo())
    assert (one.per_rank, one.steps_per_epoch, one.sampler) == (BATCH, 1, None)
    uncapped = trainer._make_batches(_Vectors(), _Tiny.from_preset("quick").config.train, RunContext(), DistInfo())
    assert uncapped.steps_per_epoch == N_ITEMS // BATCH  # drop_last: no tiny last batch


def test_a_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tmp_path):
    _Tiny.nan_at_step = 3  # epoch 2's second step
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 \(epoch 2\)") as info:
        _pretrain(tmp_path)
    assert f"{tmp_path / 'last.pt'} (after epoch 1)" in str(info.value)
    _Tiny.nan_at_step = 0
    with pytest.raises(NonFiniteLossError, match="last good checkpoint: none"):
        _pretrain(None)


def test_epoch_totals_sum_every_term_and_count_batches_and_items():
    totals = trainer._EpochTotals()
    totals.add({"loss": torch.tensor(1.0), "twice": torch.tensor(2.0)}, 4)
    totals.add({"loss": torch.tensor(3.0), "twice": torch.tensor(6.0)}, 3)
    assert (dict(totals.sums), totals.n_batches, totals.n_items) == ({"loss": 4.0, "twice": 8.0}, 2, 7)


# -- records and logs -------------------------------------------------------------------------------------------

def test_epoch_record_holds_the_mean_terms_the_epoch_lr_and_total_seconds():
    loop = _loop(None)
    loop.optimizer.param_groups[0]["lr"] = 0.003
    totals = trainer._EpochTotals()
    totals.add({"loss": torch.tensor(1.0), "twice": torch.tensor(2.0)}, 4)
    totals.add({"loss": torch.tensor(2.0), "twice": torch.tensor(4.0)}, 4)
    record = trainer._epoch_record(loop, totals, 4, 12.34567)
    assert record == {"loss": 1.5, "twice": 3.0, "epoch": 5, "lr": 0.003, "seconds": 12.346}
    assert list(record) == ["loss", "twice", "epoch", "lr", "seconds"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_log_epoch_attaches_the_record_for_trackers_and_prints_a_plain_line(capsys):
    loop, handler = _loop(None, rank=0), _Records()
    record = {"loss": 0.25, "epoch": 2, "lr": 0.01, "seconds": 3.0}
    with _logging_to(loop.log, handler):
        trainer._log_epoch(loop, record, epoch_s=2.0, n_items=8)
    [logged] = handler.records
    assert logged.getMessage() == "tiny-pieces epoch 2/3: loss=0.25, lr=0.01, seconds=3"
    assert getattr(logged, EPOCH_RECORD) == {**record, "epoch_seconds": 2.0, "items_per_s": 8.0}  # 8 x 2 ranks / 2 s
    assert capsys.readouterr().err == "pretrain tiny-pieces epoch 2/3: loss 0.25, 2.0s, 8.0 items/s\n"


def test_no_plain_line_when_a_console_handler_already_shows_the_log(capsys):
    loop = _loop(None, rank=0)
    with _logging_to(loop.log, logging.StreamHandler(sys.stderr)):
        trainer._log_epoch(loop, {"loss": 0.25, "epoch": 1, "lr": 0.01, "seconds": 1.0}, epoch_s=1.0, n_items=4)
    assert capsys.readouterr().err.count("tiny-pieces epoch 1/3") == 1  # the log line, not a second plain one


def test_pretrain_info_reports_steps_time_final_loss_and_throughput(tmp_path, monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))  # 1 s an epoch
    info = _pretrain(tmp_path).pretrain_info
    assert (info["epochs"], info["steps"], info["world_size"], info["seconds"]) == (3, 6, 1, 3.0)
    assert [(r["epoch"], r["seconds"]) for r in info["history"]] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert info["final_loss"] == info["history"][-1]["loss"] < info["history"][0]["loss"]
    assert info["shapes_per_second"] == 6 * BATCH / 3.0
    assert trainer.epoch_seconds(info["history"]) == [1.0, 1.0, 1.0]


def test_a_method_that_does_not_pretrain_gets_its_untrained_network_and_no_files(tmp_path):
    method = _pretrain(tmp_path, epochs=0)
    assert not method.pretrains and method.model is not None
    assert method.pretrain_info == trainer._UNTRAINED_INFO and method.pretrain_info is not trainer._UNTRAINED_INFO
    assert not list(tmp_path.iterdir())
