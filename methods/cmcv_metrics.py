r"""CM-CV's pretext metrics (Jing et al., CVPRW 2021, Sec. 4.2, Tables 1-2), measured after pretraining."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ssl3d.methods.augment.crops import center_crop
from ssl3d.methods.cmcv_config import CMCVConfig

__all__ = ["pretext_metrics"]


@torch.no_grad()
def pretext_metrics(model: nn.Module, data: Dataset, config: CMCVConfig) -> dict[str, Any]:
    r"""Tables 1-2 of Sec. 4.2 on ``metric_pairs`` pairs drawn with ``metric_seed``.

    :math:`m` = ``metric_pairs // 2`` anchors :math:`i` with a different object
    :math:`j`, two distinct held-out views :math:`a, b` of :math:`i` and one
    held-out view :math:`c` of :math:`j` (all views if none are held out).
    Cross-modality accuracy (%) of :math:`F_f` over the :math:`2m` pairs
    :math:`(a, p_i)` (same) and :math:`(c, p_i)` (different); mPD = mean (std)
    of :math:`\|F_{img}(a) - F_{img}(b)\|_2` (positive) and
    :math:`\|F_{img}(a) - F_{img}(c)\|_2` (negative). Eval mode, centre crops,
    no point augmentation.

    Args:
        model: the CM-CV networks (:class:`~ssl3d.methods.cmcv.CMCVNet`, or anything
            with its ``image``, ``points`` and ``pair_logits``).
        data: objects with ``points`` and ``n_views`` ``views``.
        config: the method's config (pairs, seed, held-out views, crop size).
    """
    n, m = len(data), max(1, config.metric_pairs // 2)
    held = config.heldout_views if config.heldout_views >= 2 else 0
    first = config.n_views - held if held else 0
    pool = held or config.n_views
    g = torch.Generator().manual_seed(config.metric_seed)
    anchor = torch.randint(n, (m,), generator=g)
    other = torch.randint(n - 1, (m,), generator=g)
    other += (other >= anchor).long()
    ab = torch.rand(m, pool, generator=g).argsort(dim=1)[:, :2] + first
    c = torch.randint(pool, (m,), generator=g) + first
    device = next(model.parameters()).device
    model.eval()
    crop = config.crop_size
    correct, d_pos, d_neg = 0, [], []
    for s in range(0, m, 32):
        idx = range(s, min(m, s + 32))
        samples = [data[int(anchor[t])] for t in idx]
        points = torch.stack([x["points"] for x in samples]).to(device)
        imgs = torch.stack([torch.stack([x["views"][ab[t, 0]], x["views"][ab[t, 1]], data[int(other[t])]["views"][c[t]]])
                            for x, t in zip(samples, idx)]).to(device)  # [b, 3, C, H, W]
        b = imgs.shape[0]
        f = model.image(center_crop(imgs, crop).reshape(b * 3, imgs.shape[2], crop, crop)).view(b, 3, -1)
        logits = model.pair_logits(f[:, [0, 2]], model.points(points).global_feature)  # pairs (a, p), (c, p)
        correct += int((logits.argmax(-1) == torch.tensor([1, 0], device=device)).sum())
        d_pos.append((f[:, 0] - f[:, 1]).norm(dim=-1).cpu())
        d_neg.append((f[:, 0] - f[:, 2]).norm(dim=-1).cpu())
    pos, neg = torch.cat(d_pos).double(), torch.cat(d_neg).double()
    return {"pairs": 2 * m, "seed": config.metric_seed, "views": "held-out" if held else "all (none held out)",
            "cross_modality_acc": round(100.0 * correct / (2 * m), 3),
            "positive_mpd": round(float(pos.mean()), 4), "positive_mpd_std": round(float(pos.std(unbiased=False)), 4),
            "negative_mpd": round(float(neg.mean()), 4), "negative_mpd_std": round(float(neg.std(unbiased=False)), 4)}
