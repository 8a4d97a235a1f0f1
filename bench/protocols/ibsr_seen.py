"""The seen-gallery IBSR protocol (``ibsr-seen``): new photos of the training shapes query the training shapes.

CMIC's own setting (Lin et al., ICCV 2021, Sec. 4 "Datasets", Table 1 "seen 3D models"): the gallery is the
shapes the network was trained with and the queries are photos it was not trained on. ``ibsr`` on synth and
ModelNet10 instead queries a gallery of test shapes no pretraining saw. Definition (also in docs/protocols.md):

* gallery: the train split's shapes, given as ``ibsr-seen.gallery_modality`` (``views``); on datasets whose
  items are photos (Pix3D) the train split's ``gallery_split()`` (every shape by default, as CMIC);
* queries where the items are shapes (synth, ModelNet10): ``photos_per_shape`` of the ``held_out_photos`` of
  ``queries_per_class`` training shapes per category (all when fewer), drawn with a stream of the run seed.
  Those photos are new photo-like renders of the shape from their own seed stream (new camera, crop, colours,
  light, background: ``datasets/modalities/builtin.py``), never the ``image`` that pretraining reads;
* queries where the items are photos (Pix3D): the test photos whose shape has a training photo;
* the validation part that a label reader's pretraining withholds (``selection_validation`` of the run seed,
  ``bench/run/pretrain_cache.py``) gives no query shape, for every method, so that every query shows a shape
  pretraining saw and every method of a seed is scored on the same queries; those shapes stay in the gallery;
* scores and metrics: ``ibsr``'s (:meth:`IBSRProtocol.retrieve`): ``top{k}_acc`` (k in ``ks``: 1, 5, 10),
  ``category_acc``, ``hau``, ``iou`` and the per-category rows. A query's ground truth is its shape's gallery
  position, so the several photos of a shape share one ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl3d.bench.features import extract_features
from ssl3d.bench.features.splits import SplitView, selection_validation, stream_seed
from ssl3d.bench.protocols.base import EvalContext, ProtocolResult, register_protocol
from ssl3d.bench.protocols.ibsr import IBSRConfig, IBSRProtocol
from ssl3d.core.config import ConfigError
from ssl3d.datasets.base import DATASETS
from ssl3d.datasets.modalities.builtin import HELD_OUT_PHOTOS

#: the modalities of the held-out photo split
HELD_OUT = ("held_out_photos", "held_out_masks")
_QUERY_STREAM = 0  # the stream of the run seed that draws the query shapes


@dataclass(frozen=True)
class IBSRSeenConfig(IBSRConfig):
    """``ibsr`` settings but ``gallery_dataset`` (``--set ibsr-seen.KEY=VALUE``), and how queries are drawn."""

    ks: tuple[int, ...] = field(default=(1, 5, 10), metadata={"range": "[1, inf)"})  # instance top-k cut-offs
    queries_per_class: int = field(default=50, metadata={"range": "[0, inf)"})  # query shapes per category (0 = every seen shape)
    photos_per_shape: int = field(default=3, metadata={"range": f"[1, {HELD_OUT_PHOTOS}]"})  # held-out photos of each query shape


def per_class_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions keeping ``min(per_class, n_c)`` of each class ``c``, drawn without replacement
    (every position when ``per_class`` is 0)."""
    labels = np.asarray(labels)
    if per_class == 0:
        return np.arange(len(labels))
    keep = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int(np.sum(labels == c))), replace=False)
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


class PhotoQueries(Dataset):
    """Query ``j`` = held-out photo ``j % k`` of shape ``shapes[j // k]`` of a split, as an ``image`` + ``mask`` item."""

    def __init__(self, photos: Dataset, shapes: np.ndarray, per_shape: int) -> None:
        self.photos, self.shapes, self.per_shape = photos, np.asarray(shapes, dtype=np.int64), per_shape
        self._last: tuple[int, dict[str, torch.Tensor]] | None = None  # queries come in order: read a shape once

    def __len__(self) -> int:
        return len(self.shapes) * self.per_shape

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        shape, k = divmod(int(index), self.per_shape)
        if self._last is None or self._last[0] != shape:
            self._last = (shape, self.photos[int(self.shapes[shape])])
        item = self._last[1]
        return {"image": item["held_out_photos"][k], "mask": item["held_out_masks"][k], "label": item["label"],
                "index": torch.tensor(index, dtype=torch.int64)}


