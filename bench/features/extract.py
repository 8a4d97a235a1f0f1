"""Feature extraction: a pretrained method + a dataset split -> a feature matrix."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ssl3d.bench.features.cache import cached_features


def extract_features(
    method, dataset: Dataset, modality: str, *, batch_size: int = 32, progress: bool = True, desc: str = "embed"
) -> tuple[np.ndarray, np.ndarray]:
    """``method.embed`` over a whole split, in order; reused from the feature cache when the same weights
    already embedded the same shapes (bench/features/cache.py).

    Returns:
        (features float32 [S, D], labels int64 [S]).
    """
    return cached_features(method, dataset, modality,
                           lambda data: _embed_all(method, data, modality, batch_size, progress, desc))


def _embed_all(method, dataset: Dataset, modality: str, batch_size: int, progress: bool,
               desc: str) -> tuple[np.ndarray, np.ndarray]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    feats, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        out = method.embed(batch, modality)
        if out.ndim != 2 or out.shape[0] != batch["label"].shape[0]:
            raise ValueError(f"{method.name}.embed returned shape {tuple(out.shape)}; expected [B, D]")
        if not torch.isfinite(out).all():
            raise FloatingPointError(f"{method.name}.embed returned non-finite features for {modality}")
        feats.append(out.numpy().astype(np.float32))
        labels.append(batch["label"].numpy())
    return np.concatenate(feats), np.concatenate(labels).astype(np.int64)
