"""SwitchVAE's latent-space figures (Wu et al., TMM 2023, Sec. 4.4): interpolation (Fig. 6), shape arithmetic (Fig. 7).

Both write PNG grids of decoded occupancy grids, drawn as their exposed voxel faces with Lambertian
shading in matplotlib (no scikit-image needed), +Y vertical.
Usage: docs/methods.md#exploring-the-latent-space-sec-44-figs-6-7
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ssl3d.core.io import atomic_path

__all__ = [
    "arithmetic_latent", "interpolate_latents", "latent_interpolation", "save_panel_grid",
    "shape_arithmetic", "voxel_faces",
]

_LIGHT = np.array([0.4, -0.5, 0.75]) / np.linalg.norm([0.4, -0.5, 0.75])  # in display coordinates
# grid [x, y, z] (y up) -> display (x, -z, y): a rotation about x that puts +Y on matplotlib's vertical axis
_TO_DISPLAY = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)


def interpolate_latents(z_a: Tensor, z_b: Tensor, steps: int = 8) -> Tensor:
    r"""Linear interpolation :math:`z_t = (1 - t) z_a + t z_b`, :math:`t = 0, \frac{1}{S-1}, \ldots, 1`.

    Args:
        z_a: start latent.
        z_b: end latent.
        steps: number of latents :math:`S \ge 2` (both ends included).

    Returns:
        The latents, row :math:`i` at :math:`t = i / (S - 1)`.

    Shapes:
        - **z_a**, **z_b**: :math:`(D,)`
        - **output**: :math:`(S, D)`
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (both ends are included); got {steps}")
    if z_a.shape != z_b.shape or z_a.dim() != 1:
        raise ValueError(f"z_a and z_b must be vectors of the same size; got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    t = torch.linspace(0.0, 1.0, steps, dtype=z_a.dtype, device=z_a.device)[:, None]
    return (1 - t) * z_a + t * z_b


def arithmetic_latent(z_a: Tensor, z_b: Tensor, z_c: Tensor) -> Tensor:
    r"""Shape arithmetic :math:`z_a - z_b + z_c` (e.g. "armchair - chair + table").

    Shapes:
        - **z_a**, **z_b**, **z_c**, **output**: :math:`(D,)` (or any common shape)
    """
    if not (z_a.shape == z_b.shape == z_c.shape):
        raise ValueError(f"latents must share a shape; got {tuple(z_a.shape)}, {tuple(z_b.shape)}, {tuple(z_c.shape)}")
    return z_a - z_b + z_c


def voxel_faces(grid: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    r"""The exposed faces of the occupied voxels of a grid (faces between an occupied and an empty cell).

    Voxel :math:`(i, j, k)` is the unit cube :math:`[i, i+1] \times [j, j+1] \times [k, k+1]`;
    cells outside the grid count as empty.

    Args:
        grid: occupancy probabilities or {0, 1}; a cell is occupied when ``>= threshold``.
        threshold: occupancy threshold.

    Returns:
        ``(quads, normals)``: corner coordinates of each face in grid coordinates and its outward unit normal.

    Shapes:
        - **grid:** :math:`(R, R, R)`
        - **quads:** :math:`(F, 4, 3)`; **normals:** :math:`(F, 3)`
    """
    grid = np.asarray(grid)
    if grid.ndim != 3:
        raise ValueError(f"grid must be 3-D [R, R, R]; got shape {grid.shape}")
    occ = np.pad(grid >= threshold, 1)
    quads, normals = [], []
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for sign in (-1, 1):
            neighbour = np.roll(occ, -sign, axis=axis)
            idx = np.argwhere(occ & ~neighbour) - 1  # back to unpadded indices
            if len(idx) == 0:
                continue
            corners = np.repeat(idx[:, None, :].astype(float), 4, axis=1)
            corners[:, :, axis] += 1.0 if sign > 0 else 0.0
            corners[:, :, others] += square[None]
            normal = np.zeros(3)
            normal[axis] = sign
            quads.append(corners)
            normals.append(np.repeat(normal[None], len(idx), axis=0))
    if not quads:
        return np.zeros((0, 4, 3)), np.zeros((0, 3))
    return np.concatenate(quads), np.concatenate(normals)


def _draw_voxels(ax, grid: np.ndarray, threshold: float, color: Sequence[float]) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    res = grid.shape[0]
    quads, normals = voxel_faces(grid, threshold)
    if len(quads):
        shown = quads @ _TO_DISPLAY.T
        shade = 0.35 + 0.65 * np.clip((normals @ _TO_DISPLAY.T) @ _LIGHT, 0.0, 1.0)
        colors = np.clip(np.asarray(color)[None, :3] * shade[:, None], 0.0, 1.0)
        ax.add_collection3d(Poly3DCollection(shown, facecolors=colors, edgecolors="none"))
    else:  # say so, rather than leave a blank that looks like a drawing bug
        ax.text2D(0.5, 0.5, f"(no voxel >= {threshold:g})", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set_xlim(0, res)
    ax.set_ylim(-res, 0)
    ax.set_zlim(0, res)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()


def save_panel_grid(
    panels: Sequence[Sequence[np.ndarray | Tensor | None]],
    path: str | os.PathLike[str],
    titles: Sequence[Sequence[str]] | None = None,
    threshold: float = 0.5,
    panel_size: float = 2.0,
    color: Sequence[float] = (0.35, 0.55, 0.85),
) -> Path:
    r"""Write a PNG grid of panels: 3-D arrays are drawn as voxel grids, 2-D arrays as grey images.

    Args:
        panels: rows of panels; ``None`` leaves a cell empty.
        path: the PNG to write (atomically: temporary file, then rename).
        titles: a title per panel (same nesting as ``panels``).
        threshold: occupancy threshold of voxel panels.
        panel_size: inches per panel.
        color: RGB base colour of voxel faces.

    Returns:
        The written path.

    Shapes:
        - **voxel panel:** :math:`(R, R, R)`, indexed ``[x, y, z]`` with y up
        - **image panel:** :math:`(H, W)` in [0, 1]
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows = len(panels)
    n_cols = max((len(r) for r in panels), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("panels must hold at least one row with one panel")
    fig = plt.figure(figsize=(panel_size * n_cols, panel_size * n_rows))
    try:
        for r, row in enumerate(panels):
            for c, panel in enumerate(row):
                if panel is None:
                    continue
                array = panel.detach().cpu().numpy() if isinstance(panel, Tensor) else np.asarray(panel)
                pos = r * n_cols + c + 1
                if array.ndim == 3:
                    ax = fig.add_subplot(n_rows, n_cols, pos, projection="3d")
                    _draw_voxels(ax, array, threshold, color)
                elif array.ndim == 2:
                    ax = fig.add_subplot(n_rows, n_cols, pos)
                    ax.imshow(array, cmap="gray", vmin=0.0, vmax=1.0)
                    ax.set_axis_off()
                else:
                    raise ValueError(f"panel ({r}, {c}) must be 3-D voxels or a 2-D image; got shape {array.shape}")
                if titles is not None and c < len(titles[r]):
                    ax.set_title(titles[r][c], fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
    return Path(path)


def _means(method, inputs: Sequence[Tensor], modality: str) -> Tensor:
    """Latent means [K, D] of single samples (voxels [R, R, R] or views [V, C, H, W])."""
    return method.embed({modality: torch.stack([torch.as_tensor(x) for x in inputs]).float()}, modality)


def _input_panel(x: Tensor, modality: str) -> Tensor:
    return x if modality == "voxels" else x[0].mean(dim=0)  # views: the first view, grey


def latent_interpolation(
    method, a: Tensor, b: Tensor, path: str | os.PathLike[str], modality: str = "voxels", steps: int = 8,
) -> Path:
    r"""Decode :math:`(1 - t)\mu_a + t\mu_b` for ``steps`` values of :math:`t` and write a PNG (Sec. 4.4, Fig. 6).

    The row shows input ``a``, the decoded sequence from :math:`t = 0` to 1, and input ``b``.

    Args:
        method: a pretrained :class:`~ssl3d.methods.switchvae.SwitchVAE` (or variant) that can embed ``modality``.
        a: first shape's input; **b**: second shape's input.
        path: PNG to write.
        modality: ``"voxels"`` or ``"views"``.
        steps: decoded shapes, ends included (>= 2).

    Returns:
        The written path.

    Shapes:
        - **a**, **b**: :math:`(R, R, R)` voxels or :math:`(V, C, H, W)` views
    """
    mu = _means(method, [a, b], modality)
    grids = method.decode(interpolate_latents(mu[0], mu[1], steps))
    ts = np.linspace(0.0, 1.0, steps)
    panels = [[_input_panel(a, modality), *grids, _input_panel(b, modality)]]
    titles = [["input a", *(f"t = {t:.2f}" for t in ts), "input b"]]
    return save_panel_grid(panels, path, titles)


def shape_arithmetic(
    method, a: Tensor, b: Tensor, c: Tensor, path: str | os.PathLike[str], modality: str = "voxels",
) -> Path:
    r"""Decode :math:`\mu_a - \mu_b + \mu_c` and write a PNG (Sec. 4.4, Fig. 7).

    Top row: the inputs; bottom row: their reconstructions from :math:`\mu` and
    the decoded result of the arithmetic.

    Args:
        method: a pretrained SwitchVAE (or variant) that can embed ``modality``.
        a, b, c: the three shapes' inputs.
        path: PNG to write.
        modality: ``"voxels"`` or ``"views"``.

    Returns:
        The written path.

    Shapes:
        - **a**, **b**, **c**: :math:`(R, R, R)` voxels or :math:`(V, C, H, W)` views
    """
    mu = _means(method, [a, b, c], modality)
    decoded = method.decode(torch.cat([mu, arithmetic_latent(mu[0], mu[1], mu[2])[None]]))
    panels = [[_input_panel(x, modality) for x in (a, b, c)] + [None], list(decoded)]
    titles = [["input a", "input b", "input c", ""], ["decoded a", "- decoded b", "+ decoded c", "= a - b + c"]]
    return save_panel_grid(panels, path, titles)
