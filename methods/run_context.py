"""What a method needs from the run that trains it: device, seed, checkpoint folder, progress, log channel.

Its own module so that both the Method base class and the training loop use it
without importing each other's modules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """What a method needs from the run that trains it.

    Args:
        device: where to train.
        seed: the run seed (python, numpy and torch are seeded from it per epoch).
        checkpoint_dir: folder for ``last.pt``; None disables checkpoints and resume.
        progress: show progress bars.
        logger_name: logging channel for per-epoch lines (the runner routes it to the run log).
    """

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    checkpoint_dir: Path | None = None
    progress: bool = True
    logger_name: str = "ssl3d.train"
