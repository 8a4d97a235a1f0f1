"""Controls: fixed representations, one or more per modality, that a pretrained network must beat.

Nothing here has a pretext task (``train.epochs=0``); each is ``Method.control``. Random networks
(``random-voxel-cnn``, ``random-view-cnn``) draw their weights from the run seed; descriptors
(``pooled-occupancy``, ``d2-shape-distribution``) have no weights at all. D2: Osada et al., "Shape
Distributions", ACM TOG 21(4), 2002. Architectures, settings and why: docs/methods.md#controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl3d.datasets.modalities.cameras import rig_size
from ssl3d.methods.backbones.small_cnn import SmallCNN
from ssl3d.methods.base import Method, register_method
from ssl3d.methods.cmic import CMICConfig, select_views
from ssl3d.methods.config import MethodConfig, TrainConfig

__all__ = [
    "D2ShapeDistribution", "D2Config", "D2Histogram", "OccupancyPool", "PooledOccupancy", "PooledOccupancyConfig",
    "RandomViewCNN", "RandomViewCNNConfig", "RandomVoxelCNN", "RandomVoxelCNNConfig",
]

#: images per forward of a view network in embed (bounds the activations of large renders)
_CHUNK = 64
_SAME = {"paper": {}, "quick": {}, "cpu": {}}
_CMIC_VIEWS = ("n_views", "view_size", "image_size")  # the settings random-view-cnn copies from cmic's presets


def _no_training() -> TrainConfig:
    return TrainConfig(epochs=0)


# -- configs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomVoxelCNNConfig(MethodConfig):
    """A random 3-layer 3D CNN on the occupancy grid."""

    train: TrainConfig = field(default_factory=_no_training)  # no pretraining
    channels: tuple[int, ...] = field(default=(32, 64, 128), metadata={"range": "[1, inf)"})  # output channels of the three conv k3 s1 + max-pool 2 blocks
    grid: int = field(default=2, metadata={"range": "[1, inf)"})  # cells per side of the final average pool: feature width channels[-1] * grid^3

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = _SAME


@dataclass(frozen=True)
class PooledOccupancyConfig(MethodConfig):
    """The occupancy grid average-pooled to ``grid``^3 cells."""

    train: TrainConfig = field(default_factory=_no_training)  # nothing to train
    grid: int = field(default=8, metadata={"range": "[1, inf)"})  # cells per side: 32^3 voxels -> 8^3 cells of 4^3 voxels, a 512-d feature

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = _SAME


@dataclass(frozen=True)
class RandomViewCNNConfig(MethodConfig):
    """A random 3-layer 2D CNN over rendered views (shared over views, mean-pooled) and over photos."""

    train: TrainConfig = field(default_factory=_no_training)  # no pretraining
    channels: tuple[int, ...] = field(default=(32, 64, 128), metadata={"range": "[1, inf)"})  # output channels of the three conv k3 s1 + max-pool 2 blocks
    grid: int = field(default=2, metadata={"range": "[1, inf)"})  # cells per side of the final average pool: feature width channels[-1] * grid^2
    view_rig: Literal["ring12", "first8", "dodeca20", "random"] = "ring12"  # camera rig of the views (cmic's)
    n_views: int = field(default=12, metadata={"range": "[1, inf)"})  # views embedded, spread evenly over the rig (cmic's select_views); the random rig renders this many
    view_size: int = field(default=224, metadata={"range": "[1, inf)"})  # render side, pixels (cmic's)
    image_size: int = field(default=224, metadata={"range": "[1, inf)"})  # photo side, pixels (cmic's)

    # the views and photos cmic reads under each preset (docs/methods.md#controls)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        name: {key: CMICConfig.PRESETS[name][key] for key in _CMIC_VIEWS if key in CMICConfig.PRESETS[name]}
        for name in ("paper", "quick", "cpu")
    }

    def __post_init__(self) -> None:
        if self.view_rig != "random" and self.n_views > rig_size(self.view_rig):
            raise ValueError(f"method.n_views={self.n_views} exceeds the {rig_size(self.view_rig)} views of "
                             f"method.view_rig={self.view_rig}; lower n_views or choose a larger rig")


@dataclass(frozen=True)
class D2Config(MethodConfig):
    """Osada et al.'s D2 shape distribution of the surface points."""

    train: TrainConfig = field(default_factory=_no_training)  # nothing to train
    bins: int = field(default=64, metadata={"range": "[1, inf)"})  # histogram bins (the paper compares 64-vertex piecewise-linear PDFs)
    max_distance: float = field(default=3.0, metadata={"range": "(0, inf)"})  # histogram range [0, max_distance] in units of the shape's mean pair distance; longer pairs count in the last bin
    pairs: int = field(default=0, metadata={"range": "[0, inf)"})  # 0: every pair of the N points, N(N-1)/2; k > 0: k random pairs drawn from the run seed

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = _SAME