@register_protocol("ibsr-seen")
class IBSRSeenProtocol(IBSRProtocol):
    """Held-out photos of the training shapes -> the training-shape gallery (see module docstring)."""

    name = "ibsr-seen"
    Config = IBSRSeenConfig

    def _check_gallery_dataset(self) -> None:
        if self.config.gallery_dataset:
            raise ConfigError("ibsr-seen.gallery_dataset: the seen gallery is the task's training shapes; unseen "
                              "galleries are ibsr's (--set ibsr.gallery_dataset=NAME on an ibsr task)")

    def check_data(self, train_data: Any, test_data: Any) -> None:
        """Before any pretraining: a dataset whose items are shapes can render held-out photos of them."""
        if train_data.gallery_split(()) is None:
            self.held_out_photos(train_data, progress=False, prepare=False)

    def held_out_photos(self, train_data: Any, progress: bool, prepare: bool = True) -> Any:
        """The train split with :data:`HELD_OUT` alone (its own cache, built here on first use)."""
        cls = DATASETS.get(train_data.name)
        if not set(HELD_OUT) <= cls.available_modalities:
            raise ConfigError(f"ibsr-seen: {cls.name} cannot render held-out photos of its shapes (it provides "
                              f"{', '.join(sorted(cls.available_modalities))}); its ibsr task is the one to run")
        return cls("train", HELD_OUT, train_data.config, train_data.root, progress=progress, prepare=prepare)

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        if modality != "image":
            raise ValueError(f"ibsr-seen queries are photos: it evaluates image, not {modality!r}")
        if train_data.gallery_split(()) is None:
            return self._held_out_queries(method, train_data, ctx)
        return self._test_photo_queries(method, train_data, test_data, ctx)

    def _embed(self, method, queries: Dataset, ctx: EvalContext) -> tuple[np.ndarray, np.ndarray]:
        return extract_features(method, queries, "image", batch_size=ctx.batch_size, progress=ctx.progress,
                                desc="embed queries (held-out photos)")

    def _held_out_queries(self, method, train_data, ctx: EvalContext) -> ProtocolResult:
        """Items are shapes: held-out renders of a per-class subset of the seen training shapes."""
        cfg = self.config
        photos = self.held_out_photos(train_data, ctx.progress)
        position = {train_data.shape_name(i): i for i in range(len(train_data))}
        withheld = selection_validation(train_data.labels, ctx.seed)
        seen = np.ones(len(train_data), dtype=bool)
        seen[withheld] = False
        shape_of_photo = np.array([position.get(photos.shape_name(i), -1) for i in range(len(photos))], dtype=np.int64)
        # a shape another gallery modality lacks (-1) or that pretraining may have withheld gives no query
        candidates = np.flatnonzero((shape_of_photo >= 0) & seen[np.maximum(shape_of_photo, 0)])
        rng = np.random.default_rng(stream_seed(ctx.seed, _QUERY_STREAM))
        chosen = candidates[per_class_subset(photos.labels[candidates], cfg.queries_per_class, rng)]
        if not len(chosen):
            raise ValueError(f"ibsr-seen: none of the {len(train_data)} training shapes can give a query (every one "
                             "is withheld for validation or lacks its held-out photos)")
        query, labels = self._embed(method, PhotoQueries(photos, chosen, cfg.photos_per_shape), ctx)
        shape_of = np.repeat(shape_of_photo[chosen], cfg.photos_per_shape)
        result = self.retrieve(method, query, labels, shape_of, train_data, tuple(train_data.class_names), ctx,
                               "the task's training shapes (seen)")
        result.details.update(queries="held-out photo-like renders of training shapes",
                              n_query_shapes=int(len(chosen)), photos_per_shape=cfg.photos_per_shape,
                              queries_per_class=cfg.queries_per_class, n_withheld_validation=int(len(withheld)))
        return result

    def _test_photo_queries(self, method, train_data, test_data, ctx: EvalContext) -> ProtocolResult:
        """Items are photos (Pix3D): the test photos of shapes that a (kept) training photo shows."""
        gallery = train_data.gallery_split()
        withheld = selection_validation(train_data.labels, ctx.seed)
        kept = np.setdiff1d(np.arange(len(train_data)), withheld)
        seen = {gallery.shape_name(int(p)) for p in np.asarray(train_data.query_shape_index)[kept] if p >= 0}
        test_gallery = test_data.gallery_split()
        truth = [test_gallery.shape_name(int(p)) if p >= 0 else None for p in test_data.query_shape_index]
        queries = np.array([i for i, name in enumerate(truth) if name in seen], dtype=np.int64)
        if not len(queries):
            raise ValueError(f"ibsr-seen: none of the {len(test_data)} test photos shows a shape of a training photo")
        query, labels = self._embed(method, SplitView(test_data, queries, "photos of seen shapes"), ctx)
        position = {gallery.shape_name(j): j for j in range(len(gallery))}
        shape_of = np.array([position[truth[i]] for i in queries], dtype=np.int64)
        result = self.retrieve(method, query, labels, shape_of, gallery, tuple(test_data.class_names), ctx,
                               "the training photos' gallery_split() (seen)")
        result.details.update(queries="test photos of shapes with a training photo", n_seen_shapes=len(seen),
                              n_dropped_queries=int(len(test_data) - len(queries)),
                              n_withheld_validation=int(len(withheld)))
        return result
