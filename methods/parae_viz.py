r"""Figure 3-style pictures of ParAE's mixture :math:`\Theta` (Eckart et al., CVPR 2021, Sec. 4.2, Fig. 3 top).

:func:`plot_partitions` draws the points coloured by their most likely partition and each
component's 1-sigma ellipsoid (:func:`ellipsoid_surface`).
What the figure shows: docs/methods.md#plotting-the-mixture-fig-3
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from ssl3d.core.io import atomic_path

if TYPE_CHECKING:
    from ssl3d.methods.parae import ParAE

__all__ = ["ellipsoid_surface", "partition_colours", "plot_partitions"]


def ellipsoid_surface(mu: np.ndarray, sigma: np.ndarray, scale: float = 1.0,
                      resolution: int = 16) -> np.ndarray:
    r"""Points of the ``scale``-sigma iso-contour of :math:`\mathcal{N}(\mu, \Sigma)` on a lat-long grid.

    Args:
        mu: the mean :math:`\mu`.
        sigma: the covariance :math:`\Sigma` (symmetric positive semi-definite;
            negative rounding-error eigenvalues are clipped to 0).
        scale: the Mahalanobis radius :math:`s` of the surface.
        resolution: grid steps in latitude (longitude gets twice as many).

    Returns:
        Surface points :math:`\mathbf{x}` with
        :math:`(\mathbf{x} - \mu)^\top \Sigma^{-1} (\mathbf{x} - \mu) = s^2`.

    Shapes:
        - **mu:** :math:`(3,)`
        - **sigma:** :math:`(3, 3)`
        - **output:** :math:`(R + 1, 2R + 1, 3)` for ``resolution`` :math:`R`
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.shape != (3,) or sigma.shape != (3, 3):
        raise ValueError(f"mu must be (3,) and sigma (3, 3); got {mu.shape} and {sigma.shape}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2; got {resolution}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    evals, evecs = np.linalg.eigh(0.5 * (sigma + sigma.T))
    axes = evecs * (scale * np.sqrt(np.clip(evals, 0.0, None)))  # column k = k-th semi-axis
    theta = np.linspace(0.0, np.pi, resolution + 1)[:, None]
    phi = np.linspace(0.0, 2.0 * np.pi, 2 * resolution + 1)[None, :]
    unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                     np.cos(theta) * np.ones_like(phi)], axis=-1)
    return mu + unit @ axes.T


def partition_colours(num: int) -> np.ndarray:
    """``num`` distinct RGBA colours (matplotlib's qualitative tab20, tab20b, tab20c, cycled).

    Shapes:
        - **output:** :math:`(num, 4)`
    """
    import matplotlib

    table = np.concatenate([matplotlib.colormaps[name].colors for name in ("tab20", "tab20b", "tab20c")])
    rgb = table[np.arange(num) % len(table)]
    return np.concatenate([rgb, np.ones((num, 1))], axis=1)


def _up_is_z(xyz: np.ndarray) -> np.ndarray:
    # +Y up -> matplotlib's +Z up: (x, y, z) -> (x, -z, y), a rotation (det = +1)
    return np.stack([xyz[..., 0], -xyz[..., 2], xyz[..., 1]], axis=-1)


def plot_partitions(method: "ParAE", points: Tensor, path: str | os.PathLike[str], *,
                    min_weight: float | None = None, title: str | None = None,
                    elev: float = 20.0, azim: float = -60.0, dpi: int = 120) -> Path:
    r"""Write a PNG of one cloud's partitions and mixture components (Fig. 3 top).

    Args:
        method: a pretrained :class:`~ssl3d.methods.parae.ParAE` (either backbone).
        points: one cloud in the benchmark frame (+Y up).
        path: the PNG to write (written to a temporary name, then renamed).
        min_weight: components with :math:`\pi_j` below this are not drawn
            (default :math:`1 / (10 J)`: nearly empty partitions would only
            add clutter).
        title: figure title (default: the method name and the NLL).
        elev: camera elevation in degrees.
        azim: camera azimuth in degrees.
        dpi: resolution.

    Returns:
        The path written.

    Shapes:
        - **points:** :math:`(N, 3)` or :math:`(1, N, 3)`
    """
    # a bare Figure (no pyplot): no global backend switch, nothing left open
    from matplotlib.figure import Figure

    from ssl3d.methods.losses.gmm import gmm_log_likelihood

    if points.dim() == 3 and points.shape[0] == 1:
        points = points[0]
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be one cloud [N, 3] (or [1, N, 3]); got {tuple(points.shape)}")
    cloud = points.detach().float().cpu()[None]
    logits, params = method.mixture(cloud)
    nll = float(-gmm_log_likelihood(cloud, params).mean())
    num = logits.shape[-1]
    if min_weight is None:
        min_weight = 1.0 / (10 * num)
    colours = partition_colours(num)
    xyz = _up_is_z(cloud[0].numpy())
    owner = logits[0].argmax(dim=-1).numpy()
    pi, mu, sigma = (t[0].double().numpy() for t in params)

    fig = Figure(figsize=(10, 5), dpi=dpi)
    shown = int((pi >= min_weight).sum())
    fig.suptitle(title if title is not None else
                 f"{method.name}: NLL {nll:.3f} nats/point, {shown}/{num} components with pi >= {min_weight:.3g}")
    left = fig.add_subplot(1, 2, 1, projection="3d")
    left.scatter(*xyz.T, c=colours[owner], s=4, depthshade=False)
    left.set_title("points by argmax partition")
    right = fig.add_subplot(1, 2, 2, projection="3d")
    right.scatter(*xyz.T, c="0.6", s=1, alpha=0.3, depthshade=False)
    for j in np.argsort(-pi):
        if pi[j] < min_weight:
            break
        surface = _up_is_z(ellipsoid_surface(mu[j], sigma[j]))
        right.plot_surface(surface[..., 0], surface[..., 1], surface[..., 2], color=colours[j],
                           alpha=0.35, linewidth=0, shade=True)
    right.set_title("1-sigma ellipsoids of the Gaussians")
    # frame the cloud (equal scale on all axes, so ellipsoids keep their shape)
    centre = 0.5 * (xyz.max(axis=0) + xyz.min(axis=0))
    half = 0.55 * float((xyz.max(axis=0) - xyz.min(axis=0)).max()) or 1.0
    for ax in (left, right):
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.set_box_aspect((1, 1, 1), zoom=1.3)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.88, wspace=0.0)
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target