# -- descriptors as modules -----------------------------------------------------------------------------
class _ParameterFree(nn.Module):
    """A descriptor without weights, shaped as the Method contract expects a network."""

    def __init__(self) -> None:
        super().__init__()
        # Method.embed finds the device from the network's first parameter, and check_method wants
        # encoder() to own at least one: an empty tensor satisfies both and takes part in no computation
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)


class OccupancyPool(_ParameterFree):
    """``(B, R, R, R)`` occupancy -> ``(B, grid^3)``: the fraction of occupied voxels per cell, ``[x, y, z]`` order."""

    def __init__(self, grid: int = 8) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, voxels: Tensor) -> Tensor:
        if voxels.dim() != 4:
            raise ValueError(f"voxels must be [B, R, R, R]; got {tuple(voxels.shape)}")
        return F.adaptive_avg_pool3d(voxels.unsqueeze(1).float(), self.grid).flatten(1)


class D2Histogram(_ParameterFree):
    r"""``(B, N, 3)`` points -> ``(B, bins)``: the normalised histogram of pair distances (D2, Osada et al. 2002).

    Each shape's distances are divided by their mean (scale invariance), counted in ``bins`` equal bins
    over ``[0, max_distance]`` (bin :math:`k` holds :math:`[k w, (k+1) w)`, the last also everything
    longer) and divided by the number of pairs. ``pairs = 0`` takes every pair of the ``N`` points;
    ``pairs = k`` draws ``k`` index pairs :math:`i \ne j` from the ``pair_seed`` buffer, which the seeded
    initialisation sets, the same pairs for every shape: a shape's histogram never depends on its batch.
    """

    def __init__(self, bins: int = 64, max_distance: float = 3.0, pairs: int = 0) -> None:
        super().__init__()
        self.bins, self.max_distance, self.pairs = bins, max_distance, pairs
        self.register_buffer("pair_seed", torch.randint(0, 2**62, (), dtype=torch.int64))  # from the run seed

    def pair_indices(self, n: int) -> tuple[Tensor, Tensor]:
        """The ``pairs`` random index pairs ``(i, j)``, ``i != j``, of ``n`` points (a function of ``pair_seed``)."""
        g = torch.Generator().manual_seed(int(self.pair_seed))
        i = torch.randint(0, n, (self.pairs,), generator=g)
        j = torch.randint(0, n - 1, (self.pairs,), generator=g)
        return i, j + (j >= i).long()  # skip i itself: uniform over the other n - 1 points

    def forward(self, points: Tensor) -> Tensor:
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] < 2:
            raise ValueError(f"points must be [B, N >= 2, 3]; got {tuple(points.shape)}")
        pts = points.float()
        if self.pairs:
            i, j = (idx.to(pts.device) for idx in self.pair_indices(pts.shape[1]))
            distances = [(p[i] - p[j]).norm(dim=-1) for p in pts]
        else:
            distances = [torch.pdist(p) for p in pts]  # the N(N-1)/2 pairs i < j
        return torch.stack([self._histogram(d) for d in distances])

    def _histogram(self, d: Tensor) -> Tensor:
        d = d / d.mean().clamp_min(torch.finfo(d.dtype).tiny)  # all points equal: every distance in bin 0
        index = (d * (self.bins / self.max_distance)).long().clamp_(0, self.bins - 1)
        return torch.bincount(index, minlength=self.bins).float() / len(d)


