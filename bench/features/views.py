"""Shared helpers for protocols that read several modalities or the first v views."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


class FirstViews(Dataset):
    """A split whose ``views`` are cut to the first ``n_views`` (0 = all), e.g. MVCNN's 1/12/80-view settings."""

    def __init__(self, dataset: Dataset, n_views: int) -> None:
        self.dataset = dataset
        self.n_views = n_views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.dataset[index]
        if self.n_views and "views" in sample:
            if self.n_views > sample["views"].shape[0]:
                raise ValueError(f"asked for {self.n_views} views but the data has {sample['views'].shape[0]}")
            sample = {**sample, "views": sample["views"][: self.n_views]}
        return sample


def batched(dataset: Dataset, batch_size: int, progress: bool, desc: str):
    """Iterate a split in order, in batches, with an optional progress bar."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    return tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def pairwise_distance(query: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    """[Q, G] Euclidean or cosine distances (float64)."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    if metric == "euclidean":
        sq = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"unknown distance {metric!r}; valid: euclidean, cosine")
