"""Metric functions of the retrieval, reconstruction and IBSR protocols on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from ssl3d.bench.protocols.ibsr import ibsr_metrics
from ssl3d.bench.protocols.reconstruction import voxel_metrics
from ssl3d.bench.protocols.retrieval import retrieval_metrics
from ssl3d.bench.features.views import pairwise_distance


def test_retrieval_on_a_hand_made_six_item_example():
    # 1-d features and categories; rankings worked out by hand (ties by gallery order):
    # q0 -> 1,2,3,4,5 rel 1,0,0,1,0  AP=(1/1+2/4)/2=0.75     q1 -> 0,2,3,4,5 rel 1,0,0,1,0 AP=0.75
    # q2 -> 1,0,3,4,5 rel 0,0,1,0,1  AP=(1/3+2/5)/2          q3 -> 4,2,1,0,5 rel 0,1,0,0,1 AP=(1/2+2/5)/2
    # q4 -> 3,2,5,1,0 rel 0,0,0,1,1  AP=(1/4+2/5)/2          q5 -> 4,3,2,1,0 rel 0,1,1,0,0 AP=(1/2+2/3)/2
    x = np.array([[0.0], [1.0], [3.0], [10.0], [11.0], [20.0]])
    y = np.array([0, 0, 1, 1, 0, 1])
    m = retrieval_metrics(x, y, x, y, exclude_self=True, ks=(1, 3, 5))
    aps = [0.75, 0.75, (1 / 3 + 2 / 5) / 2, (1 / 2 + 2 / 5) / 2, (1 / 4 + 2 / 5) / 2, (1 / 2 + 2 / 3) / 2]
    assert m["top1_acc"] == pytest.approx(100 * 2 / 6)
    assert m["top3_acc"] == pytest.approx(100 * 5 / 6)
    assert m["top5_acc"] == pytest.approx(100.0)
    assert m["map"] == pytest.approx(100 * np.mean(aps))


def test_retrieval_cross_modal_keeps_self_and_cosine():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[2.0, 0.1], [0.1, 3.0]])
    m = retrieval_metrics(q, np.array([0, 1]), g, np.array([0, 1]), distance="cosine", ks=(1,))
    assert m["top1_acc"] == 100.0 and m["map"] == 100.0
    d = pairwise_distance(q, g, "cosine")
    assert d[0, 0] == pytest.approx(1 - 2 / np.hypot(2, 0.1))
    with pytest.raises(ValueError, match="unknown distance"):
        pairwise_distance(q, g, "manhattan")


def test_voxel_metrics_on_tiny_grids():
    pred = np.zeros((3, 2, 2, 2), bool)
    target = np.zeros((3, 2, 2, 2), bool)
    pred[0].flat[[0, 1]] = True
    target[0].flat[[0, 2]] = True  # TP=1 FP=1 FN=1 TN=5
    target[2].flat[0] = True  # nothing predicted, one voxel missed
    m = voxel_metrics(pred, target)
    assert m["iou"].tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert m["precision"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert m["recall"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert m["accuracy"].tolist() == pytest.approx([6 / 8, 1.0, 7 / 8])


def test_ibsr_metrics_on_a_crafted_similarity_matrix():
    sim = np.array([[0.9, 0.1, 0.5, 0.2],   # gt 0 at rank 1
                    [0.8, 0.3, 0.9, 0.1],   # gt 1 at rank 3 (order 2, 0, 1, 3)
                    [0.2, 0.2, 0.2, 0.2]])  # all tied: gt 3 at rank 4, no credit for ties
    m = ibsr_metrics(sim, np.array([0, 1, 3]), np.array([0, 1, 2]), np.array([0, 1, 1, 2]), ks=(1, 3))
    assert m["top1_acc"] == pytest.approx(100 / 3)
    assert m["top3_acc"] == pytest.approx(200 / 3)
    assert m["category_acc"] == pytest.approx(200 / 3)  # q0 -> shape 0 (cat 0) ok, q1 -> shape 2 (cat 1) ok, q2 wrong
