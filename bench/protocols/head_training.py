"""One supervised optimisation step, shared by the protocols that train heads (or fine-tune encoders)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["check_labels", "cross_entropy_step"]


def check_labels(target: torch.Tensor, num_classes: int, what: str) -> None:
    """Refuse labels outside ``[0, num_classes)`` (a wrong label would index past the logits silently on CPU)."""
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"{what} outside [0, {num_classes}): min {int(target.min())}, max {int(target.max())}")


def cross_entropy_step(optimizer: torch.optim.Optimizer, logits: torch.Tensor, target: torch.Tensor,
                       what: str) -> float:
    """Mean cross-entropy of ``logits`` [..., C] against ``target`` [...]: one step, the loss returned.

    A non-finite loss raises (naming ``what``) before the weights are touched.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} training loss is not finite")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
