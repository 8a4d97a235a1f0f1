r"""Image encoders: torchvision ResNet trunks, single-image and multi-view encoders.

Used by CM-CV, CMIC and SwitchVAE (:class:`MultiViewVAEEncoder`); the sizes each uses: docs/methods.md.
Pretrained weights are never downloaded: ``weights`` names a torchvision weight set that must already
sit in the torch hub cache, or a local file (:mod:`~ssl3d.methods.backbones.pretrained`).
:func:`select_views` keeps ``n`` views spread evenly around a ring of cameras (SwitchVAE, CMIC); it lives
here, beside the encoders, so the feature cache's code digest sees any change to it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ssl3d.methods.backbones.pretrained import load_weights

__all__ = [
    "TRUNK_DIMS", "ImageEncoder", "MultiViewEncoder", "MultiViewVAEEncoder", "even_indices", "resnet_trunk",
    "select_views",
]

Arch = Literal["resnet18", "resnet34", "resnet50"]

#: ImageNet RGB statistics averaged over channels, for grey views.
GREY_MEAN, GREY_STD = 0.449, 0.226

#: Width of each trunk's pooled feature.
TRUNK_DIMS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def _check_arch(arch: str) -> None:
    if arch not in TRUNK_DIMS:
        raise ValueError(f"arch must be one of {sorted(TRUNK_DIMS)}; got {arch!r}")


def even_indices(n: int, total: int) -> list[int]:
    r"""Indices of ``n`` of ``total`` ring cameras spread evenly around the ring: :math:`\lfloor k \cdot total / n \rfloor`.

    When ``n`` divides ``total`` this is every ``total / n``-th camera from camera 0 (4 of 12 cameras 30
    degrees apart: azimuths 0, 90, 180, 270). Otherwise it rounds down: the gaps differ by one camera
    (5 of 12: ``[0, 2, 4, 7, 9]``). Indices assume the cameras are in ring order, equally spaced.

    Raises:
        ValueError: ``n`` not in ``1..total``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"cannot pick {n!r} of {total} cameras: n_views must be in 1..{total}")
    return [k * total // n for k in range(n)]


def select_views(views: Tensor, n_views: int) -> Tensor:
    """``n_views`` views of ``views`` :math:`(B, V, C, H, W)` spread evenly (:func:`even_indices`); all when ``V <= n_views``."""
    v = views.shape[1]
    if v <= n_views:
        return views
    return views.index_select(1, torch.tensor(even_indices(n_views, v), device=views.device))


def resnet_trunk(arch: Arch, in_channels: int = 3, weights: str | None = None) -> nn.Module:
    r"""A torchvision ResNet without its classifier (``fc`` is ``nn.Identity``).

    Its output is the global-average-pooled feature (512-d for ResNet18/34,
    2048-d for ResNet50, see :data:`TRUNK_DIMS`). With ``in_channels != 3`` the
    first convolution is replaced; when pretrained weights are loaded its kernel
    is initialised from the RGB kernel :math:`W_{rgb}`: the mean over RGB for
    every channel when ``in_channels < 3`` (grey renders), and
    :math:`[W_{rgb}, \bar W, \ldots]` (RGB kept, the mean for each extra
    channel, e.g. CMIC's mask) when ``in_channels > 3``.

    Args:
        arch: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        in_channels: image channels.
        weights: ``None`` (random init), a torchvision weight name such as
            ``"IMAGENET1K_V1"`` / ``"DEFAULT"`` that must already be in the torch
            hub cache, or a path to a state-dict file of the full torchvision model.

    Returns:
        The module; input :math:`(B, C, H, W)`, output :math:`(B, D)`.
    """
    _check_arch(arch)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")
    import torchvision  # here, not at the top: importing it costs seconds (torch._dynamo) in every process

    model = getattr(torchvision.models, arch)(weights=None)
    if weights is not None:
        model.load_state_dict(load_weights(arch, weights))
    if in_channels != 3:
        old = model.conv1
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        if weights is None:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        else:
            with torch.no_grad():
                mean = old.weight.mean(dim=1, keepdim=True)
                if in_channels < 3:
                    new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
                else:
                    extra = mean.expand(-1, in_channels - 3, -1, -1)
                    new.weight.copy_(torch.cat([old.weight, extra], dim=1))
        model.conv1 = new
    model.fc = nn.Identity()
    return model


def _check_images(x: Tensor, dims: int, channels: int, what: str) -> None:
    if x.dim() != dims or x.shape[-3] != channels:
        layout = "[B, C, H, W]" if dims == 4 else "[B, V, C, H, W]"
        raise ValueError(f"{what} must be {layout} with C={channels}; got {tuple(x.shape)}")


class ImageEncoder(nn.Module):
    r"""ResNet trunk + optional projection head: :math:`(B, C, H, W) \to (B, D)`.

    Heads: ``None`` (the pooled trunk feature, e.g. CM-CV's 512-d
    :math:`F_{img}`), ``"linear"``, or ``"bn_linear"`` (BatchNorm1d + Linear, CMIC
    Sec. 3.4: "one batch-normalization layer and one linear layer").

    Args:
        arch: trunk architecture.
        in_channels: image channels (4 for RGB + mask, 1 for grey renders).
        out_dim: output width of the head (required unless ``head`` is None).
        head: ``None``, ``"linear"`` or ``"bn_linear"``.
        weights: see :func:`resnet_trunk`.
        channels_last: run the trunk in ``torch.channels_last`` memory format
            (faster convolutions on recent GPUs).

    Attributes:
        out_dim: :math:`D`.

    Shapes:
        - **input:** :math:`(B, C, H, W)`, float in [0, 1] or normalised
        - **output:** :math:`(B, D)`
    """

    def __init__(
        self,
        arch: Arch = "resnet18",
        in_channels: int = 3,
        out_dim: int | None = None,
        head: Literal["linear", "bn_linear"] | None = None,
        weights: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if head not in (None, "linear", "bn_linear"):
            raise ValueError(f"head must be None, 'linear' or 'bn_linear'; got {head!r}")
        if head is not None and (not isinstance(out_dim, int) or out_dim < 1):
            raise ValueError(f"head={head!r} needs a positive out_dim; got {out_dim!r}")
        self.in_channels, self.channels_last = in_channels, channels_last
        self.trunk = resnet_trunk(arch, in_channels, weights)
        feat = TRUNK_DIMS[arch]
        if head is None:
            self.head: nn.Module = nn.Identity()
            self.out_dim = feat
        else:
            layers = [nn.BatchNorm1d(feat)] if head == "bn_linear" else []
            self.head = nn.Sequential(*layers, nn.Linear(feat, out_dim))
            self.out_dim = out_dim
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, 4, self.in_channels, "images")
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.trunk(images))


