"""Argument checks shared by the image augmentations: RGB image tensors and object masks."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["binary_mask", "check_image", "check_image_batch"]


def check_image(img: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``img`` is a floating-point ``[3, H, W]`` or ``[B, 3, H, W]`` tensor."""
    if not torch.is_tensor(img) or not img.is_floating_point():
        got = img.dtype if torch.is_tensor(img) else type(img).__name__
        raise ValueError(f"{name} must be a floating-point tensor, got {got}")
    if img.dim() not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"{name} must have shape [3, H, W] or [B, 3, H, W], got {tuple(img.shape)}")


def check_image_batch(images: Tensor, name: str) -> None:
    """:func:`check_image`, and the tensor must be a batch ``[B, 3, H, W]`` (batch-level augmentations)."""
    check_image(images, name)
    if images.dim() != 4:
        raise ValueError(f"{name} must be batched [B, 3, H, W], got {tuple(images.shape)}")


def binary_mask(mask: Optional[Tensor], img: Tensor, name: str) -> Tensor:
    """Boolean mask of shape [..., 1, H, W] broadcastable against ``img``."""
    if mask is None:
        return torch.ones(img.shape[:-3] + (1,) + img.shape[-2:], dtype=torch.bool, device=img.device)
    if not torch.is_tensor(mask) or mask.shape != img.shape[:-3] + img.shape[-2:]:
        got = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(f"{name} must have shape {tuple(img.shape[:-3] + img.shape[-2:])} "
                         f"(the image's batch and spatial dims), got {got}")
    # Soft masks are binarised: statistics and replacement need a hard region.
    keep = mask if mask.dtype == torch.bool else mask > 0.5
    return keep.to(img.device).unsqueeze(-3)
