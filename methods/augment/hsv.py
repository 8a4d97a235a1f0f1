r"""HSV colour jitter: the alternative to colour transfer in CMIC's Table 2 (the ``cmic-hsv`` ablation).

The conversions follow Python's :mod:`colorsys` (all channels in :math:`[0, 1]`,
hue as a fraction of the circle); :func:`hsv_jitter` changes hue, saturation
and value inside the object masks.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ssl3d.methods.augment.image_checks import binary_mask, check_image, check_image_batch

__all__ = ["rgb_to_hsv", "hsv_to_rgb", "hsv_jitter"]


def rgb_to_hsv(img: Tensor) -> Tensor:
    r"""RGB -> HSV with all channels in :math:`[0, 1]` (hue as a fraction of
    the circle, hue 0 for grey), as in Python's :mod:`colorsys`.

    Shapes:
        - **input:** :math:`(3, H, W)` or :math:`(B, 3, H, W)`
        - **output:** same as input
    """
    check_image(img, "img")
    r, g, b = img.unbind(-3)
    maxc, argmax = img.max(dim=-3)
    minc = img.min(dim=-3).values
    delta = maxc - minc
    d = delta.clamp_min(1e-12)
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    # Sector formula picked by which channel is the maximum.
    h = torch.where(argmax == 0, (g - b) / d,
                    torch.where(argmax == 1, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc], dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    r"""HSV -> RGB, inverse of :func:`rgb_to_hsv`.

    Shapes:
        - **input:** :math:`(3, H, W)` or :math:`(B, 3, H, W)`
        - **output:** same as input
    """
    check_image(hsv, "hsv")
    h, s, v = hsv.unbind(-3)
    # Piecewise-linear channel ramps: c_k = v - v*s*clamp(min(k', 4-k'), 0, 1).
    k = torch.stack([(5.0 + h * 6.0), (3.0 + h * 6.0), (1.0 + h * 6.0)], dim=-3) % 6.0
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v.unsqueeze(-3) - (v * s).unsqueeze(-3) * ramp


def hsv_jitter(
    images: Tensor,
    masks: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    hue: float = 0.5,
    saturation: float = 0.5,
    value: float = 0.3,
    p: float = 0.5,
) -> Tensor:
    r"""HSV colour jitter, the alternative to colour transfer in CMIC's Table 2
    (Section 4.3: "performed with 0.5 probability to change hue, saturation
    and value ... randomly").  With probability ``p`` an image gets

    .. math::
        h' = (h + \delta_h) \bmod 1,\quad s' = \min(1, s\,f_s),\quad
        v' = \min(1, v\,f_v),

    :math:`\delta_h \sim U[-\text{hue}, \text{hue}]`,
    :math:`f_s \sim U[1-\text{saturation}, 1+\text{saturation}]`,
    :math:`f_v \sim U[1-\text{value}, 1+\text{value}]`, one draw per image.
    The paper gives no ranges; the defaults are ours (full hue circle, so the
    ablation is as colour-agnostic as colour transfer).  Only pixels inside
    the mask change.

    Args:
        images (torch.Tensor): RGB images in :math:`[0, 1]`.
        masks (torch.Tensor, optional): object masks. (default: :obj:`None`)
        generator (torch.Generator, optional): CPU generator. (default: :obj:`None`)
        hue (float, optional): max hue shift, in :math:`[0, 0.5]`. (default: :obj:`0.5`)
        saturation (float, optional): saturation factor spread, in :math:`[0, 1]`.
            (default: :obj:`0.5`)
        value (float, optional): value factor spread, in :math:`[0, 1]`.
            (default: :obj:`0.3`)
        p (float, optional): probability of jittering an image, in :math:`[0, 1]`.
            (default: :obj:`0.5`)

    Returns:
        torch.Tensor: jittered images.

    Shapes:
        - **images:** :math:`(B, 3, H, W)`
        - **masks:** :math:`(B, H, W)`
        - **output:** :math:`(B, 3, H, W)`
    """
    check_image_batch(images, "images")
    limits = {"hue": (hue, 0.5), "saturation": (saturation, 1.0), "value": (value, 1.0), "p": (p, 1.0)}
    for name, (val, hi) in limits.items():
        if not 0.0 <= val <= hi:
            raise ValueError(f"{name} must be in [0, {hi}], got {val}")
    keep = binary_mask(masks, images, "masks")
    b = images.shape[0]
    u = torch.rand(4, b, generator=generator, dtype=torch.float64)
    apply = (u[0] < p).to(images.device)

    def _per_image(x: Tensor) -> Tensor:
        return x.to(images.device, images.dtype).view(b, 1, 1)

    dh = _per_image((2.0 * u[1] - 1.0) * hue)
    fs = _per_image(1.0 + (2.0 * u[2] - 1.0) * saturation)
    fv = _per_image(1.0 + (2.0 * u[3] - 1.0) * value)
    h, s, v = rgb_to_hsv(images).unbind(-3)
    hsv = torch.stack([torch.remainder(h + dh, 1.0), (s * fs).clamp(0, 1), (v * fv).clamp(0, 1)], dim=-3)
    out = hsv_to_rgb(hsv)
    return torch.where(keep & apply.view(b, 1, 1, 1), out, images)
