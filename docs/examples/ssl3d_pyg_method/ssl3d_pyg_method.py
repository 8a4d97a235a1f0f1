"""ssl3d-pyg-method: an example ssl3d-bench method plugin whose point encoder is built from PyG layers.

A SimCLR-style instance-contrastive pretext task (Chen et al., ICML 2020,
applied to point clouds): two random augmentations of every cloud (a random
subset of its points, a turn about the up axis, an anisotropic scale,
Gaussian jitter) are embedded, and an NT-Xent loss pulls the two views of a cloud together and pushes the other
clouds of the batch away. The encoder's max-pooled global feature is the
representation.

The encoder is written the way a PyTorch Geometric user writes one: the
batch [B, N, 3] becomes one graph of B * N nodes with a ``batch`` vector,
``torch_geometric.nn.EdgeConv`` layers (each edge's MLP a
``torch_geometric.nn.MLP``) run over a kNN graph, and
``torch_geometric.nn.global_max_pool`` pools each cloud. These layers are
plain PyTorch (PyG's scatter falls back to ``torch.scatter_reduce``), so no
compiled extension is needed. The graph is built with the suite's own
:func:`ssl3d.methods.backbones.knn_indices` rather than ``knn_graph`` /
``DynamicEdgeConv``, which need a compiled extension (torch-cluster or
pyg-lib, depending on the PyG release).

Like the rotnet example it is registered only through the ``ssl3d.methods``
entry point of its own distribution (see docs/adding-a-method.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import MLP, EdgeConv, global_max_pool

from ssl3d.methods import Method, MethodConfig, TrainConfig
from ssl3d.methods.backbones import knn_indices


@dataclass(frozen=True)
class PyGContrastConfig(MethodConfig):
    """Contrastive pretext on a PyG EdgeConv encoder; every field is commented as the house style asks."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=50, batch_size=32, lr=1e-3))  # shared loop
    pretrain_points: int = field(default=1024, metadata={"range": "[1, inf)"})  # points per view in the pretext task: a random subset of the cloud, drawn per view
    k: int = field(default=16, metadata={"range": "[1, inf)"})  # neighbours per point of the kNN graph (the point itself included)
    widths: tuple[int, ...] = field(default=(64, 64, 128), metadata={"range": "[1, inf)"})  # output width of each EdgeConv layer
    global_dim: int = field(default=256, metadata={"range": "[1, inf)"})  # width of the max-pooled global feature (the embedding)
    proj_dim: int = field(default=128, metadata={"range": "[1, inf)"})  # width of the projection head the loss reads
    tau: float = field(default=0.1, metadata={"range": "(0, inf)"})  # NT-Xent temperature
    scale: float = field(default=0.2, metadata={"range": "[0, 1)"})  # per-axis scale factors drawn from [1 - scale, 1 + scale]
    jitter: float = field(default=0.01, metadata={"range": "[0, inf)"})  # std of the Gaussian noise added to every point

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},  # SimCLR's paper is about images: the defaults are this example's own choice
        "quick": {"train.epochs": 2, "pretrain_points": 256, "k": 10, "widths": (32, 32, 64),
                  "global_dim": 128, "proj_dim": 64},
    }


def knn_edge_index(points: Tensor, k: int) -> Tensor:
    """The kNN graph of every cloud of ``points`` [B, N, C] as one PyG ``edge_index`` [2, B * N * k].

    Node ``b * N + i`` is point ``i`` of cloud ``b``. Edges run from each
    neighbour (row 0, PyG's source ``j``) to its centre (row 1, target ``i``),
    the direction in which ``EdgeConv`` aggregates.
    """
    b, n, _ = points.shape
    k = min(k, n)
    offset = (torch.arange(b, device=points.device) * n).view(b, 1, 1)
    source = knn_indices(points, k) + offset  # [B, N, k]
    target = (torch.arange(n, device=points.device).view(1, n, 1) + offset).expand(b, n, k)
    return torch.stack([source.reshape(-1), target.reshape(-1)])


class EdgeConvEncoder(nn.Module):
    """EdgeConv layers over the xyz kNN graph, their outputs concatenated, a point-wise MLP and a global max pool."""

    def __init__(self, k: int, widths: tuple[int, ...], global_dim: int) -> None:
        super().__init__()
        self.k = k
        channels = (3, *widths)
        self.convs = nn.ModuleList(
            EdgeConv(MLP([2 * c_in, c_out], act="leaky_relu", norm="batch_norm", plain_last=False), aggr="max")
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.point_mlp = MLP([sum(widths), global_dim], act="leaky_relu", norm="batch_norm", plain_last=False)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """``points`` [B, N, 3] -> (global features [B, D], per-point features [B, N, D])."""
        b, n, _ = points.shape
        edge_index = knn_edge_index(points, self.k)
        batch = torch.arange(b, device=points.device).repeat_interleave(n)
        x, layers = points.reshape(b * n, -1), []
        for conv in self.convs:
            x = conv(x, edge_index)
            layers.append(x)
        x = self.point_mlp(torch.cat(layers, dim=-1))  # [B * N, D]
        return global_max_pool(x, batch, size=b), x.view(b, n, -1)


def augment(points: Tensor, m: int, scale: float, jitter: float) -> Tensor:
    """A random subset of ``m`` points of every cloud of ``points`` [B, N, 3], turned about +Y, scaled and jittered."""
    b, n, _ = points.shape
    if m < n:
        keep = torch.rand(b, n, device=points.device).argsort(dim=1)[:, :m]
        points = points.gather(1, keep.unsqueeze(-1).expand(b, m, 3))
    theta = torch.rand(b, device=points.device) * (2 * math.pi)
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(b, 3, 3)
    factors = 1 + scale * (2 * torch.rand(b, 1, 3, device=points.device) - 1)
    return (points * factors) @ rot.transpose(1, 2) + jitter * torch.randn_like(points)


def nt_xent(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """SimCLR's NT-Xent loss: rows ``i`` of ``z1`` and ``z2`` [B, D] are positives, every other row a negative."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = (z @ z.t() / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class PyGContrast(Method):
    """A PyG EdgeConv encoder trained to match two augmentations of the same cloud."""

    name = "pyg-contrast"
    Config = PyGContrastConfig
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})
    point_feature_modalities = frozenset({"points"})  # per-point features open the segmentation protocol
    paper = "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020"

    def build_model(self) -> nn.Module:
        cfg = self.config
        return nn.ModuleDict({
            "backbone": EdgeConvEncoder(cfg.k, tuple(cfg.widths), cfg.global_dim),
            "projector": MLP([cfg.global_dim, cfg.global_dim, cfg.proj_dim], norm=None),
        })

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        cfg, points = self.config, batch["points"]
        views = torch.cat([augment(points, cfg.pretrain_points, cfg.scale, cfg.jitter) for _ in range(2)])
        z1, z2 = self.model["projector"](self.model["backbone"](views)[0]).chunk(2)
        loss = nt_xent(z1, z2, cfg.tau)
        with torch.no_grad():
            match = (F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).t()).argmax(1)
        return {"loss": loss, "match_acc": (match == torch.arange(len(z1), device=z1.device)).float().mean()}

    def embed_batch(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        return self.model["backbone"](batch["points"])[0]

    def point_features_batch(self, points: Tensor) -> Tensor:
        return self.model["backbone"](points)[1]

    def encoder(self, modality: str) -> nn.Module:
        return self.model["backbone"]
