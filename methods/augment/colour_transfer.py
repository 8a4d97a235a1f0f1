r"""Colour-transfer augmentation of CMIC (Lin et al., ICCV 2021, Sec. 3.1-3.2, Eq. 1-3).

Every query image takes the colour statistics of another query of the mini-batch (Reinhard et al.,
"Color Transfer between Images", IEEE CG&A 2001: per-channel mean and deviation matched in
:math:`l\alpha\beta` space), so the query encoder cannot rely on colour. Where this differs from
the paper and the released code (masked statistics, :math:`\sigma_s/\sigma_t`, a derangement):
docs/methods.md#cmic
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ssl3d.methods.augment.image_checks import binary_mask, check_image, check_image_batch

__all__ = [
    "rgb_to_lab",
    "lab_to_rgb",
    "colour_transfer",
    "random_derangement",
    "batch_colour_transfer",
]

# Reinhard et al. 2001, Eq. (1): linear RGB -> LMS cone space.
_RGB_TO_LMS = torch.tensor(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]],
    dtype=torch.float64,
)
# The paper prints a rounded LMS -> RGB matrix whose product with the forward
# matrix is off the identity by up to 7e-3; the exact inverse makes the round
# trip lossless, so it is used instead.
_LMS_TO_RGB = torch.linalg.inv(_RGB_TO_LMS)
# Reinhard et al. 2001, Eq. (4) and (6): log-LMS <-> l-alpha-beta.
_LOGLMS_TO_LAB = torch.diag(
    torch.tensor([1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)], dtype=torch.float64)
) @ torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]], dtype=torch.float64)
_LAB_TO_LOGLMS = torch.linalg.inv(_LOGLMS_TO_LAB)

DEFAULT_EPS = 1e-3


def _apply_matrix(mat: Tensor, img: Tensor) -> Tensor:
    # Mix along the channel axis (-3) for both [3,H,W] and [B,3,H,W].
    return torch.einsum("ij,...jhw->...ihw", mat.to(img.device, img.dtype), img)


def rgb_to_lab(img: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    r"""Converts RGB images to Ruderman's :math:`l\alpha\beta` space, following
    Reinhard et al. (2001), Eq. (1), (4)-(6):

    .. math::
        \begin{bmatrix}L\\M\\S\end{bmatrix} =
        \begin{bmatrix}0.3811 & 0.5783 & 0.0402\\ 0.1967 & 0.7244 & 0.0782\\
        0.0241 & 0.1288 & 0.8444\end{bmatrix}
        \begin{bmatrix}R\\G\\B\end{bmatrix},\qquad
        \mathbf{L} = \log_{10}(L + \epsilon),\ \dots

        \begin{bmatrix}l\\ \alpha\\ \beta\end{bmatrix} =
        \begin{bmatrix}1/\sqrt3 & 0 & 0\\ 0 & 1/\sqrt6 & 0\\ 0 & 0 & 1/\sqrt2\end{bmatrix}
        \begin{bmatrix}1 & 1 & 1\\ 1 & 1 & -2\\ 1 & -1 & 0\end{bmatrix}
        \begin{bmatrix}\mathbf{L}\\ \mathbf{M}\\ \mathbf{S}\end{bmatrix}

    The RGB -> LMS matrix is Reinhard's (which folds RGB -> XYZ -> LMS into one
    step).  :math:`\epsilon` is added before the logarithm so that black
    (LMS = 0) stays finite; it is added (rather than clamped) so that
    :func:`lab_to_rgb` inverts this function exactly, and it is not tiny (1e-3)
    so that pure-black pixels do not become outliers that dominate the
    channel statistics of :func:`colour_transfer`.

    Args:
        img (torch.Tensor): RGB image(s) in :math:`[0, 1]`.
        eps (float, optional): offset added to LMS before :math:`\log_{10}`.
            (default: :obj:`1e-3`)

    Returns:
        torch.Tensor: the :math:`(l, \alpha, \beta)` channels.

    Shapes:
        - **input:** :math:`(3, H, W)` or :math:`(B, 3, H, W)`
        - **output:** same as input
    """
    check_image(img, "img")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    lms = _apply_matrix(_RGB_TO_LMS, img).clamp_min(0.0)
    return _apply_matrix(_LOGLMS_TO_LAB, torch.log10(lms + eps))


def lab_to_rgb(lab: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    r"""Inverse of :func:`rgb_to_lab` (Reinhard et al. 2001, Eq. (6) inverted,
    :math:`10^x - \epsilon`, then LMS -> RGB), clamped to :math:`[0, 1]`.

    .. math::
        \begin{bmatrix}\mathbf{L}\\ \mathbf{M}\\ \mathbf{S}\end{bmatrix} =
        \begin{bmatrix}1 & 1 & 1\\ 1 & 1 & -1\\ 1 & -2 & 0\end{bmatrix}
        \begin{bmatrix}\sqrt3/3 & 0 & 0\\ 0 & \sqrt6/6 & 0\\ 0 & 0 & \sqrt2/2\end{bmatrix}
        \begin{bmatrix}l\\ \alpha\\ \beta\end{bmatrix},\qquad
        \begin{bmatrix}R\\G\\B\end{bmatrix} = M_{\mathrm{LMS}\to\mathrm{RGB}}
        \begin{bmatrix}10^{\mathbf{L}}-\epsilon\\ \vdots\end{bmatrix}

    Reinhard et al. print :math:`M_{\mathrm{LMS}\to\mathrm{RGB}}` rounded as
    ``[[4.4679, -3.5873, 0.1193], [-1.2186, 2.3809, -0.1624],
    [0.0497, -0.2439, 1.2045]]``; that matrix is only approximately the inverse
    of the forward one (error up to 7e-3), so the exact inverse
    ``[[4.4687, -3.5887, 0.1196], [-1.2197, 2.3831, -0.1626],
    [0.0585, -0.2611, 1.2057]]`` is used to make the round trip lossless.

    Args:
        lab (torch.Tensor): :math:`(l, \alpha, \beta)` image(s).
        eps (float, optional): the offset used by :func:`rgb_to_lab`.
            (default: :obj:`1e-3`)

    Returns:
        torch.Tensor: RGB image(s) clamped to :math:`[0, 1]`.

    Shapes:
        - **input:** :math:`(3, H, W)` or :math:`(B, 3, H, W)`
        - **output:** same as input
    """
    check_image(lab, "lab")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    lms = torch.pow(10.0, _apply_matrix(_LAB_TO_LOGLMS, lab)) - eps
    return _apply_matrix(_LMS_TO_RGB, lms).clamp(0.0, 1.0)


def _masked_stats(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel mean, population std and pixel count inside ``keep``."""
    w = keep.to(x.dtype)
    n = w.sum(dim=(-2, -1), keepdim=True)
    denom = n.clamp_min(1.0)
    mean = (x * w).sum(dim=(-2, -1), keepdim=True) / denom
    var = (((x - mean) ** 2) * w).sum(dim=(-2, -1), keepdim=True) / denom
    return mean, var.sqrt(), n


