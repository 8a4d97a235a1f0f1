"""The few-shot protocol's optional fine-tuned head: encoder + linear head trained on one fold's support shapes.

Point-BERT and Point-MAE report few-shot accuracy by fine-tuning the whole
network on the ``way * shot`` support shapes of a fold. Here that is an option
of ``fewshot`` (``fewshot.finetune_epochs > 0``) beside the frozen-feature
classifiers, with two differences from their public code, both so that nothing
is chosen on the query (test) shapes:

* the number of epochs is fixed in advance (``finetune_epochs``), never the
  best epoch on the queries: a support set of 10-20 shapes per class is too
  small to carve a validation part from;
* the queries are scored once, after the last epoch.

Per fold: a trainable copy of ``method.encoder(modality)`` (the caller's method
is unchanged) and a linear head over ``way`` fold-local classes, AdamW
(``finetune_lr``, weight decay 0.05) on a cosine schedule over the epochs,
batches of at most 32 shapes, points augmented by Point-BERT's scale-and-translate
(:func:`~ssl3d.bench.protocols.cls_train.scale_translate`). Every random choice
derives from the run seed and the fold through independent streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl3d.bench.protocols.cls_train import ClassifierHead, DataInputs, EncoderClassifier, predict_logits, train_epoch
from ssl3d.bench.features.splits import stream_seed

__all__ = ["finetune_fold"]

INIT, SHUFFLE, AUGMENT = range(3)
WEIGHT_DECAY = 0.05  # as the classification protocol's default (Point-BERT's fine-tuning uses 0.05 too)
MAX_BATCH = 32


class _FoldShapes(Dataset):
    """Shapes of a split at ``indices`` with fold-local labels (the position of their class in the fold)."""

    def __init__(self, data: Any, indices: list[int], local_labels: np.ndarray) -> None:
        self.data, self.indices, self.local = data, [int(i) for i in indices], np.asarray(local_labels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.data[self.indices[i]])
        sample["label"] = torch.tensor(int(self.local[i]), dtype=torch.long)
        return sample


def finetune_fold(method: Any, train_data: Any, test_data: Any, fold: dict, modality: str, *, epochs: int,
                  lr: float, seed: int, fold_index: int, device: torch.device) -> float:
    """Query accuracy (%) of an encoder copy + linear head fine-tuned on the fold's support shapes."""
    way = len(fold["support"])
    support = _FoldShapes(train_data, [i for per_class in fold["support"] for i in per_class],
                          np.repeat(np.arange(way), [len(c) for c in fold["support"]]))
    query = _FoldShapes(test_data, [i for per_class in fold["query"] for i in per_class],
                        np.repeat(np.arange(way), [len(c) for c in fold["query"]]))
    stream = stream_seed(seed, fold_index)
    model = EncoderClassifier(method, modality, scratch=False, seed=stream_seed(stream, INIT), device=device)
    batch_size = min(MAX_BATCH, len(support))
    probe = next(DataInputs(support, modality, 2).batches())[0]
    dim = int(model.features(probe, train=False).shape[1])
    torch.manual_seed(stream_seed(stream, INIT))
    model.head = ClassifierHead(dim, way, "linear").to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    shuffle = torch.Generator().manual_seed(stream_seed(stream, SHUFFLE))
    augment = torch.Generator().manual_seed(stream_seed(stream, AUGMENT)) if modality == "points" else None
    inputs = DataInputs(support, modality, batch_size)
    for _ in range(epochs):
        train_epoch(model, inputs, optimizer, shuffle, augment, device)
        schedule.step()
    logits, labels = predict_logits(model, DataInputs(query, modality, MAX_BATCH), device)
    return 100.0 * float(np.mean(logits.argmax(axis=1) == labels))
