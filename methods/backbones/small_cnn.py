r"""A small plain CNN over images (2-D) or occupancy grids (3-D): the random-network controls' backbone.

Three blocks of ``conv k3 s1 p1 -> ReLU -> max-pool 2`` widen the channels (32, 64, 128 by default)
and halve the side each time; an adaptive average pool to a ``grid``-sided cell grid, flattened, is
the global feature (``channels[-1] * grid**dims`` wide). No normalisation layer: the network is used
at random initialisation (Kaiming-normal weights, He et al., ICCV 2015; zero biases), where batch
statistics would make an embedding depend on the rest of its batch. Sizes and why: docs/methods.md#controls.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["SmallCNN"]

_LAYERS = {2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d), 3: (nn.Conv3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)}


class SmallCNN(nn.Module):
    r"""``(B, C, *S) -> (B, channels[-1] * grid**dims)`` with ``S`` two or three equal sides.

    Args:
        dims: 2 (images) or 3 (voxel grids).
        in_channels: input channels ``C``.
        channels: output channels of the convolutions, one block each.
        grid: cells per side of the final average pool (1: global average pooling).

    Attributes:
        out_dim: width of the global feature.
    """

    def __init__(self, dims: int, in_channels: int, channels: Sequence[int] = (32, 64, 128), grid: int = 2) -> None:
        super().__init__()
        if dims not in _LAYERS:
            raise ValueError(f"dims must be 2 or 3; got {dims!r}")
        widths = tuple(channels)
        if not widths or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in (in_channels, *widths)):
            raise ValueError(f"in_channels and channels must be positive ints; got {in_channels!r}, {channels!r}")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive int; got {grid!r}")
        conv, pool, average = _LAYERS[dims]
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            layers += [conv(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True), pool(2)]
        self.features = nn.Sequential(*layers, average(grid), nn.Flatten(1))
        self.dims, self.out_dim = dims, widths[-1] * grid**dims
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")  # keeps the activation scale
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.dims + 2:
            raise ValueError(f"input must have {self.dims} spatial dims after [B, C]; got {tuple(x.shape)}")
        return self.features(x)
