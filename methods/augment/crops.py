"""Image crops and horizontal flips: CM-CV's random square crops and centre crops, CMIC's random resized crops.

The random ones draw from torch's global generator, which the trainer re-seeds
every epoch, so a run seed gives the same crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["center_crop", "random_crop_flip", "random_resized_crop_flip"]


def random_crop_flip(images: Tensor, size: int, flip_prob: float) -> Tensor:
    """Independent random ``size`` x ``size`` crops, each flipped horizontally with ``flip_prob``.

    Shapes:
        - **images:** :math:`(B, C, H, W)` -> :math:`(B, C, size, size)`
    """
    b, _, h, w = images.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the image size {h}x{w}")
    dev = images.device
    top = torch.randint(h - size + 1, (b,), device=dev)
    left = torch.randint(w - size + 1, (b,), device=dev)
    flip = torch.rand(b, device=dev) < flip_prob
    ar = torch.arange(size, device=dev)
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)  # flipping = reading columns backwards
    rows = top[:, None] + ar
    out = images[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # advanced indices come first: [B, size, size, C]


def center_crop(images: Tensor, size: int) -> Tensor:
    """The central ``size`` x ``size`` window of images :math:`(..., H, W)`."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the image size {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def random_resized_crop_flip(images: Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                             flip_prob: float) -> Tensor:
    r"""One random resized crop + horizontal flip per image, resampled to the input size.

    A crop of area fraction :math:`s \sim U(\text{scale})` and aspect ratio
    :math:`r = e^{u}`, :math:`u \sim U(\log \text{ratio})` has half-extents
    :math:`w = \min(1, \sqrt{s r})`, :math:`h = \min(1, \sqrt{s / r})` in
    normalised coordinates and a centre uniform in :math:`[-(1-w), 1-w] \times
    [-(1-h), 1-h]`; the output pixel :math:`(x, y)` samples the input at
    :math:`(\pm w x + c_x,\ h y + c_y)` (bilinear, sign :math:`-` when flipped).
    All channels share the transform, so pass image and mask concatenated.
    Randomness: torch's global generator (drawn on the CPU).

    Shapes:
        - **images:** :math:`(B, C, H, W)` -> :math:`(B, C, H, W)`
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W]; got {tuple(images.shape)}")
    b = images.shape[0]
    u = torch.rand(b, 5, dtype=torch.float64)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_lo, log_hi = torch.log(torch.tensor(ratio, dtype=torch.float64))
    r = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w, h = torch.sqrt(s * r).clamp(max=1.0), torch.sqrt(s / r).clamp(max=1.0)
    cx, cy = (2 * u[:, 2] - 1) * (1 - w), (2 * u[:, 3] - 1) * (1 - h)
    sign = torch.where(u[:, 4] < flip_prob, -1.0, 1.0).to(torch.float64)
    zero = torch.zeros_like(w)
    theta = torch.stack([sign * w, zero, cx, zero, h, cy], dim=1).view(b, 2, 3)
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