class MultiViewEncoder(nn.Module):
    r"""Shared per-view ResNet + view aggregation: :math:`(B, V, C, H, W) \to (B, D)`.

    Every view goes through the same trunk, then an embedding layer
    :math:`e_v = \mathrm{BN}(W\, \phi(I_v)) \in \mathbb{R}^{\text{view\_dim}}`.
    Views are aggregated by a GRU over the view sequence (its last hidden state,
    SwitchVAE Sec. 3.2), or by an element-wise max / mean over views
    (MVCNN-style; followed by a Linear to ``out_dim`` when the widths differ).

    ``pool="flatten"`` reproduces SwitchVAE's view embedding: the trunk's last
    feature map is flattened instead of average-pooled (:math:`5 \times 5 \times
    512` for 137-px views), which fixes the input size to ``image_size``.

    Args:
        arch: trunk architecture.
        in_channels: channels per view (1 grey, 3 colour).
        view_dim: per-view embedding width.
        aggregate: ``"gru"``, ``"max"`` or ``"mean"``.
        out_dim: output width (``None``: ``view_dim``).
        weights: see :func:`resnet_trunk`.
        pool: ``"avg"`` (global average pooling) or ``"flatten"``.
        image_size: view size ``H`` or ``(H, W)``; required for ``"flatten"``.
        channels_last: run the trunk in ``torch.channels_last`` memory format.

    Attributes:
        out_dim: :math:`D`.

    Shapes:
        - **input:** :math:`(B, V, C, H, W)`
        - **output:** :math:`(B, D)`, plus :math:`(B, V, \text{view\_dim})`
          per-view embeddings when ``return_view_embeddings=True``
    """

    def __init__(
        self,
        arch: Arch = "resnet18",
        in_channels: int = 3,
        view_dim: int = 1024,
        aggregate: Literal["gru", "max", "mean"] = "gru",
        out_dim: int | None = 1024,
        weights: str | None = None,
        pool: Literal["avg", "flatten"] = "avg",
        image_size: int | tuple[int, int] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if aggregate not in ("gru", "max", "mean"):
            raise ValueError(f"aggregate must be 'gru', 'max' or 'mean'; got {aggregate!r}")
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten'; got {pool!r}")
        if not isinstance(view_dim, int) or view_dim < 1:
            raise ValueError(f"view_dim must be a positive int; got {view_dim!r}")
        out_dim = view_dim if out_dim is None else out_dim
        if not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be a positive int or None; got {out_dim!r}")
        self.in_channels, self.aggregate, self.channels_last = in_channels, aggregate, channels_last
        self.view_dim, self.out_dim = view_dim, out_dim
        self.trunk = resnet_trunk(arch, in_channels, weights)
        feat = TRUNK_DIMS[arch]
        self.image_size: tuple[int, int] | None = None
        if pool == "flatten":
            if image_size is None:
                raise ValueError("pool='flatten' needs image_size (the view size H or (H, W))")
            h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self.image_size = (h, w)
            self.trunk.avgpool = nn.Identity()
            # conv1, max-pool and layers 2-4 each halve the size, rounding up.
            feat *= math.ceil(h / 32) * math.ceil(w / 32)
        self.embed = nn.Sequential(nn.Linear(feat, view_dim), nn.BatchNorm1d(view_dim))
        if aggregate == "gru":
            self.aggregator: nn.Module = nn.GRU(view_dim, out_dim, batch_first=True)
        else:
            self.aggregator = nn.Identity() if out_dim == view_dim else nn.Linear(view_dim, out_dim)
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)

    def view_embeddings(self, views: Tensor) -> Tensor:
        """Per-view embeddings :math:`e_v`, ``[B, V, view_dim]``."""
        _check_images(views, 5, self.in_channels, "views")
        b, v = views.shape[:2]
        if self.image_size is not None and tuple(views.shape[-2:]) != self.image_size:
            raise ValueError(f"pool='flatten' was built for {self.image_size} views; got {tuple(views.shape[-2:])}")
        flat = views.reshape(b * v, *views.shape[2:])
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return self.embed(self.trunk(flat)).view(b, v, self.view_dim)

    def forward(self, views: Tensor, return_view_embeddings: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        per_view = self.view_embeddings(views)
        if self.aggregate == "gru":
            _, last = self.aggregator(per_view)
            out = last[-1]
        else:
            pooled = per_view.amax(dim=1) if self.aggregate == "max" else per_view.mean(dim=1)
            out = self.aggregator(pooled)
        return (out, per_view) if return_view_embeddings else out


class MultiViewVAEEncoder(nn.Module):
    r"""SwitchVAE image encoder :math:`e^{img}` (Sec. 4.1): views -> :math:`(\mu, \log\sigma^2)`.

    ``n_views`` grey views spread evenly over the input's (:func:`select_views`: 4 of a 12-camera ring are
    every third) are standardised, embedded by a shared
    ResNet18 (flattened feature map, FC to ``view_dim``), aggregated by a GRU
    into a ``view_dim`` feature :math:`h`, and mapped by two heads
    :math:`\mu = \mathrm{BN}(W_\mu h)`, :math:`\log\sigma^2 = \mathrm{BN}(W_\sigma h)`
    (batch-normalised as the voxel encoder's heads, as in the official code).
    Fewer views than ``n_views`` are accepted (the GRU runs over what is given).

    Args:
        latent_dim: size of :math:`\mu`.
        n_views: views used, spread evenly over the input's views.
        view_size: view height = width (fixes the flattened feature size).
        view_dim: per-view embedding and GRU width.
        pool: ``"flatten"`` (paper) or ``"avg"``.
        weights: ResNet18 weights (see :func:`resnet_trunk`).

    Shapes:
        - **input:** :math:`(B, V, C, H, W)`, :math:`C \in \{1, 3\}`, values in [0, 1]
        - **output:** ``(mu, logvar)``, each :math:`(B, \text{latent\_dim})`
    """

    def __init__(self, latent_dim: int = 128, n_views: int = 8, view_size: int = 137, view_dim: int = 1024,
                 pool: Literal["flatten", "avg"] = "flatten", weights: str | None = None) -> None:
        super().__init__()
        self.n_views = n_views
        self.views = MultiViewEncoder("resnet18", in_channels=1, view_dim=view_dim, aggregate="gru",
                                      out_dim=view_dim, weights=weights, pool=pool,
                                      image_size=view_size if pool == "flatten" else None)
        self.mu = nn.Sequential(nn.Linear(view_dim, latent_dim), nn.BatchNorm1d(latent_dim))
        self.logvar = nn.Sequential(nn.Linear(view_dim, latent_dim), nn.BatchNorm1d(latent_dim))

    def features(self, views: Tensor) -> Tensor:
        """The aggregated ``view_dim`` feature :math:`h` before the latent heads."""
        if views.dim() != 5 or views.shape[2] not in (1, 3):
            raise ValueError(f"views must be [B, V, C, H, W] with C = 1 or 3; got {tuple(views.shape)}")
        views = select_views(views, self.n_views)
        if views.shape[2] == 3:
            views = views.mean(dim=2, keepdim=True)
        return self.views((views - GREY_MEAN) / GREY_STD)

    def forward(self, views: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(views)
        return self.mu(h), self.logvar(h)
