r"""One scene-segmentation model: train a per-point head (and maybe the encoder) on blocks, score whole rooms.

Used by :mod:`ssl3d.bench.protocols.semseg` (definitions and paper settings are there).
Every random choice derives from the run seed through independent streams
(subset, encoder init, shuffling, head init and dropout), so one seed gives
identical numbers on a device, and the head starts the same in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

# the point-segmentation protocol's feature source (frozen / fine-tuned copy / re-initialised encoder), its
# per-point head and its seeding helpers are reused as they are, so both protocols train the same way
from ssl3d.bench.protocols.head_training import check_labels, cross_entropy_step
from ssl3d.bench.protocols.segmentation import PartSegHead, _PointFeatures, _rng_scope, _stream_seed
from ssl3d.bench.protocols.seg_metrics import shape_miou
from ssl3d.datasets.scene_blocks import merge_block_scores

__all__ = ["SceneHead", "scene_metrics", "train_and_score"]

#: blocks per prediction batch at least (eval mode: batch size does not change the scores)
PREDICT_BATCH = 32
#: protocol mode -> how the encoder is used (segmentation.py's modes)
ENCODER_MODE = {"scratch": "scratch", "finetune": "finetune", "linear": "frozen", "decoder": "frozen"}


class SceneHead(nn.Module):
    r"""Per-point classifier: ``linear`` (one Linear on :math:`f_i`) or the MLP head on :math:`[f_i, \max_j f_j]`.

    The MLP head is :class:`~ssl3d.bench.protocols.segmentation.PartSegHead` with a single
    category (a scene block has none), i.e. the DGCNN segmentation head on [local, global] features.

    Shapes:
        - **input:** features :math:`(B, N, D)`
        - **output:** logits :math:`(B, N, K)`
    """

    def __init__(self, feature_dim: int, num_classes: int, linear: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(feature_dim, num_classes) if linear else None
        self.mlp = None if linear else PartSegHead(feature_dim, 1, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        if self.linear is not None:
            return self.linear(features)
        return self.mlp(features, torch.zeros(len(features), dtype=torch.long, device=features.device))


def scene_metrics(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray], class_names: Sequence[str]) -> dict:
    r"""mIoU, overall accuracy and per-class IoU over all points of all rooms (in %).

    Per class :math:`c`, :math:`\mathrm{IoU}_c = TP_c / (TP_c + FP_c + FN_c)` over the whole test set
    (the S3DIS convention: rooms are concatenated, not averaged), computed by
    :func:`~ssl3d.bench.protocols.seg_metrics.shape_miou` on the concatenation with the single part
    ``[c]``; ``miou`` is the mean over the classes, ``point_acc`` the fraction of correct points.
    A class absent from both ground truth and prediction counts as IoU 100 (``shape_miou``'s convention)
    and is listed in ``absent_classes``.
    """
    pred = np.concatenate([np.asarray(p) for p in preds])
    target = np.concatenate([np.asarray(t) for t in targets])
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"predictions and targets must be non-empty and of one shape; got {pred.shape}, {target.shape}")
    per_class = {name: 100.0 * shape_miou(pred, target, [c]) for c, name in enumerate(class_names)}
    absent = [name for c, name in enumerate(class_names) if not ((pred == c) | (target == c)).any()]
    return {"miou": 100.0 * shape_miou(pred, target, range(len(class_names))),
            "point_acc": 100.0 * float((pred == target).mean()), "per_class_iou": per_class, "absent_classes": absent}


def _select(train_data, areas: Sequence[int], fraction: float, seed: int) -> np.ndarray:
    """Training blocks of ``areas``: ``round(fraction * n)`` (>= 1) of them, drawn with the seed."""
    pool = np.flatnonzero(np.isin(train_data.block_areas, list(areas)))
    if len(pool) == 0:
        have = sorted(set(train_data.block_areas.tolist()))
        raise ValueError(f"no training blocks in areas {list(areas)}; the train split has areas {have}")
    n = max(1, int(round(fraction * len(pool))))
    return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))


def train_and_score(method, train_data, test_data, *, mode: str, areas: Sequence[int], cfg, seed: int,
                    device: torch.device, progress: bool) -> tuple[dict, dict]:
    """Train one model in ``mode`` on the blocks of ``areas``; returns (metrics, details) on the test rooms."""
    keep = _select(train_data, areas, cfg.label_fraction, _stream_seed(seed, 0))
    num_classes = train_data.num_classes
    drop_last = len(keep) % cfg.batch_size == 1 and len(keep) > 1  # no BatchNorm batch of one
    with _rng_scope(device):
        source = _PointFeatures(method, ENCODER_MODE[mode], seed, device)
        first = train_data[int(keep[0])]["points"]
        with torch.no_grad():
            feature_dim = int(source(first.unsqueeze(0), train=False).shape[-1])
        shuffle = torch.Generator().manual_seed(_stream_seed(seed, 2))
        loader = DataLoader(Subset(train_data, keep.tolist()), batch_size=cfg.batch_size, shuffle=True,
                            generator=shuffle, drop_last=drop_last, num_workers=0)
        torch.manual_seed(_stream_seed(seed, 3))  # head init, then dropout
        head = SceneHead(feature_dim, num_classes, linear=mode == "linear").to(device)
        optimizer = torch.optim.Adam([*head.parameters(), *source.parameters()], lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr / 100)
        losses = []
        for _ in tqdm(range(cfg.epochs), desc=f"semseg {mode} areas {list(areas)}", disable=not progress, leave=False):
            losses.append(_epoch(head, source, loader, optimizer, num_classes, device))
            schedule.step()
        preds, targets, names = _predict_rooms(head, source, test_data, max(cfg.batch_size, PREDICT_BATCH), device)
    scores = scene_metrics(preds, targets, train_data.class_names)
    details = {"mode": mode, "train_areas": list(areas), "n_train_blocks": int(len(keep)),
               "n_test_rooms": len(preds), "n_test_points": int(sum(len(t) for t in targets)),
               "train_loss_by_epoch": [round(v, 5) for v in losses], "feature_dim": feature_dim,
               "per_class_iou": {k: round(v, 3) for k, v in scores["per_class_iou"].items()},
               "absent_classes": scores["absent_classes"], "test_rooms": names}
    return {"miou": scores["miou"], "point_acc": scores["point_acc"]}, details


def _epoch(head: SceneHead, source: _PointFeatures, loader: DataLoader, optimizer: torch.optim.Optimizer,
           num_classes: int, device: torch.device) -> float:
    head.train()
    total, count = 0.0, 0
    for batch in loader:
        target = batch["point_labels"].to(device)
        check_labels(target, num_classes, "point_labels")
        loss = cross_entropy_step(optimizer, head(source(batch["points"], train=True)), target, "semseg")
        total += loss * len(target)
        count += len(target)
    return total / max(count, 1)


@torch.no_grad()
def _predict_rooms(head: SceneHead, source: _PointFeatures, test_data, batch_size: int,
                   device: torch.device) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Per test room: merged predictions of its evaluation blocks, its labels, its name."""
    head.eval()
    preds, targets, names = [], [], []
    for r in range(test_data.n_rooms):
        blocks = test_data.room_blocks(r, train=False)
        scores = []
        for start in range(0, len(blocks), batch_size):
            chunk = blocks[start:start + batch_size]
            x = torch.stack([test_data.block_tensor(r, b) for b in chunk])
            scores.extend(torch.softmax(head(source(x, train=False)).float(), dim=-1).cpu().numpy())
        _, labels = test_data.room_points(r)
        preds.append(merge_block_scores(len(labels), blocks, scores))
        targets.append(np.asarray(labels))
        names.append(test_data.room_name(r))
    return preds, targets, names

