"""Subsets of a training split that protocols fit on: labelled fractions and validation parts.

Shared by the ``svm``, ``segmentation``, ``classification`` and ``fewshot``
protocols and by budget curves (``bench/sweep/curve.py``), so that "20% of the labels"
and "a validation split carved from train" mean one thing everywhere:

* :func:`class_balanced_subset` keeps ``round(fraction * n_c)`` shapes of every
  class ``c`` (at least one), drawn with a generator the caller seeds;
* :func:`carve_validation` holds out ``round(fraction * n_c)`` shapes of every
  class (at least one when the class has two or more, so no class vanishes
  from the fitting part), chosen by a seed; the test split is never an input;
* :class:`SplitView` is such a subset re-indexed from 0, looking like the parent;
* :func:`stream_seed` derives independent random streams from a run seed, so
  one choice (the label subset) does not shift with what another consumed;
* :func:`selection_validation` is the validation part a run seed's budget is chosen on
  (``bench curve --split val``), and :class:`WithoutValidation` the train split without it:
  the pretraining data of a method that reads labels (``Method.reads_labels``), so that its
  pretraining never sees a shape, nor the label, of the part its budget is chosen on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ssl3d.core.config import check_range
from ssl3d.datasets.cache import H5Reader
from ssl3d.datasets.errors import DataFileError

__all__ = ["SELECTION_VAL_FRACTION", "SplitView", "WithoutValidation", "carve_validation", "class_balanced_subset",
           "selection_validation", "stream_seed"]

#: share of each class of a train split in the validation part that budgets are chosen on (bench/sweep/curve.py's
#: VAL_FRACTION, which a test keeps equal) and that label readers' pretraining withholds
SELECTION_VAL_FRACTION = 0.2


def stream_seed(seed: int, stream: int) -> int:
    """A 32-bit seed of stream ``stream`` of run seed ``seed`` (numpy's SeedSequence: streams are independent)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def class_balanced_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices keeping ``fraction`` of each class (at least one shape per class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(idx))))
        keep.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(keep))


def carve_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into (fit, val), stratified: ``round(fraction * n_c)`` of each
    class (at least 1 when the class has 2 or more shapes, so no class vanishes from fit), chosen by ``seed``."""
    check_range("validation fraction", fraction, "(0, 1)")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        k = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        val.extend(rng.permutation(members)[:k].tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    fit_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return fit_idx, val_idx


def selection_validation(labels: np.ndarray, seed: int) -> np.ndarray:
    """Sorted positions of the validation part that run seed ``seed`` chooses a budget on: the carve of
    ``bench curve --split val`` (:func:`carve_validation` with the run seed itself, no stream)."""
    return carve_validation(labels, SELECTION_VAL_FRACTION, seed)[1]


class SplitView(Dataset):
    """Some shapes of a dataset, re-indexed from 0; everything else (class names, settings) is the parent's."""

    def __init__(self, parent: Any, indices: np.ndarray, part: str) -> None:
        self.parent, self.indices, self.part = parent, np.asarray(indices, dtype=np.int64), part

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "parent" not in self.__dict__:  # copies and pickles: no recursion
            raise AttributeError(name)
        return getattr(self.parent, name)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.parent[int(self.indices[index])])
        if "index" in sample:  # protocols index features by position in the split they were given
            sample["index"] = sample["index"].new_tensor(index)
        return sample

    @property
    def labels(self) -> np.ndarray:
        return self.parent.labels[self.indices]

    @property
    def shapes(self) -> list:
        """The index entries of these shapes; before the parent is prepared, positions are index positions
        (what :meth:`Protocol.check_data` reads before any side effect)."""
        if isinstance(self.parent, SplitView):  # a view of a view: the inner view maps its own positions
            return [self.parent.shapes[int(i)] for i in self.indices]
        valid = getattr(self.parent, "_valid", None)
        positions = self.indices if valid is None else np.asarray(valid)[self.indices]
        return [self.parent.shapes[int(i)] for i in positions]

    def shape_name(self, index: int) -> str:
        return self.parent.shape_name(int(self.indices[index]))


class WithoutValidation(SplitView):
    """A train split minus its :func:`selection_validation` part of ``seed``, carved when first needed.

    Carved on the prepared split's labels: the positions ``bench curve --split val`` carves from the evaluation
    train split whenever both keep the same shapes (on ModelNet10 every modality skips the same 27 unreadable
    meshes). Before the split is prepared, :meth:`settings` carves what its existing caches keep, or the whole
    index, and builds nothing (sweeps plan keys so). The withheld positions enter :meth:`settings`, hence every
    pretraining cache key made from them.
    """

    def __init__(self, parent: Any, seed: int) -> None:
        self.parent, self.seed, self.part, self._carved = parent, seed, "pretraining", None

    def _carve(self, prepare: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(kept, withheld) positions; ``prepare=False`` on an unprepared split: planned, not remembered."""
        if self._carved is not None:
            return self._carved
        provisional = not prepare and getattr(self.parent, "_valid", True) is None
        # a ShapeDataset's labels prepare it first
        labels = self._planned_labels() if provisional else np.asarray(self.parent.labels)
        val = selection_validation(labels, self.seed)
        carved = (np.setdiff1d(np.arange(len(labels)), val), val)
        if not provisional:
            self._carved = carved
        return carved

    def _planned_labels(self) -> np.ndarray:
        """The labels of the shapes the unprepared parent will keep, building nothing: the ``valid`` flags of its
        caches when they all exist (ModelNet10 skips 27 unreadable training meshes), else every indexed shape."""
        labels = np.array([shape.label for shape in self.parent.shapes], dtype=np.int64)
        keep = np.ones(len(labels), dtype=bool)
        try:
            for group in self.parent.groups():
                keep &= H5Reader(self.parent.cache_path(group)).valid
        except (DataFileError, ValueError):  # a cache still to build (or damaged): preparing decides
            return labels
        return labels[keep]

    @property
    def indices(self) -> np.ndarray:  # type: ignore[override]
        return self._carve()[0]

    @property
    def withheld(self) -> np.ndarray:
        """Positions in the parent split that the pretraining never sees."""
        return self._carve()[1]

    def prepare(self) -> Any:
        return self.parent.prepare()

    def settings(self, group: str) -> dict[str, Any]:
        withheld = self._carve(prepare=False)[1]
        return {**self.parent.settings(group), "withheld_validation": {
            "fraction": SELECTION_VAL_FRACTION, "n": int(len(withheld)),
            "sha256": hashlib.sha256(withheld.astype(np.int64).tobytes()).hexdigest()}}
