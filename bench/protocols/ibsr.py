"""The image-based shape retrieval protocol (IBSR): photos query a gallery of shapes.

Definition (also in docs/protocols.md), following CMIC (Lin et al., ICCV 2021,
Section 4, Tables 1 and 3):

* queries: the ``image`` (photo-like render or real photo) of every test item;
  gallery: every test shape, represented by ``ibsr.gallery_modality``
  (``views`` by default: its multi-view renders); query i's ground-truth shape
  is gallery item i on datasets with one photo per shape (synth), or
  ``query_shape_index[i]`` of the split's ``gallery_split()`` of unique shapes
  on datasets with several photos per shape (Pix3D);
* similarity: methods with a query-conditioned shape embedding (CMIC's
  attention over views) score each (query, shape) pair through
  ``method.ibsr_similarity_batch``; all others by the negative distance between
  ``embed(image)`` and ``embed(gallery)`` (``ibsr.distance``, cosine by default);
* ``top{k}_acc``: % of queries whose ground-truth shape is among the k most
  similar shapes (instance level); ``category_acc``: % of queries whose most
  similar shape has the query's category;
* ``hau`` and ``iou`` (``ibsr.shape_distances``, on by default; CMIC Table 1's
  d_HAU and d_IoU, Sec. 4.1 "Evaluation"): the mean over queries of the
  modified Hausdorff distance between the top-1 retrieved shape's and the
  ground-truth shape's ``points`` (each shape normalised on its own,
  ``ibsr.hau_normalisation``) and of the IoU of their ``voxels`` grids; both
  fractions as CMIC prints them (definitions and sources:
  :mod:`~ssl3d.bench.protocols.shape_distance`);
* per-category rows (``ibsr.per_category``): the same metrics over the queries
  of one category, named ``<metric>:<category>`` (``top1_acc:chair``,
  ``hau:bed``) as in CMIC Table 1;
* unseen shapes (``ibsr.gallery_dataset=NAME``, CMIC Table 1's "unseen 3D
  models"): the gallery is the test split of another dataset (its
  ``gallery_split()`` where it has one), prepared with the query dataset's
  pipeline settings. The ground-truth shape is then not in the gallery, so
  only ``hau``, ``iou`` (to the query's own ground-truth shape) and, when the
  gallery has every query category by name, ``category_acc`` are reported.

Plain metrics are means over queries. CMIC's Pix3D "mean" row is the
unweighted mean of its four category rows; the per-category rows allow that
mean to be formed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.shape_distance import retrieved_shape_distances
from ssl3d.bench.features.views import FirstViews, batched, pairwise_distance
from ssl3d.core.config import ConfigError
from ssl3d.datasets.base import DATASETS, DataConfig

if TYPE_CHECKING:  # annotations only
    from ssl3d.bench.protocols.tasks import Task
    from ssl3d.datasets.base import ShapeDataset
    from ssl3d.methods import Method

#: the shape modalities the distances read
SHAPE_MODALITIES = ("points", "voxels")


@dataclass(frozen=True)
class IBSRConfig:
    """IBSR settings (``--set ibsr.KEY=VALUE``)."""

    gallery_modality: str = "views"  # how gallery shapes are given to the method
    distance: str = "cosine"  # for plain embeddings: cosine or euclidean
    n_views: int = field(default=0, metadata={"range": "[0, inf)"})  # give the method only the first n views (0 = all)
    ks: tuple[int, ...] = field(default=(1, 10), metadata={"range": "[1, inf)"})  # instance top-k cut-offs
    shape_distances: bool = True  # also hau / iou of the top-1 shape vs the ground truth (reads points and voxels)
    hau_normalisation: Literal["unit_cube", "unit_sphere"] = "unit_cube"  # how each point sample is scaled before d_H
    per_category: bool = True  # also <metric>:<category> rows (CMIC Table 1)
    gallery_dataset: str = ""  # "" = the task's own test shapes (seen); a dataset name = its test shapes (unseen)


def ranking(similarity: np.ndarray) -> np.ndarray:
    """[Q, G] gallery positions by decreasing similarity; ties keep gallery order (stable), so a constant
    similarity is not rewarded."""
    return np.argsort(-np.asarray(similarity, dtype=np.float64), axis=1, kind="stable")


def ibsr_metrics(similarity: np.ndarray, shape_of: np.ndarray, query_labels: np.ndarray,
                 gallery_labels: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Instance top-k accuracy and top-1 category accuracy (%) from a [Q, G] similarity matrix.

    Ties are broken by gallery order (stable sort), so a constant similarity is not rewarded.
    """
    order = ranking(similarity)
    rank_hit = order == np.asarray(shape_of)[:, None]
    out = {f"top{k}_acc": 100.0 * float(rank_hit[:, :k].any(axis=1).mean()) for k in ks}
    out["category_acc"] = 100.0 * float(np.mean(gallery_labels[order[:, 0]] == query_labels))
    return out


