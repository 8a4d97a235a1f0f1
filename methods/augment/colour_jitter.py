r"""Brightness / contrast / saturation jitter with torchvision's ``ColorJitter`` semantics (CrossPoint's image view).

CrossPoint (Afham et al., CVPR 2022; the released ``train_crosspoint.py``) jitters every rendered
view with ``ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)``: three factors
:math:`f \sim U[\max(0, 1 - s), 1 + s]` applied in a random order, each a blend clamped to
:math:`[0, 1]`:

* brightness: :math:`x' = f x` (a blend with black);
* contrast: :math:`x' = f x + (1 - f)\,\bar g` with :math:`\bar g` the mean grey level of the image;
* saturation: :math:`x' = f x + (1 - f)\,g` with :math:`g` the grey image (BT.601 weights), which
  leaves a one-channel image unchanged.

:func:`adjust_images` applies given factors and orders (tested by hand); :func:`colour_jitter` draws
them from torch's global generator, one draw per image.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["adjust_images", "colour_jitter"]

#: BT.601 luma weights, torchvision's ``rgb_to_grayscale``
LUMA = (0.299, 0.587, 0.114)
#: the operations, in the column order of ``factors``
OPERATIONS = ("brightness", "contrast", "saturation")


def _grey(images: Tensor) -> Tensor:
    """Grey level [B, 1, H, W] of images with 1 or 3 channels."""
    if images.shape[1] == 1:
        return images
    return (images * images.new_tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _apply(images: Tensor, op: int, f: Tensor) -> Tensor:
    if op == 0:
        return (images * f).clamp(0, 1)
    if op == 1:
        anchor = _grey(images).mean(dim=(1, 2, 3), keepdim=True)
    else:
        anchor = _grey(images)
    return (f * images + (1 - f) * anchor).clamp(0, 1)


def adjust_images(images: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    r"""Apply brightness, contrast and saturation factors in a per-image order.

    Args:
        images: float images in :math:`[0, 1]` with 1 (grey) or 3 (RGB) channels.
        factors: per image, the factors of (brightness, contrast, saturation).
        order: per image, a permutation of ``0, 1, 2`` (indices into :data:`OPERATIONS`): the
            operation applied first, second, third.

    Shapes:
        - **images:** :math:`(B, C, H, W)`, **factors:** :math:`(B, 3)`, **order:** :math:`(B, 3)`
        - **output:** :math:`(B, C, H, W)`
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, C, H, W] with C = 1 or 3; got {tuple(images.shape)}")
    b = images.shape[0]
    if factors.shape != (b, 3) or order.shape != (b, 3):
        raise ValueError(f"factors and order must be [B, 3] = [{b}, 3]; "
                         f"got {tuple(factors.shape)}, {tuple(order.shape)}")
    if not torch.equal(order.sort(dim=1).values.cpu(), torch.arange(3).expand(b, 3)):
        raise ValueError("every row of order must be a permutation of 0, 1, 2")
    f = factors.to(images.device, images.dtype).view(b, 3, 1, 1, 1)
    order = order.to(images.device)
    out = images
    for step in range(3):
        chosen = order[:, step].view(b, 1, 1, 1)
        # every image's own operation at this step: compute all three and keep the chosen one
        out = sum(torch.where(chosen == op, _apply(out, op, f[:, op]), 0.0) for op in range(3))
    return out


def colour_jitter(images: Tensor, brightness: float, contrast: float, saturation: float) -> Tensor:
    """torchvision ``ColorJitter(brightness, contrast, saturation)`` on a batch, an independent draw per image.

    Shapes:
        - **images:** :math:`(B, C, H, W)`, C = 1 or 3, values in :math:`[0, 1]` -> same
    """
    spreads = torch.tensor([brightness, contrast, saturation], dtype=torch.float64)
    if not bool((spreads >= 0).all()):
        raise ValueError(f"jitter strengths must be >= 0; got {spreads.tolist()}")
    b = images.shape[0]
    low = (1 - spreads).clamp(min=0)
    factors = low + (1 + spreads - low) * torch.rand(b, 3, dtype=torch.float64)
    order = torch.rand(b, 3).argsort(dim=1)
    return adjust_images(images, factors, order)
