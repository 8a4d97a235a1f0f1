"""Distributed data parallel pretraining on PyTorch's own engine (DDP + torchrun).

Launch with ``torchrun --nproc-per-node N -m ssl3d.bench.cli run ...`` or the
convenience ``bench run --nproc N ...``. torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init_distributed` joins the
process group (NCCL on GPUs, gloo on CPU). Nothing here is a home-made engine:
gradients are synchronised by :class:`torch.nn.parallel.DistributedDataParallel`,
shards come from :class:`torch.utils.data.DistributedSampler`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (a single process is rank 0 of world 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank/world read from an initialised process group, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return DistInfo(int(os.environ.get("RANK", 0)), world, int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (no-op otherwise)."""
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return dist_info()


def device_for_rank(device: torch.device) -> torch.device:
    """On CUDA every rank uses its own GPU (cuda:LOCAL_RANK)."""
    if device.type == "cuda" and dist_info().enabled:
        return torch.device("cuda", dist_info().local_rank)
    return device


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache), the others after it finished."""
    info = dist_info()
    if info.enabled and dist.is_initialized() and not info.is_main:
        dist.barrier()
    yield
    if info.enabled and dist.is_initialized() and info.is_main:
        dist.barrier()


def barrier() -> None:
    if dist_info().enabled and dist.is_initialized():
        dist.barrier()


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself when not distributed): one decision for all ranks."""
    if not (dist_info().enabled and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of scalar logs over ranks, so every rank logs the same numbers."""
    info = dist_info()
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


class StepModule(torch.nn.Module):
    """Routes ``method.training_step`` through ``forward`` so DDP sees every pretext forward.

    Methods call their sub-networks directly (``self.model["backbone"](...)``);
    wrapping this module in DDP makes DDP's forward/backward bookkeeping cover
    whatever the step uses, without changing method code.
    """

    def __init__(self, method) -> None:
        super().__init__()
        self.model = method.model  # registers the parameters with this module
        self._method = [method]  # a list, so the method is not registered as a sub-module

    def forward(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        return self._method[0].training_step(batch, step)