def per_category(values: dict[str, np.ndarray], query_labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """``{"<metric>:<category>": mean over that category's queries}`` for every category with queries."""
    out = {}
    for c in np.unique(query_labels):
        mask = query_labels == c
        for metric, per_query in values.items():
            out[f"{metric}:{class_names[int(c)]}"] = float(np.mean(per_query[mask]))
    return out


def shape_arrays(data: ShapeDataset) -> tuple[np.ndarray, np.ndarray]:
    """``points`` float32 [S, N, 3] and ``voxels`` bool [S, R, R, R] of every item of a split of shapes."""
    points, voxels = [], []
    for i in range(len(data)):
        item = data[i]
        points.append(item["points"].numpy())
        voxels.append(item["voxels"].numpy() > 0.5)
    return np.stack(points).astype(np.float32), np.stack(voxels)


@register_protocol("ibsr")
class IBSRProtocol(Protocol):
    """Photo -> shape retrieval on the test split (see module docstring)."""

    name = "ibsr"
    Config = IBSRConfig

    def __init__(self, config: IBSRConfig | None = None) -> None:
        super().__init__(config)
        self._check_gallery_dataset()

    def _check_gallery_dataset(self) -> None:
        """Before any side effect: the unseen gallery is a registered dataset offering what the protocol reads."""
        cfg = self.config
        if not cfg.gallery_dataset:
            return
        if not cfg.shape_distances:
            raise ConfigError("ibsr.gallery_dataset (unseen shapes) is measured by hau / iou only: "
                              "it needs ibsr.shape_distances=true")
        cls = DATASETS.get(cfg.gallery_dataset)  # unknown names list the valid ones
        lacking = [m for m in (cfg.gallery_modality, *SHAPE_MODALITIES) if m not in cls.available_modalities]
        if lacking:
            raise ConfigError(f"ibsr.gallery_dataset={cfg.gallery_dataset}: it cannot provide {', '.join(lacking)} "
                              f"(it provides {', '.join(sorted(cls.available_modalities))})")

    def supports(self, method_cls: type[Method], task: Task, modality: str | None = None) -> str | None:
        """The base checks, and: without a query-conditioned score the method must embed the gallery modality."""
        return super().supports(method_cls, task, modality) or self._gallery_problem(method_cls)

    def _gallery_problem(self, method_cls: type[Method]) -> str | None:
        gallery = self.config.gallery_modality
        if method_cls.query_conditioned or gallery in method_cls.embed_modalities:
            return None
        return f"cannot embed the shape gallery ({gallery})"

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        # a photo query comes with its mask (CMIC's query encoder reads RGB + mask); the ground-truth shapes
        # come with points and voxels when their distance to the retrieved shape is measured
        extra = ("mask",) if modality == "image" else ()
        shapes = SHAPE_MODALITIES if self.config.shape_distances else ()
        gallery = () if self.config.gallery_dataset else (self.config.gallery_modality,)
        return tuple(dict.fromkeys((modality, *extra, *gallery, *shapes)))

    def check_data(self, train_data: ShapeDataset, test_data: ShapeDataset) -> None:
        """Before any pretraining: the unseen gallery's test split is there (indexing it checks its raw files)."""
        if self.config.gallery_dataset:
            self._gallery_dataset(test_data, progress=False)

    def _gallery_dataset(self, test_data: ShapeDataset, progress: bool) -> ShapeDataset:
        cls = DATASETS.get(self.config.gallery_dataset)
        common = {f.name: getattr(test_data.config, f.name) for f in dataclasses.fields(DataConfig)}
        config = dataclasses.replace(cls.Config(), **common)
        modalities = (self.config.gallery_modality, *SHAPE_MODALITIES)
        return cls("test", modalities, config, test_data.root, progress=progress, prepare=False)

    def unseen_gallery(self, test_data: ShapeDataset, progress: bool) -> ShapeDataset:
        """The test shapes of ``ibsr.gallery_dataset``, with the query dataset's pipeline settings."""
        data = self._gallery_dataset(test_data, progress)
        shapes = data.gallery_split(data.modalities)  # a dataset whose items are photos (Pix3D): its unique shapes
        return data if shapes is None else shapes

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg = self.config
        unseen = self.unseen_gallery(test_data, ctx.progress) if cfg.gallery_dataset else None  # fail early
        query, labels = extract_features(method, FirstViews(test_data, cfg.n_views), modality,
                                         batch_size=ctx.batch_size, progress=ctx.progress,
                                         desc=f"embed queries ({modality})")
        # datasets with several photos per shape (Pix3D) give a separate gallery of unique shapes
        truth_data = test_data.gallery_split()
        if truth_data is None:  # the items are the shapes: query i shows gallery shape i
            truth_data, shape_of = test_data, np.arange(len(labels))
        else:
            shape_of = np.asarray(test_data.query_shape_index)
        return self.retrieve(method, query, labels, shape_of, truth_data, tuple(test_data.class_names), ctx,
                             cfg.gallery_dataset or "seen (the task's test shapes)", unseen)

    def retrieve(self, method, query: np.ndarray, labels: np.ndarray, shape_of: np.ndarray, truth_data,
                 names: tuple[str, ...], ctx: EvalContext, gallery: str, unseen=None) -> ProtocolResult:
        """The metrics of embedded queries against a gallery (shared with ``ibsr-seen``).

        Args:
            query: float32 [Q, D] query embeddings; labels: int64 [Q] their categories (indices into ``names``).
            shape_of: int64 [Q], each query's ground-truth shape as a position in ``truth_data``.
            truth_data: the split of shapes the ground truths are in, and the gallery unless ``unseen`` is given.
            gallery: how the result's details describe the gallery.
            unseen: another split of shapes to retrieve from (the ground truth is then not in the gallery).
        """
        cfg = self.config
        gallery_data = unseen if unseen is not None else truth_data
        gallery_labels = np.asarray(gallery_data.labels)
        similarity, scoring = self._similarity(method, FirstViews(gallery_data, cfg.n_views), query, ctx)
        order = ranking(similarity)
        top1 = order[:, 0]
        per_query: dict[str, np.ndarray] = {}
        if unseen is None:
            metrics = ibsr_metrics(similarity, shape_of, labels, gallery_labels, tuple(cfg.ks))
            per_query.update({f"top{k}_acc": 100.0 * (order[:, :k] == shape_of[:, None]).any(axis=1)
                              for k in cfg.ks})
        else:
            metrics = {}
            gallery_names = np.array(gallery_data.class_names)
            if set(names[int(c)] for c in np.unique(labels)) <= set(gallery_names.tolist()):
                hit = gallery_names[gallery_labels[top1]] == np.array(names)[labels]
                metrics["category_acc"] = 100.0 * float(hit.mean())
        details = {"scoring": scoring, "n_queries": int(len(query)), "gallery_modality": cfg.gallery_modality,
                   "gallery": gallery, "n_gallery": int(len(gallery_labels))}
        if cfg.shape_distances:
            truth_points, truth_voxels = shape_arrays(truth_data)
            found_points, found_voxels = shape_arrays(gallery_data) if unseen is not None else (truth_points, truth_voxels)
            hau, iou = retrieved_shape_distances(truth_points, truth_voxels, shape_of, found_points, found_voxels,
                                                 top1, cfg.hau_normalisation)
            metrics.update(hau=float(hau.mean()), iou=float(iou.mean()))
            per_query.update(hau=hau, iou=iou)
            details.update(hau_normalisation=cfg.hau_normalisation, n_points=int(truth_points.shape[1]),
                           voxel_resolution=int(truth_voxels.shape[1]))
        if cfg.per_category:
            metrics.update(per_category(per_query, labels, names))
        return ProtocolResult(metrics, details)

    def _similarity(self, method, gallery_view, query: np.ndarray, ctx: EvalContext) -> tuple[np.ndarray, str]:
        """[Q, G] query-to-gallery scores and how they were made."""
        cfg = self.config
        if method.query_conditioned:
            return self._conditioned(method, gallery_view, query, ctx), "query-conditioned"
        problem = self._gallery_problem(type(method))
        if problem:
            raise ValueError(f"method {method.name!r} {problem}; it embeds "
                             f"{', '.join(sorted(method.embed_modalities))} (set ibsr.gallery_modality)")
        gallery, _ = extract_features(method, gallery_view, cfg.gallery_modality, batch_size=ctx.batch_size,
                                      progress=ctx.progress, desc=f"embed gallery ({cfg.gallery_modality})")
        return -pairwise_distance(query, gallery, cfg.distance), f"plain embeddings, {cfg.distance}"

    def _conditioned(self, method, data, query: np.ndarray, ctx: EvalContext) -> np.ndarray:
        """[Q, G] scores from the method's query-conditioned hook, one gallery batch at a time."""
        model = method.require_pretrained()
        model.eval()
        device = next(model.parameters()).device
        q = torch.from_numpy(query).to(device)
        columns = []
        with torch.no_grad():
            for batch in batched(data, ctx.batch_size, ctx.progress, "score gallery"):
                views = batch[self.config.gallery_modality].to(device)
                columns.append(method.ibsr_similarity_batch(q, views).float().cpu().numpy())
        return np.concatenate(columns, axis=1)