# -- methods ----------------------------------------------------------------------------------------------
class _Control(Method):
    """Shared declarations of the controls: no pretext task; the encoder of a modality is its network."""

    control = True
    pretrain_modalities = frozenset()

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality, self.embed_modalities, "encode")
        model = self._check_pretrained()
        return model[modality] if isinstance(model, nn.ModuleDict) else model


@register_method("random-voxel-cnn")
class RandomVoxelCNN(_Control):
    """A random-initialised 3-layer 3D CNN (32-64-128 channels), 1024-d feature (128 x 2^3 average-pooled cells)."""

    name = "random-voxel-cnn"
    Config = RandomVoxelCNNConfig
    embed_modalities = frozenset({"voxels"})
    paper = "control: a random-initialised 3-layer 3D CNN (no pretraining)"

    def build_model(self) -> nn.Module:
        return SmallCNN(3, 1, self.config.channels, self.config.grid)

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model(batch["voxels"].unsqueeze(1).float())


@register_method("pooled-occupancy")
class PooledOccupancy(_Control):
    """The occupancy grid average-pooled to 8^3 cells, flattened (512-d); no weights."""

    name = "pooled-occupancy"
    Config = PooledOccupancyConfig
    embed_modalities = frozenset({"voxels"})
    paper = "control: average-pooled occupancy (no weights)"

    def build_model(self) -> nn.Module:
        return OccupancyPool(self.config.grid)

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model(batch["voxels"])


@register_method("random-view-cnn")
class RandomViewCNN(_Control):
    """Random-initialised 3-layer 2D CNNs: one shared over the grey views (mean over views), one on RGB + mask photos."""

    name = "random-view-cnn"
    Config = RandomViewCNNConfig
    embed_modalities = frozenset({"views", "image"})
    paper = "control: a random-initialised 3-layer 2D CNN (no pretraining)"

    def build_model(self) -> nn.Module:
        cfg = self.config
        return nn.ModuleDict({"views": SmallCNN(2, 1, cfg.channels, cfg.grid),
                              "image": SmallCNN(2, 4, cfg.channels, cfg.grid)})

    def data_overrides(self) -> dict[str, Any]:
        cfg = self.config
        rig = {"view_rig": cfg.view_rig, **({"n_views": cfg.n_views} if cfg.view_rig == "random" else {})}
        return {**rig, "view_size": cfg.view_size, "image_size": cfg.image_size}

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        if modality == "image":  # RGB + mask in [-1, 1], as cmic's query encoder takes a photo
            image = batch["image"]
            return self._forward("image", torch.cat([image, batch["mask"].unsqueeze(1).to(image.dtype)], dim=1) * 2 - 1)
        views = select_views(batch["views"], self.config.n_views)
        b, v = views.shape[:2]
        return self._forward("views", views.flatten(0, 1) * 2 - 1).view(b, v, -1).mean(dim=1)

    def _forward(self, modality: str, images: Tensor) -> Tensor:
        net = self.model[modality]
        return torch.cat([net(chunk) for chunk in images.split(_CHUNK)])


@register_method("d2-shape-distribution")
class D2ShapeDistribution(_Control):
    """Osada et al.'s D2: the 64-bin histogram of mean-normalised distances between pairs of surface points."""

    name = "d2-shape-distribution"
    Config = D2Config
    embed_modalities = frozenset({"points"})
    paper = "Osada et al., Shape Distributions, ACM TOG 2002 (the D2 shape function; no weights)"

    def build_model(self) -> nn.Module:
        cfg = self.config
        return D2Histogram(cfg.bins, cfg.max_distance, cfg.pairs)

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model(batch["points"])
