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
  similar shape has the query's category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.views import FirstViews, batched, pairwise_distance

if TYPE_CHECKING:  # annotations only
    from ssl3d.bench.tasks import Task
    from ssl3d.methods import Method


@dataclass(frozen=True)
class IBSRConfig:
    """IBSR settings (``--set ibsr.KEY=VALUE``)."""

    gallery_modality: str = "views"  # how gallery shapes are given to the method
    distance: str = "cosine"  # for plain embeddings: cosine or euclidean
    n_views: int = field(default=0, metadata={"range": "[0, inf)"})  # give the method only the first n views (0 = all)
    ks: tuple[int, ...] = field(default=(1, 10), metadata={"range": "[1, inf)"})  # instance top-k cut-offs


def ibsr_metrics(similarity: np.ndarray, shape_of: np.ndarray, query_labels: np.ndarray,
                 gallery_labels: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Instance top-k accuracy and top-1 category accuracy (%) from a [Q, G] similarity matrix.

    Ties are broken by gallery order (stable sort), so a constant similarity is not rewarded.
    """
    order = np.argsort(-np.asarray(similarity, dtype=np.float64), axis=1, kind="stable")
    rank_hit = order == np.asarray(shape_of)[:, None]
    out = {f"top{k}_acc": 100.0 * float(rank_hit[:, :k].any(axis=1).mean()) for k in ks}
    out["category_acc"] = 100.0 * float(np.mean(gallery_labels[order[:, 0]] == query_labels))
    return out


@register_protocol("ibsr")
class IBSRProtocol(Protocol):
    """Photo -> shape retrieval on the test split (see module docstring)."""

    name = "ibsr"
    Config = IBSRConfig

    def supports(self, method_cls: type[Method], task: Task, modality: str | None = None) -> str | None:
        """The base checks, and: without a query-conditioned score the method must embed the gallery modality."""
        return super().supports(method_cls, task, modality) or self._gallery_problem(method_cls)

    def _gallery_problem(self, method_cls: type[Method]) -> str | None:
        gallery = self.config.gallery_modality
        if method_cls.query_conditioned or gallery in method_cls.embed_modalities:
            return None
        return f"cannot embed the shape gallery ({gallery})"

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        # a photo query comes with its mask (CMIC's query encoder reads RGB + mask)
        extra = ("mask",) if modality == "image" else ()
        return tuple(dict.fromkeys((modality, *extra, self.config.gallery_modality)))

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg = self.config
        data = FirstViews(test_data, cfg.n_views)
        query, labels = extract_features(method, data, modality, batch_size=ctx.batch_size, progress=ctx.progress,
                                         desc=f"embed queries ({modality})")
        # datasets with several photos per shape (Pix3D) give a separate gallery of unique shapes
        gallery_data = test_data.gallery_split()
        if gallery_data is None:  # the items are the shapes: query i shows gallery shape i
            gallery_data, shape_of = test_data, np.arange(len(labels))
        else:
            shape_of = np.asarray(test_data.query_shape_index)
        gallery_labels = np.asarray(gallery_data.labels)
        gallery_view = FirstViews(gallery_data, cfg.n_views)
        if method.query_conditioned:
            similarity = self._conditioned(method, gallery_view, query, ctx)
            scoring = "query-conditioned"
        else:
            problem = self._gallery_problem(type(method))
            if problem:
                raise ValueError(f"method {method.name!r} {problem}; it embeds "
                                 f"{', '.join(sorted(method.embed_modalities))} (set ibsr.gallery_modality)")
            gallery, _ = extract_features(method, gallery_view, cfg.gallery_modality, batch_size=ctx.batch_size,
                                          progress=ctx.progress, desc=f"embed gallery ({cfg.gallery_modality})")
            similarity = -pairwise_distance(query, gallery, cfg.distance)
            scoring = f"plain embeddings, {cfg.distance}"
        metrics = ibsr_metrics(similarity, shape_of, labels, gallery_labels, tuple(cfg.ks))
        return ProtocolResult(metrics, {"scoring": scoring, "n_queries": int(len(query)),
                                        "gallery_modality": cfg.gallery_modality})

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
