"""The retrieval protocol: nearest neighbours in feature space, scored by category.

Definition (also in docs/protocols.md), following CM-CV (Jing et al., CVPRW
2021, Section 4.4, Table 4):

* **3D->3D / same modality** (default): every test shape's feature (modality
  ``--modality``) queries the gallery of all other test shapes' features in the
  same modality; the query itself is excluded.
* **cross-modal, e.g. 2D->3D** (``retrieval.query_modality=image`` or ``views``):
  each test shape's query feature from that modality queries the gallery of
  test shape features in ``--modality``; the query's own shape stays in the
  gallery (it is a correct answer).
* With ``retrieval.n_views = v`` only the first v views of a ``views`` input
  are given to the method, whose ``embed`` aggregates them (max-pooling for the
  multi-view encoders), as in the 1/12/80-view rows of Table 4.
* Ranking by ``retrieval.distance`` (Euclidean, as the paper; or cosine),
  ties broken by gallery order.
* ``top{k}_acc``: % of queries with at least one gallery item of the query's
  category among the k nearest. ``map``: mean over queries of average precision
  with category-level relevance, AP = mean over the relevant items of the
  precision at their rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.features.views import FirstViews, pairwise_distance


@dataclass(frozen=True)
class RetrievalConfig:
    """Retrieval settings (``--set retrieval.KEY=VALUE``)."""

    distance: str = "euclidean"  # euclidean (CM-CV) or cosine
    query_modality: str = ""  # "" = same modality as --modality (self excluded); else cross-modal queries
    n_views: int = field(default=0, metadata={"range": "[0, inf)"})  # give the method only the first n views of `views` inputs (0 = all)
    ks: tuple[int, ...] = field(default=(1, 5, 10), metadata={"range": "[1, inf)"})  # cut-offs of the top-k accuracies


def retrieval_metrics(
    query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray, *,
    distance: str = "euclidean", exclude_self: bool = False, ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Top-k accuracy and mAP (category relevance) of ranking ``gallery`` for each query, in %.

    Args:
        exclude_self: query i and gallery item i are the same object; drop it from i's ranking.
    """
    dist = pairwise_distance(query, gallery, distance)
    if exclude_self:
        if dist.shape[0] != dist.shape[1]:
            raise ValueError("exclude_self needs the query set to be the gallery")
        np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")
    if exclude_self:
        order = order[:, :-1]  # the query itself sorts last (inf)
    relevant = gallery_labels[order] == query_labels[:, None]
    out = {f"top{k}_acc": 100.0 * float(relevant[:, :k].any(axis=1).mean()) for k in ks}
    ranks = np.arange(1, relevant.shape[1] + 1)
    hits = np.cumsum(relevant, axis=1)
    n_rel = relevant.sum(axis=1)
    ap = np.where(n_rel > 0, (relevant * hits / ranks).sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    out["map"] = 100.0 * float(ap.mean())
    return out


@register_protocol("retrieval")
class RetrievalProtocol(Protocol):
    """Category-level retrieval on the test split (see module docstring)."""

    name = "retrieval"
    Config = RetrievalConfig

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        query = self.config.query_modality or modality
        extra = ("mask",) if "image" in (modality, query) else ()  # photos come with their masks
        return tuple(dict.fromkeys((modality, query, *extra)))

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg = self.config
        data = FirstViews(test_data, cfg.n_views)
        gallery, labels = extract_features(method, data, modality, batch_size=ctx.batch_size, progress=ctx.progress,
                                           desc=f"embed gallery ({modality})")
        query_modality = cfg.query_modality or modality
        if query_modality == modality:
            query = gallery
        else:
            query, _ = extract_features(method, data, query_modality, batch_size=ctx.batch_size,
                                        progress=ctx.progress, desc=f"embed queries ({query_modality})")
        metrics = retrieval_metrics(query, labels, gallery, labels, distance=cfg.distance,
                                    exclude_self=query_modality == modality, ks=tuple(cfg.ks))
        details = {"query_modality": query_modality, "gallery_modality": modality, "n_queries": int(len(query)),
                   "n_gallery": int(len(gallery)), "distance": cfg.distance, "n_views": cfg.n_views}
        return ProtocolResult(metrics, details)
