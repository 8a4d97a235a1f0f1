"""The synth dataset as the benchmark sees it: determinism, coverage, labels, normalisation, cache keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl3d.datasets import get_dataset
from ssl3d.datasets.synth import SynthConfig
from ssl3d.datasets.synth.shapes import CATEGORIES, CATEGORY_PARTS

SMALL = SynthConfig(n_classes=len(CATEGORIES), train_per_class=3, test_per_class=2, n_points=256, workers=1)


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return get_dataset("synth")("train", ("points", "point_labels", "normals"), SMALL,
                                tmp_path_factory.mktemp("synth"), progress=False)


def test_every_category_present_and_sizes(train):
    assert len(train) == 3 * len(CATEGORIES)
    assert np.bincount(train.labels).tolist() == [3] * len(CATEGORIES)
    assert train.class_names == tuple(CATEGORIES)


def test_samples_follow_the_data_contract(train):
    sample = train[5]
    assert sample["points"].shape == (256, 3) and sample["points"].dtype == torch.float32
    assert sample["normals"].shape == (256, 3) and sample["point_labels"].dtype == torch.int64
    assert sample["label"].dtype == torch.int64 and sample["index"].item() == 5
    radius = torch.linalg.norm(sample["points"], dim=1)
    assert radius.max() <= 1.0 + 0.05  # unit sphere, plus the configured surface noise (std 0.01)


def test_part_labels_cover_every_point_and_belong_to_the_category(train):
    for i in range(len(train)):
        s = train[i]
        category = train.class_names[int(s["label"])]
        labels = set(s["point_labels"].tolist())
        assert len(s["point_labels"]) == 256  # every point has a part id
        assert labels <= set(CATEGORY_PARTS[category]), (category, labels)


def test_deterministic_and_independent_of_workers(tmp_path, train):
    again = get_dataset("synth")("train", ("points", "point_labels"), SMALL, tmp_path / "a", progress=False)
    assert torch.equal(again[7]["points"], train[7]["points"])
    parallel = get_dataset("synth")("train", ("points",), SynthConfig(**{**SMALL.__dict__, "workers": 2}),
                                    tmp_path / "b", progress=False)
    assert torch.equal(parallel[7]["points"], train[7]["points"])


def test_splits_differ_and_settings_key_the_cache(tmp_path, train):
    test = get_dataset("synth")("test", ("points",), SMALL, tmp_path, progress=False)
    assert len(test) == 2 * len(CATEGORIES)
    assert not torch.equal(test[0]["points"], train[0]["points"])
    other = get_dataset("synth")("test", ("points",), SynthConfig(**{**SMALL.__dict__, "n_points": 128}),
                                 tmp_path, progress=False)
    assert other[0]["points"].shape == (128, 3)
    assert other.cache_path("points") != test.cache_path("points")
    # workers does not change results, so it does not change the cache key
    same = SynthConfig(**{**SMALL.__dict__, "workers": 2})
    assert get_dataset("synth")("test", ("points",), same, tmp_path, progress=False).cache_path("points") == \
        test.cache_path("points")


def test_bad_requests_are_clear(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train, test"):
        get_dataset("synth")("val", ("points",), SMALL, tmp_path, prepare=False)
    with pytest.raises(ValueError, match="cannot provide audio"):
        get_dataset("synth")("train", ("audio",), SMALL, tmp_path, prepare=False)
    with pytest.raises(ValueError, match="n_classes"):
        get_dataset("synth")("train", ("points",), SynthConfig(n_classes=1), tmp_path, prepare=False)
