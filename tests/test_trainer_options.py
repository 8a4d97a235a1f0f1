"""The shared loop's precision and memory-format options, and its per-epoch hook, on a tiny image method (CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from ssl3d.methods import Method, MethodConfig, RunContext, TrainConfig


@dataclass(frozen=True)
class _TinyConfig(MethodConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}


class _TinyImageMethod(Method):
    """Predicts each image's mean brightness from a small CNN: two convs, pooling, linear."""

    name = "tiny-image"
    Config = _TinyConfig
    pretrain_modalities = frozenset({"views"})
    embed_modalities = frozenset({"views"})
    seen_dtypes: list[torch.dtype] = []
    seen_channels_last: list[bool] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        images = batch["views"][:, 0]
        conv = self.model[2]  # 8 input channels: the two layouts differ
        type(self).seen_channels_last.append(conv.weight.is_contiguous(memory_format=torch.channels_last))
        out = self.model(images).squeeze(1)
        type(self).seen_dtypes.append(out.dtype)
        return {"loss": nn.functional.mse_loss(out.float(), images.mean(dim=(1, 2, 3)))}


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        self.views = torch.rand(n, 1, 1, 12, 12, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"views": self.views[i], "label": torch.tensor(0)}


def _train(**train: Any) -> _TinyImageMethod:
    _TinyImageMethod.seen_dtypes, _TinyImageMethod.seen_channels_last = [], []
    method = _TinyImageMethod.from_preset("quick", {f"train.{k}": v for k, v in train.items()})
    return method.pretrain(_Images(), RunContext(seed=0, progress=False))


def test_bf16_autocast_runs_the_forward_pass_in_bfloat16_on_the_cpu():
    torch.set_num_threads(1)
    fp32, bf16 = _train(precision="fp32"), _train(precision="bf16")
    assert set(_TinyImageMethod.seen_dtypes) == {torch.bfloat16}
    assert bf16.pretrain_info["history"][-1]["loss"] == pytest.approx(fp32.pretrain_info["history"][-1]["loss"],
                                                                      rel=0.1, abs=1e-3)
    _train(precision="fp32")
    assert set(_TinyImageMethod.seen_dtypes) == {torch.float32}


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="bf16"):
        _train(precision="fp16")


def test_channels_last_changes_the_memory_format_not_the_numbers():
    torch.set_num_threads(1)
    plain = _train()
    assert not any(_TinyImageMethod.seen_channels_last)
    nhwc = _train(channels_last=True)
    assert all(_TinyImageMethod.seen_channels_last)
    for a, b in zip(plain.model.parameters(), nhwc.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class _Interrupted(Exception):
    """Stands in for a killed run."""


class _EpochRecorder(_TinyImageMethod):
    """Records the loop's on_epoch_start calls; raises at the start of ``stop_at`` (a run interrupted there)."""

    name = "tiny-epochs"
    calls: list[tuple[int, int]] = []
    stop_at: int | None = None

    def on_epoch_start(self, epoch: int, run_seed: int) -> None:
        type(self).calls.append((epoch, run_seed))
        if epoch == type(self).stop_at:
            raise _Interrupted


def test_on_epoch_start_is_called_before_every_epoch_and_again_on_resume(tmp_path):
    run = RunContext(seed=7, checkpoint_dir=tmp_path, progress=False)
    _EpochRecorder.calls, _EpochRecorder.stop_at = [], 2
    with pytest.raises(_Interrupted):
        _EpochRecorder.from_preset("quick", {"train.epochs": 4}).pretrain(_Images(), run)
    assert _EpochRecorder.calls == [(0, 7), (1, 7), (2, 7)]  # epochs 0 and 1 finished and were checkpointed

    _EpochRecorder.calls, _EpochRecorder.stop_at = [], None
    resumed = _EpochRecorder.from_preset("quick", {"train.epochs": 4}).pretrain(_Images(), run)
    assert _EpochRecorder.calls == [(2, 7), (3, 7)]  # the resumed run starts with the epoch it had not finished
    assert [record["epoch"] for record in resumed.pretrain_info["history"]] == [1, 2, 3, 4]

