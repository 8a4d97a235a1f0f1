"""Example ssl3d-bench protocol plugin: k-nearest-neighbour classification on frozen features.

The worked example of docs/adding-a-protocol.md. The whole addition is this
module (a protocol and the task that uses it) plus two entry points in
``pyproject.toml``; nothing in ssl3d-bench is edited. Each test shape takes
the most common label among its ``k`` nearest training shapes in feature
space (``knn.distance``: cosine or euclidean; a tie goes to the smallest
label); ``knn_acc`` is the % of test shapes labelled correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols import EvalContext, Protocol, ProtocolResult
from ssl3d.bench.features.views import pairwise_distance
from ssl3d.bench.protocols.tasks import SHAPE_MODALITIES, Task


@dataclass(frozen=True)
class KNNConfig:
    """k-NN settings (``--set knn.KEY=VALUE``)."""

    k: int = field(default=5, metadata={"range": "[1, inf)"})  # training shapes that vote for a test shape's label
    distance: Literal["cosine", "euclidean"] = "cosine"  # how near two feature vectors are


class KNNProtocol(Protocol):
    """Each test shape takes the most common label of its k nearest training shapes (module docstring)."""

    name = "knn"            # registry key (must equal the entry-point name)
    Config = KNNConfig      # its fields are the --set knn.* keys
    needs = "embed"         # global features: methods whose embed_modalities meet the task's modalities

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        kw = {"batch_size": ctx.batch_size, "progress": ctx.progress}
        train, train_labels = extract_features(method, train_data, modality, desc="embed train", **kw)
        test, test_labels = extract_features(method, test_data, modality, desc="embed test", **kw)
        k = min(self.config.k, len(train))
        distance = pairwise_distance(test, train, self.config.distance)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]  # equal distances: training order
        predicted = np.array([np.bincount(votes).argmax() for votes in train_labels[nearest]])
        accuracy = 100.0 * float(np.mean(predicted == test_labels))
        return ProtocolResult({"knn_acc": accuracy}, {"k": k, "n_train": len(train), "n_test": len(test)})


SYNTH_KNN = Task(
    "synth-knn", "synth", "knn", SHAPE_MODALITIES + ("image",),
    description="synth: k-nearest-neighbour classification on frozen global features (accuracy)",
)
