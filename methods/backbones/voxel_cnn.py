r"""3D convolutional VAE encoder/decoder for occupancy grids (SwitchVAE, Wu et al., IEEE TMM 2023, Sec. 3.2).

Layer sizes, and the details the paper leaves open (taken from the official Keras code
``0xzhou/SwitchVAE``, ``utils/model.py``): docs/methods.md#switchvae. Grids are indexed
``[x, y, z]`` with axis 1 up (the project's voxel contract); the networks never permute axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["VoxelDecoder", "VoxelEncoder"]


def _init_glorot(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_positive(name: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints; got {values!r}")
    return out


def _as_grid(voxels: Tensor, resolution: int) -> Tensor:
    """``[B, R, R, R]`` (or ``[B, 1, R, R, R]``) -> float ``[B, 1, R, R, R]``."""
    if voxels.dim() == 4:
        voxels = voxels.unsqueeze(1)
    if voxels.dim() != 5 or voxels.shape[1] != 1 or tuple(voxels.shape[2:]) != (resolution,) * 3:
        raise ValueError(
            f"voxels must be [B, {resolution}, {resolution}, {resolution}] (or with a channel dim of 1); "
            f"got {tuple(voxels.shape)}"
        )
    return voxels if voxels.is_floating_point() else voxels.float()


class VoxelEncoder(nn.Module):
    r"""SwitchVAE voxel encoder :math:`e^{vox}(x) = (\mu, \log\sigma^2)`.

    .. math::
        f = \mathrm{BN}(\mathrm{ELU}(W_f\, \mathrm{flatten}(\mathrm{conv}_{1..4}(x))))
        \in \mathbb{R}^{343}, \quad
        \mu = \mathrm{BN}(W_\mu f), \quad \log\sigma^2 = \mathrm{BN}(W_\sigma f).

    Args:
        resolution: grid size :math:`R`.
        channels: output channels of the convolutions.
        strides: their strides (1: unpadded, 2: padded by 1).
        hidden_dim: width of the fully connected feature :math:`f`.
        latent_dim: latent size.
        batch_norm: batch-normalise every layer (as the paper and code do).

    Shapes:
        - **input:** :math:`(B, R, R, R)` occupancy
        - **output:** ``(mu, logvar)``, each :math:`(B, \text{latent\_dim})`;
          :meth:`features` gives :math:`(B, \text{hidden\_dim})`.
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: Sequence[int] = (8, 16, 32, 64),
        strides: Sequence[int] = (1, 2, 1, 2),
        hidden_dim: int = 343,
        latent_dim: int = 128,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        channels = _check_positive("channels", channels)
        strides = _check_positive("strides", strides)
        _check_positive("resolution/hidden_dim/latent_dim", (resolution, hidden_dim, latent_dim))
        if len(channels) != len(strides) or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"strides must be 1 or 2, one per channel entry; got channels={channels}, strides={strides}"
            )
        self.resolution, self.hidden_dim, self.latent_dim = resolution, hidden_dim, latent_dim
        layers: list[nn.Module] = []
        size, prev = resolution, 1
        for width, stride in zip(channels, strides):
            pad = 0 if stride == 1 else 1
            layers += [nn.Conv3d(prev, width, 3, stride=stride, padding=pad), nn.ELU()]
            if batch_norm:
                layers.append(nn.BatchNorm3d(width))
            size = (size + 2 * pad - 3) // stride + 1
            if size < 1:
                raise ValueError(
                    f"resolution {resolution} is too small for {len(channels)} layers with strides {strides}"
                )
            prev = width
        self.convs = nn.Sequential(*layers)
        self.conv_output_shape = (prev, size, size, size)
        fc: list[nn.Module] = [nn.Linear(prev * size**3, hidden_dim), nn.ELU()]
        if batch_norm:
            fc.append(nn.BatchNorm1d(hidden_dim))
        self.fc = nn.Sequential(*fc)
        norm = (lambda: nn.BatchNorm1d(latent_dim)) if batch_norm else nn.Identity
        self.mu = nn.Sequential(nn.Linear(hidden_dim, latent_dim), norm())
        self.logvar = nn.Sequential(nn.Linear(hidden_dim, latent_dim), norm())
        _init_glorot(self)

    def features(self, voxels: Tensor) -> Tensor:
        """The ``hidden_dim`` (343-d) feature :math:`f` before the latent heads."""
        h = self.convs(_as_grid(voxels, self.resolution))
        return self.fc(h.flatten(1))

    def forward(self, voxels: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(voxels)
        return self.mu(f), self.logvar(f)


class VoxelDecoder(nn.Module):
    r"""SwitchVAE voxel decoder :math:`d(z) = \sigma(\text{logits}) \in [0, 1]^{R^3}`.

    :math:`z \to` FC (``hidden_dim`` :math:`= s^3`, ELU, BN) :math:`\to`
    reshape to :math:`1 \times s^3 \to` transposed convolutions with
    ``channels`` (strides 1, 2, 1, 2; kernels 3, 3, 3, 4; ELU + BN) :math:`\to`
    a stride-1 transposed convolution to one channel (+ BN) giving logits.
    The grid grows :math:`s \to s \to 2s+1 \to 2s+1 \to 4s+4`, so ``resolution``
    must equal :math:`4 \sqrt[3]{\text{hidden\_dim}} + 4` (32 for 343).

    Args:
        latent_dim: latent size.
        hidden_dim: width of the first FC layer; must be a perfect cube.
        channels: widths of the four up-sampling layers.
        resolution: output grid size :math:`R` (checked against ``hidden_dim``).
        batch_norm: batch-normalise every layer, including the logits (as the
            official code does).

    Shapes:
        - **input:** :math:`(B, \text{latent\_dim})`
        - **output:** :math:`(B, R, R, R)` probabilities; :meth:`logits` gives
          the pre-sigmoid values of the same shape.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        hidden_dim: int = 343,
        channels: Sequence[int] = (64, 32, 16, 8),
        resolution: int = 32,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        channels = _check_positive("channels", channels)
        _check_positive("latent_dim/hidden_dim/resolution", (latent_dim, hidden_dim, resolution))
        if len(channels) != 4:
            raise ValueError(f"channels must list 4 widths (strides 1, 2, 1, 2); got {channels}")
        seed = round(hidden_dim ** (1 / 3))
        if seed**3 != hidden_dim:
            raise ValueError(f"hidden_dim must be a perfect cube (reshaped to 1 x s^3); got {hidden_dim}")
        if 4 * seed + 4 != resolution:
            raise ValueError(
                f"hidden_dim={hidden_dim} (s={seed}) decodes to a {4 * seed + 4}^3 grid, not {resolution}^3; "
                f"use hidden_dim={((resolution - 4) // 4) ** 3} for resolution {resolution} "
                "(resolution must be 4 s + 4)"
            )
        self.latent_dim, self.hidden_dim, self.resolution, self.seed = latent_dim, hidden_dim, resolution, seed

        def norm3d(width: int) -> nn.Module:
            return nn.BatchNorm3d(width) if batch_norm else nn.Identity()

        fc: list[nn.Module] = [nn.Linear(latent_dim, hidden_dim), nn.ELU()]
        if batch_norm:
            fc.append(nn.BatchNorm1d(hidden_dim))
        self.fc = nn.Sequential(*fc)
        layers: list[nn.Module] = []
        prev = 1
        for width, (kernel, stride, pad) in zip(channels, ((3, 1, 1), (3, 2, 0), (3, 1, 1), (4, 2, 0))):
            layers += [nn.ConvTranspose3d(prev, width, kernel, stride=stride, padding=pad), nn.ELU(), norm3d(width)]
            prev = width
        layers += [nn.ConvTranspose3d(prev, 1, 3, stride=1, padding=1), norm3d(1)]
        self.deconvs = nn.Sequential(*layers)
        _init_glorot(self)

    def logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid occupancy logits ``[B, R, R, R]``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}]; got {tuple(z.shape)}")
        s = self.seed
        h = self.fc(z).view(-1, 1, s, s, s)
        return self.deconvs(h).squeeze(1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(z))