def colour_transfer(
    target: Tensor,
    source: Tensor,
    target_mask: Optional[Tensor] = None,
    source_mask: Optional[Tensor] = None,
    eps: float = DEFAULT_EPS,
) -> Tensor:
    r"""Recolours ``target`` with the colour statistics of ``source``
    (CMIC Section 3.1, Eq. (1); Reinhard et al. 2001, Eq. (7)-(8)):

    .. math::
        c' = \frac{\sigma_s^c}{\sigma_t^c}\,(c - \mu_t^c) + \mu_s^c,
        \qquad c \in \{l, \alpha, \beta\},

    with means :math:`\mu` and population standard deviations :math:`\sigma`
    computed inside the masks (our interpretation; CMIC does not say),
    :math:`t` the target (geometry) image and :math:`s` the source (colour)
    image.  CMIC's Eq. (1) prints the ratio as :math:`\sigma_t/\sigma_s`,
    which would not give the result the source's spread; Reinhard's (and the
    released code's) :math:`\sigma_s/\sigma_t` is implemented.

    Only pixels inside ``target_mask`` change; the background is returned
    bit-for-bit.  An image whose target or source mask is empty is returned
    unchanged; a flat target channel (:math:`\sigma_t = 0`) takes the source
    mean.  Masks are binarised at 0.5.  The result is clamped to :math:`[0, 1]`.

    Args:
        target (torch.Tensor): image(s) to recolour, RGB in :math:`[0, 1]`.
        source (torch.Tensor): image(s) providing the colours (same batch
            shape as ``target``; the spatial size may differ).
        target_mask (torch.Tensor, optional): object mask of ``target``;
            :obj:`None` means the whole image. (default: :obj:`None`)
        source_mask (torch.Tensor, optional): object mask of ``source``;
            :obj:`None` means the whole image. (default: :obj:`None`)
        eps (float, optional): log offset of :func:`rgb_to_lab`.
            (default: :obj:`1e-3`)

    Returns:
        torch.Tensor: the recoloured target.

    Shapes:
        - **target:** :math:`(3, H, W)` or :math:`(B, 3, H, W)`
        - **source:** :math:`(3, H', W')` or :math:`(B, 3, H', W')`
        - **target_mask:** :math:`(H, W)` or :math:`(B, H, W)`
        - **source_mask:** :math:`(H', W')` or :math:`(B, H', W')`
        - **output:** same as ``target``
    """
    check_image(target, "target")
    check_image(source, "source")
    if target.shape[:-3] != source.shape[:-3]:
        raise ValueError(f"target and source must have the same batch shape, got "
                         f"{tuple(target.shape)} and {tuple(source.shape)}")
    t_keep = binary_mask(target_mask, target, "target_mask")
    s_keep = binary_mask(source_mask, source, "source_mask")

    t_lab = rgb_to_lab(target, eps)
    s_lab = rgb_to_lab(source.to(target.device, target.dtype), eps)
    t_mean, t_std, t_n = _masked_stats(t_lab, t_keep)
    s_mean, s_std, s_n = _masked_stats(s_lab, s_keep.to(target.device))

    # A flat target channel has nothing to scale; its deviation is 0 anyway.
    scale = s_std / t_std.clamp_min(1e-12)
    out = lab_to_rgb((t_lab - t_mean) * scale + s_mean, eps)
    valid = (t_n > 0) & (s_n > 0)
    return torch.where(t_keep & valid, out, target)


