"""Seeding: every random generator a run touches, from one integer.

The training loop re-seeds at every epoch from ``(run seed, epoch)`` (see
:func:`epoch_seed`), so an epoch depends only on the state it starts from and a
resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), stable across processes."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63
