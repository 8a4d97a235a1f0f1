"""A pretraining of E epochs is served from the epoch-E snapshot of a longer one of the same trajectory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from ssl3d.bench.run.pretrain_cache import TRAJECTORY_FILE, pretrain_or_load, trajectory_key, trajectory_snapshot
from ssl3d.methods import METHODS
from ssl3d.methods.checkpoint import load_checkpoint, save_checkpoint
from ssl3d.methods.testing import check_method

from test_checkpoint import _TinyMethod, _Vectors

CPU = torch.device("cpu")


def _method(epochs: int, **train) -> _TinyMethod:
    return _TinyMethod.from_preset("quick", {"train.epochs": epochs, **{f"train.{k}": v for k, v in train.items()}})


def _load(method: _TinyMethod, root: Path) -> dict:
    return pretrain_or_load(method, _Vectors(), 0, CPU, root, progress=False)


def _weights(method: _TinyMethod) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in method.model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def _trained_alone(epochs: int, tmp_path: Path) -> dict[str, torch.Tensor]:
    alone = _method(epochs)
    _load(alone, tmp_path / "alone")
    return _weights(alone)


def test_a_shorter_pretraining_is_the_longer_ones_snapshot_and_trains_nothing(tmp_path, monkeypatch, caplog):
    longer = _method(4, snapshot_epochs=(2,))
    _load(longer, tmp_path)
    snapshot = next((tmp_path / "pretrain" / _TinyMethod.name).glob("*/epoch-2.pt"))

    steps = []
    monkeypatch.setattr(_TinyMethod, "training_step", lambda self, batch, step: steps.append(step))
    shorter = _method(2)
    with caplog.at_level(logging.INFO, logger="ssl3d.run"):
        info = _load(shorter, tmp_path)
    assert steps == [] and "the epoch-2 snapshot" in caplog.text and str(snapshot) in caplog.text
    assert _equal(_weights(shorter), load_checkpoint(snapshot)["model"])
    pre = shorter.pretrain_info
    assert pre["from_snapshot"] == str(snapshot) and pre["epochs"] == 2 and len(pre["history"]) == 2
    assert pre["seconds"] == pre["history"][-1]["seconds"] and pre["steps"] == 2 * 4  # 16 vectors, batch 4
    # its own final.pt now exists: the next run is a plain cache hit with the same bookkeeping
    assert Path(info["path"]).parent != snapshot.parent and Path(info["path"]).exists()
    again = _method(2)
    assert _load(again, tmp_path)["cached"] and again.pretrain_info["from_snapshot"] == str(snapshot)


def test_the_snapshot_equals_a_pretraining_of_that_many_epochs(tmp_path):
    longer = _method(3, snapshot_epochs=(1, 2))
    _load(longer, tmp_path / "shared")
    served = _method(2)
    _load(served, tmp_path / "shared")
    assert served.pretrain_info["from_snapshot"]
    assert _equal(_weights(served), _trained_alone(2, tmp_path))
    assert not _equal(_weights(served), _weights(longer))


def test_a_cosine_schedule_reads_the_total_so_nothing_is_shared(tmp_path):
    longer = _method(4, snapshot_epochs=(2,), scheduler="cosine")
    assert longer.schedule_reads_total_epochs()
    assert trajectory_key(longer, "vectors", {}, 0) is None
    _load(longer, tmp_path)
    assert not list(tmp_path.rglob(TRAJECTORY_FILE))
    shorter = _method(2, scheduler="cosine")
    _load(shorter, tmp_path)
    assert "from_snapshot" not in shorter.pretrain_info and shorter.pretrain_info["steps"] == 8
    snapshot = next(tmp_path.rglob("epoch-2.pt"))
    assert not _equal(_weights(shorter), load_checkpoint(snapshot)["model"])  # the learning rates differ


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"batch_size": 8}])
def test_other_weight_settings_or_seeds_are_other_trajectories(tmp_path, change):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    other = _method(2, **change)
    _load(other, tmp_path)
    assert "from_snapshot" not in other.pretrain_info
    seeded = _method(2)
    pretrain_or_load(seeded, _Vectors(), 1, CPU, tmp_path, progress=False)
    assert "from_snapshot" not in seeded.pretrain_info


def test_snapshot_epochs_do_not_split_a_trajectory():
    a, b = _method(4, snapshot_epochs=(2,)), _method(2)
    assert trajectory_key(a, "vectors", {}, 0) == trajectory_key(b, "vectors", {}, 0)
    assert trajectory_key(a, "vectors", {}, 0) != trajectory_key(b, "vectors", {}, 1)


def test_a_damaged_marker_is_named_and_hides_only_its_own_folder(tmp_path, caplog):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    marker = next(tmp_path.rglob(TRAJECTORY_FILE))
    marker.write_text("{not json")
    shorter = _method(2)
    with caplog.at_level(logging.WARNING):
        _load(shorter, tmp_path)
    assert str(marker) in caplog.text and "from_snapshot" not in shorter.pretrain_info


def test_an_older_snapshot_without_history_takes_it_from_its_final(tmp_path):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    snapshot = next(tmp_path.rglob("epoch-2.pt"))
    state = load_checkpoint(snapshot)
    save_checkpoint(snapshot, {"model": state["model"], "epoch": 2})  # the layout before snapshots kept history
    shorter = _method(2)
    _load(shorter, tmp_path)
    assert [r["epoch"] for r in shorter.pretrain_info["history"]] == [1, 2]
    assert shorter.pretrain_info["steps"] is None  # unknown, not guessed


def test_a_damaged_donor_snapshot_is_named_moved_aside_and_the_run_trains(tmp_path, caplog):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    snapshot = next(tmp_path.rglob("epoch-2.pt"))
    snapshot.write_bytes(snapshot.read_bytes()[:100])
    shorter = _method(2)
    with caplog.at_level(logging.WARNING):
        _load(shorter, tmp_path)
    assert f"{snapshot}: not served" in caplog.text and "pretraining instead" in caplog.text
    assert "from_snapshot" not in shorter.pretrain_info and shorter.pretrain_info["steps"] == 8
    assert not snapshot.exists() and len(list(snapshot.parent.glob("epoch-2.pt.corrupt-*"))) == 1
    assert _equal(_weights(shorter), _trained_alone(2, tmp_path))


class _Probing(_TinyMethod):
    """Records, like CM-CV's pretext metrics, something computed from the final networks and the data."""

    def after_pretraining(self, data) -> None:
        self.pretrain_info["probe"] = float(self.model.weight.detach().sum()) + len(data)