def random_derangement(
    n: int,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    r"""A uniformly random permutation of :math:`\{0,\dots,n-1\}` without fixed
    points (:math:`\pi(i) \ne i`), by rejection sampling of ``randperm``
    (about :math:`e \approx 2.72` draws on average).

    For :math:`n = 1` no derangement exists and the identity ``[0]`` is
    returned; :math:`n = 0` gives an empty tensor.

    Args:
        n (int): number of elements, :math:`\geq 0`.
        generator (torch.Generator, optional): CPU generator for
            reproducibility. (default: :obj:`None`, the global RNG)
        device (torch.device, optional): device of the result.

    Returns:
        torch.Tensor: ``int64`` permutation.

    Shapes:
        - **output:** :math:`(n,)`
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n <= 1:
        return torch.arange(n, device=device)
    ar = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == ar).any()):
            return perm.to(device)


def batch_colour_transfer(
    images: Tensor,
    masks: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""CMIC's in-batch colour augmentation (Section 3.2): image :math:`i` takes
    the colours of image :math:`\pi(i)` of the same batch, with :math:`\pi`
    from :func:`random_derangement` so that no image is paired with itself.
    A batch of one is returned unchanged (no other image to borrow from).

    Args:
        images (torch.Tensor): RGB query images in :math:`[0, 1]`.
        masks (torch.Tensor, optional): object masks; statistics are taken and
            colours replaced only inside them. (default: :obj:`None`)
        generator (torch.Generator, optional): CPU generator drawing
            :math:`\pi`. (default: :obj:`None`)

    Returns:
        torch.Tensor: the recoloured images.

    Shapes:
        - **images:** :math:`(B, 3, H, W)`
        - **masks:** :math:`(B, H, W)`
        - **output:** :math:`(B, 3, H, W)`
    """
    check_image_batch(images, "images")
    perm = random_derangement(images.shape[0], generator, images.device)
    if images.shape[0] <= 1:
        return images.clone()
    src_masks = None if masks is None else masks[perm]
    return colour_transfer(images, images[perm], masks, src_masks)
