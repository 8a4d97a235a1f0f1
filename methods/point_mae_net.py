r"""Point-MAE's networks (Pang et al., ECCV 2022, Sec. 3.1-3.3, Fig. 2): masked encoder, light decoder, head.

Module names follow the official ``models/Point_MAE.py`` so a released checkpoint maps onto these
modules by renaming three prefixes (methods/point_mae_keys.py): ``encoder`` is the official
``MAE_encoder`` with its ``encoder`` (the mini-PointNet) named ``patch_embed``, ``decoder`` is
``MAE_decoder``; ``mask_token``, ``decoder_pos_embed`` and ``increase_dim`` keep their names.
Initialisation as there: truncated normal (std 0.02) for the encoder's linear and 1-D convolution
weights, Xavier-uniform for the decoder's linear layers, PyTorch's defaults elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssl3d.methods.backbones.point_patches import PatchEmbedding
from ssl3d.methods.backbones.point_transformer import TransformerStack

__all__ = ["PointMAEDecoder", "PointMAEEncoder", "PointMAENet", "centre_embedding", "split_by_mask"]


def centre_embedding(dim: int, hidden: int) -> nn.Sequential:
    """A patch centre's positional embedding: ``Linear(3, hidden)`` -> GELU -> ``Linear(hidden, dim)`` (Sec. 3.2)."""
    return nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, dim))


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` [B, T] of ``x`` [B, G, ...]."""
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


def split_by_mask(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the visible and of the masked patches, each in increasing order (the official token order).

    Shapes:
        - **mask:** :math:`(B, G)` bool, the same count per row -> :math:`(B, G - M)`, :math:`(B, M)`
    """
    counts = mask.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError("every cloud must have the same number of masked patches")
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    m = int(counts[0])
    return order[:, : mask.shape[1] - m], order[:, mask.shape[1] - m:]


class PointMAEEncoder(nn.Module):
    r"""The official ``MaskTransformer`` without its masking: patch tokens -> Transformer -> LayerNorm.

    Every patch is embedded (BatchNorm sees all of them, as in the official code); with
    ``visible`` only those tokens enter the Transformer (Eq. 3), without it all do (embedding,
    fine-tuning).

    Shapes:
        - **patches:** :math:`(B, G, k, 3)`; **centres:** :math:`(B, G, 3)`; **visible:** :math:`(B, V)` long
        - **output:** :math:`(B, V, D)`, or :math:`(B, G, D)` without ``visible``
    """

    def __init__(self, dim: int, depth: int, num_heads: int, *, patch_hidden: tuple[int, int, int],
                 pos_hidden: int, mlp_ratio: float, drop_path_rate: float) -> None:
        super().__init__()
        self.patch_embed = PatchEmbedding(dim, patch_hidden)
        self.pos_embed = centre_embedding(dim, pos_hidden)
        self.blocks = TransformerStack(dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(dim)
        self.apply(_encoder_init)

    def forward(self, patches: Tensor, centres: Tensor, visible: Tensor | None = None) -> Tensor:
        tokens = self.patch_embed(patches)
        if visible is not None:
            tokens, centres = _gather(tokens, visible), _gather(centres, visible)
        return self.norm(self.blocks(tokens, self.pos_embed(centres)))


class PointMAEDecoder(TransformerStack):
    r"""The official ``TransformerDecoder``: blocks over [visible, mask tokens], LayerNorm of the last ``M`` (Eq. 4)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path_rate: float) -> None:
        super().__init__(dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(dim)
        self.apply(_decoder_init)

    def forward(self, x: Tensor, pos: Tensor, num_masked: int) -> Tensor:  # type: ignore[override]
        return self.norm(super().forward(x, pos)[:, x.shape[1] - num_masked:])


class PointMAENet(nn.Module):
    r"""Fig. 2: encoder on the visible patches, decoder with mask tokens, a linear head per masked patch (Eq. 3-5).

    ``forward`` returns the predicted masked patches :math:`P_{pre}` and the true ones :math:`P_{gt}`
    (both relative to their centres), flattened over the batch, for the Chamfer loss (Eq. 6).

    Shapes:
        - **patches:** :math:`(B, G, k, 3)`; **centres:** :math:`(B, G, 3)`; **mask:** :math:`(B, G)` bool
        - **output:** :math:`(B M, k, 3)`, :math:`(B M, k, 3)`
    """

    def __init__(self, *, dim: int, depth: int, num_heads: int, decoder_depth: int, decoder_num_heads: int,
                 group_size: int, patch_hidden: tuple[int, int, int], pos_hidden: int, mlp_ratio: float,
                 drop_path_rate: float) -> None:
        super().__init__()
        self.encoder = PointMAEEncoder(dim, depth, num_heads, patch_hidden=patch_hidden, pos_hidden=pos_hidden,
                                       mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = centre_embedding(dim, pos_hidden)
        self.decoder = PointMAEDecoder(dim, decoder_depth, decoder_num_heads, mlp_ratio, drop_path_rate)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * group_size, 1))  # Eq. 5's FC, as the official 1x1 conv
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.group_size = group_size

    def forward(self, patches: Tensor, centres: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        visible, masked = split_by_mask(mask)
        b, m = masked.shape
        x_vis = self.encoder(patches, centres, visible)
        pos = self.decoder_pos_embed(torch.cat([_gather(centres, visible), _gather(centres, masked)], dim=1))
        x_full = torch.cat([x_vis, self.mask_token.expand(b, m, -1)], dim=1)
        h = self.decoder(x_full, pos, m)  # [B, M, D]
        pred = self.increase_dim(h.transpose(1, 2)).transpose(1, 2).reshape(b * m, self.group_size, 3)
        return pred, _gather(patches, masked).reshape(b * m, -1, 3)


def _encoder_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _decoder_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