def test_a_served_pretraining_gets_the_records_a_trained_one_computes_afterwards(tmp_path):
    longer = _Probing.from_preset("quick", {"train.epochs": 4, "train.snapshot_epochs": (2,)})
    pretrain_or_load(longer, _Vectors(), 0, CPU, tmp_path, progress=False)
    assert longer.pretrain_info["probe"] == pytest.approx(float(longer.model.weight.detach().sum()) + 16)
    served = _Probing.from_preset("quick", {"train.epochs": 2})
    pretrain_or_load(served, _Vectors(), 0, CPU, tmp_path, progress=False)
    assert served.pretrain_info["from_snapshot"]
    assert served.pretrain_info["probe"] == pytest.approx(float(served.model.weight.detach().sum()) + 16)


def test_a_pretraining_cached_before_markers_existed_gets_one_on_its_next_hit(tmp_path):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    marker = next(tmp_path.rglob(TRAJECTORY_FILE))
    trajectory = json.loads(marker.read_text())["trajectory"]
    marker.unlink()  # the layout of caches written before trajectories were shared
    root = tmp_path / "pretrain" / _TinyMethod.name
    assert trajectory_snapshot(root, trajectory, 2) is None
    assert _load(_method(4), tmp_path)["cached"] and marker.exists()
    served = _method(2)
    _load(served, tmp_path)
    assert served.pretrain_info["from_snapshot"].endswith("epoch-2.pt")


def test_a_snapshot_is_found_only_at_its_epoch(tmp_path):
    _load(_method(4, snapshot_epochs=(2,)), tmp_path)
    root = tmp_path / "pretrain" / _TinyMethod.name
    trajectory = json.loads(next(root.rglob(TRAJECTORY_FILE)).read_text())["trajectory"]
    assert trajectory_snapshot(root, trajectory, 2) is not None
    assert trajectory_snapshot(root, trajectory, 3) is None and trajectory_snapshot(root, None, 2) is None
    three = _method(3)
    _load(three, tmp_path)
    assert "from_snapshot" not in three.pretrain_info  # no epoch-3 snapshot: trained


def test_the_contract_check_catches_a_method_that_hides_a_cosine_schedule():
    class CosineButSaysNo(METHODS.get("parae-pointnet")):
        def schedule_reads_total_epochs(self) -> bool:
            return False

    cosine = {"train.scheduler": "cosine"}
    check_method(METHODS.get("parae-pointnet"), overrides=cosine, loss_steps=0)  # declared: passes
    with pytest.raises(AssertionError, match="schedule_reads_total_epochs"):
        check_method(CosineButSaysNo, overrides=cosine, loss_steps=0)
