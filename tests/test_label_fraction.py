"""Limited labels: per-class draws with the seed, at least one per class, recorded in the result (svm, classification)."""

from __future__ import annotations

import numpy as np
import pytest

from ssl3d.bench.protocols.classification import labelled_and_validation
from ssl3d.bench.features.splits import class_balanced_subset
from ssl3d.bench.protocols.svm import SVMConfig, SVMProtocol
from ssl3d.bench.run.runner import RunSpec, execute

from conftest import TINY_SYNTH

LABELS = np.repeat(np.arange(5), [40, 30, 20, 10, 3])


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2, 0.5, 1.0])
def test_draw_is_per_class_deterministic_and_keeps_every_class(fraction):
    keep = class_balanced_subset(LABELS, fraction, np.random.default_rng(11))
    counts = np.bincount(LABELS[keep], minlength=5)
    expected = [max(1, int(round(fraction * n))) for n in (40, 30, 20, 10, 3)]
    assert counts.tolist() == expected
    assert np.array_equal(keep, class_balanced_subset(LABELS, fraction, np.random.default_rng(11)))
    assert len(np.unique(keep)) == len(keep) and np.all(np.diff(keep) > 0)


def test_other_seed_other_draw():
    draws = {tuple(class_balanced_subset(LABELS, 0.2, np.random.default_rng(s))) for s in range(5)}
    assert len(draws) == 5


def test_svm_records_the_drawn_indices():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(LABELS), 6)) + LABELS[:, None]
    proto = SVMProtocol(SVMConfig(label_fraction=0.2, c_grid=(1.0,)))
    result = proto.evaluate_features(x, LABELS, x[:20], LABELS[:20], seed=4)
    recorded = result.details["labelled_indices"]
    assert recorded == class_balanced_subset(LABELS, 0.2, np.random.default_rng(4)).tolist()
    assert result.details["n_train"] == len(recorded) and result.details["label_fraction"] == 0.2
    full = SVMProtocol(SVMConfig(c_grid=(1.0,))).evaluate_features(x, LABELS, x[:20], LABELS[:20], seed=4)
    assert full.details["labelled_indices"] is None  # every shape labelled


def test_classification_records_the_drawn_indices_in_the_result(tmp_path):
    overrides = {**TINY_SYNTH, "classification.epochs": "1", "classification.votes": "0",
                 "classification.label_fraction": "0.5"}
    spec = dict(method="random-pointnet", task="synth-cls", overrides=overrides, progress=False,
                results_dir=str(tmp_path), seed=2)
    first = execute(RunSpec(**spec))["protocol"]["details"]
    again = execute(RunSpec(**spec))["protocol"]["details"]
    labelled, _, val = labelled_and_validation(np.repeat(np.arange(4), 6), 0.5, 0.2, seed=2)
    assert first["labelled_indices"] == again["labelled_indices"] == labelled.tolist()
    assert first["val_indices"] == val.tolist()
