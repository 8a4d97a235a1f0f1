"""Damaged checkpoints are named, never loaded unsafely, and training resumes from the last good state."""

from __future__ import annotations

import logging
import os
import traceback
from fractions import Fraction
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from ssl3d.bench.run.pretrain_cache import pretrain_or_load
from ssl3d.methods import Method, MethodConfig, RunContext, TrainConfig
from ssl3d.methods.checkpoint import CorruptCheckpointError, load_checkpoint, save_checkpoint

EPOCHS = 3


@dataclass(frozen=True)
class _TinyConfig(MethodConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=EPOCHS, batch_size=4, lr=1e-2))
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}


class _TinyMethod(Method):
    """Regresses the sum of a vector's entries with one linear layer."""

    name = "tiny-vector"
    Config = _TinyConfig
    pretrain_modalities = frozenset({"points"})

    def build_model(self) -> nn.Module:
        return nn.Linear(8, 1)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x = batch["points"]
        return {"loss": nn.functional.mse_loss(self.model(x).squeeze(1), x.sum(dim=1))}


class _Vectors(torch.utils.data.Dataset):
    name = "vectors"

    def __init__(self) -> None:
        self.points = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[i]}

    def groups(self) -> list[str]:
        return ["points"]

    def settings(self, group: str) -> dict[str, Any]:
        return {"n": len(self.points)}


def _pretrain(checkpoint_dir: Path | None) -> _TinyMethod:
    method = _TinyMethod.from_preset("quick")
    return method.pretrain(_Vectors(), RunContext(seed=0, checkpoint_dir=checkpoint_dir, progress=False))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _overwrite_middle(path: Path) -> None:
    """Overwrite 64 bytes in the middle of the largest stored tensor: the file stays loadable."""
    data = bytearray(path.read_bytes())
    weights = torch.load(path, weights_only=True)["model"]["weight"].numpy().tobytes()
    start = data.find(weights)
    assert start > 0
    data[start : start + 16] = bytes(16)
    path.write_bytes(bytes(data))


def _same_weights(a: Method, b: Method) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def _warnings(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize("damage", [_truncate, _overwrite_middle])
def test_damaged_checkpoint_names_the_file_and_never_suggests_unsafe_loading(tmp_path, damage):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": nn.Linear(8, 4).state_dict(), "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    damage(path)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "weights_only" not in str(info.value)


def test_checkpoint_holding_code_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "hostile.pt"
    torch.save({"model": {}, "epoch": 1, "payload": Fraction(1, 3)}, path)  # an arbitrary class
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "weights_only" not in str(info.value)
    assert "weights_only" not in "".join(traceback.format_exception(info.value))  # nor in a chained cause


@pytest.mark.parametrize("damage", [_truncate, _overwrite_middle])
def test_damaged_last_checkpoint_resumes_from_the_previous_epoch(tmp_path, caplog, damage):
    reference = _pretrain(None)
    folder = tmp_path / "ckpt"
    _pretrain(folder)
    assert torch.load(folder / "prev.pt", weights_only=True)["epoch"] == EPOCHS - 1
    damage(folder / "last.pt")
    with caplog.at_level(logging.INFO):
        resumed = _pretrain(folder)
    assert str(folder / "last.pt") in _warnings(caplog)
    assert f"resumed from {folder / 'prev.pt'} after epoch {EPOCHS - 1}/{EPOCHS}" in caplog.text
    assert list(folder.glob("last.pt.corrupt-*"))
    assert _same_weights(resumed, reference)  # epoch 3 redone from epoch 2's state gives the same weights
    assert [h["epoch"] for h in resumed.pretrain_info["history"]] == list(range(1, EPOCHS + 1))


def test_no_good_checkpoint_left_starts_over_with_a_warning(tmp_path, caplog):
    reference = _pretrain(None)
    folder = tmp_path / "ckpt"
    _pretrain(folder)
    _truncate(folder / "last.pt")
    _overwrite_middle(folder / "prev.pt")
    with caplog.at_level(logging.INFO):
        again = _pretrain(folder)
    assert str(folder / "last.pt") in _warnings(caplog) and str(folder / "prev.pt") in _warnings(caplog)
    assert "starting over" in _warnings(caplog)
    assert "resumed from" not in caplog.text
    assert _same_weights(again, reference)


@pytest.mark.parametrize("damage", [_truncate, _overwrite_middle])
def test_damaged_final_checkpoint_is_moved_aside_and_pretraining_resumes(tmp_path, caplog, damage):
    first = _TinyMethod.from_preset("quick")
    info = pretrain_or_load(first, _Vectors(), 0, torch.device("cpu"), tmp_path, progress=False)
    final = Path(info["path"])
    assert sorted(p.name for p in final.parent.iterdir()) == ["final.pt", "last.pt", "trajectory.json"]
    damage(final)
    second = _TinyMethod.from_preset("quick")
    with caplog.at_level(logging.INFO):
        info = pretrain_or_load(second, _Vectors(), 0, torch.device("cpu"), tmp_path, progress=False)
    assert str(final) in _warnings(caplog) and "weights_only" not in caplog.text
    assert f"after epoch {EPOCHS}/{EPOCHS}" in caplog.text  # resumed from last.pt: nothing retrained
    assert _same_weights(second, first)
    third = _TinyMethod.from_preset("quick")
    info = pretrain_or_load(third, _Vectors(), 0, torch.device("cpu"), tmp_path, progress=False)
    assert info["cached"] and _same_weights(third, first)  # the rewritten final.pt is good
    assert len(list(final.parent.glob("final.pt.corrupt-*"))) == 1
