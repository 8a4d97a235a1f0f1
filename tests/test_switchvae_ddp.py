"""SwitchVAE under DDP: every rank must decode the same branch in the same step (2 gloo ranks on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl3d.methods import RunContext
from ssl3d.methods.switchvae import SwitchVAE

WORLD = 2


class RecordingSwitchVAE(SwitchVAE):
    """SwitchVAE that remembers which branch every training step decoded (not registered)."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.decoded: list[str] = []

    def training_step(self, batch, step):
        terms = super().training_step(batch, step)
        self.decoded.append("views" if float(terms["image_branch"]) else "voxels")
        return terms


def _shapes(n: int = 8) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"voxels": (torch.rand(32, 32, 32, generator=g) > 0.8).float(),
             "views": torch.rand(2, 1, 32, 32, generator=g)} for _ in range(n)]


def _rank(rank: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        decoded = {}
        # batch switch: 2 epochs of 2 steps; epoch switch: 6 epochs of 1 step (2 shapes per rank and step)
        for switch, epochs, shapes in (("batch", 2, 8), ("epoch", 6, 4)):
            method = RecordingSwitchVAE.from_preset("quick", {
                "n_views": 2, "view_size": 32, "p_image": 0.5, "switch": switch,
                "train.epochs": epochs, "train.batch_size": 4})
            method.pretrain(_shapes(shapes), RunContext(seed=11, progress=False))
            decoded[switch] = method.decoded
        Path(out, f"rank{rank}.json").write_text(json.dumps(decoded))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_ranks_decode_the_same_branch_in_every_step(tmp_path):
    # fork: the ranks start without re-importing torch (seconds each on a busy 2-core machine)
    mp.start_processes(_rank, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="fork")
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert len(runs[0]["batch"]) == 4 and len(runs[0]["epoch"]) == 6
    assert runs[0] == runs[1]
    # both branches occur in each mode, so the agreement is not that of a constant switch
    assert len(set(runs[0]["batch"])) == 2 and len(set(runs[0]["epoch"])) == 2
