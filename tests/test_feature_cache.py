"""The feature cache: reused only for the same weights and shapes, views served from their split, damage named."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from ssl3d.bench.features import cache as feature_cache
from ssl3d.bench.features.cache import ENV, code_digest
from ssl3d.bench.features import extract_features
from ssl3d.bench.features.splits import SplitView
from ssl3d.bench.features.views import FirstViews
from ssl3d.bench.run.runner import RunSpec, execute
from ssl3d.datasets import DATASETS, DataConfig
from ssl3d.methods import METHODS

from conftest import TINY_SYNTH


@pytest.fixture
def split(tmp_path):
    config = DataConfig(n_points=64, workers=1)
    data = DATASETS.get("synth")("train", ("points",), DATASETS.get("synth").Config(
        n_classes=3, train_per_class=6, test_per_class=2, n_points=64, workers=1), tmp_path, progress=False)
    assert config.n_points == data.config.n_points
    return data


def _method(calls: list[int], seed: int = 0):
    torch.manual_seed(seed)
    method = METHODS.get("random-pointnet").from_preset("quick", {"global_dim": "8"})
    method.pretrain(None)  # random-init baseline: builds the seeded network
    embed = method.embed_batch

    def counting(batch, modality):
        calls.append(len(batch["label"]))
        return embed(batch, modality)

    method.embed_batch = counting
    return method


def _embed(method, data):
    return extract_features(method, data, "points", batch_size=4, progress=False)


def _files(root):
    return sorted(p.name for p in (root / "features").rglob("*") if p.is_file())


def test_a_second_embedding_with_the_same_weights_is_read_back(split, tmp_path):
    calls: list[int] = []
    method = _method(calls)
    first = _embed(method, split)
    assert sum(calls) == len(split) == 18 and len(_files(tmp_path)) == 1
    again = _embed(method, split)
    assert sum(calls) == 18  # nothing embedded again
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_other_weights_are_embedded_again(split, tmp_path):
    calls: list[int] = []
    method = _method(calls)
    first = _embed(method, split)
    with torch.no_grad():
        next(method.model.parameters()).add_(0.5)
    second = _embed(method, split)
    assert sum(calls) == 36 and len(_files(tmp_path)) == 2
    assert not np.allclose(first[0], second[0])


def test_read_time_settings_key_the_features_but_worker_counts_do_not(split, tmp_path):
    # a scene's block cutting or a photo split's gallery views are applied when reading: no cache file names them
    synth = DATASETS.get("synth")
    method = _method([])

    def twin(**changes):
        config = dataclasses.replace(split.config, **changes)
        data = synth("train", ("points",), config, tmp_path, progress=False)
        assert [data.cache_path(g) for g in data.groups()] == [split.cache_path(g) for g in split.groups()]
        return feature_cache.feature_key(method, data, "points")

    base = feature_cache.feature_key(method, split, "points")
    assert twin(workers=2) == base
    assert twin(view_size=split.config.view_size + 1) != base


def test_other_loaded_modalities_share_the_points_features(split, tmp_path):
    # a protocol that also loads voxels embeds the same points: one file serves both runs
    calls: list[int] = []
    method = _method(calls)
    first = _embed(method, split)
    both = DATASETS.get("synth")("train", ("points", "voxels"), split.config, tmp_path, progress=False)
    assert len(both.groups()) == 2
    again = _embed(method, both)
    assert sum(calls) == 18 and len(_files(tmp_path)) == 1
    np.testing.assert_array_equal(first[0], again[0])


def test_the_kept_shapes_key_the_features(split, tmp_path):
    # the only guard left for other loaded modalities: a shape one of them lacks is skipped, and the key changes
    method = _method([])
    split._ensure_ready()
    base = feature_cache.feature_key(method, split, "points")
    split._valid = split._valid[1:]
    assert feature_cache.feature_key(method, split, "points") != base


def test_a_large_view_keeps_its_whole_split_and_serves_the_rest(split, tmp_path, monkeypatch):
    calls: list[int] = []
    method = _method(calls)
    fit, val = SplitView(split, np.arange(4, 18), "fit"), SplitView(split, np.array([3, 0, 2]), "val")
    _embed(method, fit)
    assert sum(calls) == 18  # the whole split, once
    served = _embed(method, val)
    assert sum(calls) == 18
    monkeypatch.setenv(ENV, "0")
    direct = _embed(method, val)
    np.testing.assert_allclose(served[0], direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served[1], direct[1])
    np.testing.assert_array_equal(served[1], split.labels[[3, 0, 2]])


def test_a_small_view_of_an_uncached_split_is_embedded_alone(split, tmp_path):
    calls: list[int] = []
    _embed(_method(calls), SplitView(split, np.array([1, 5]), "support"))
    assert sum(calls) == 2 and not (tmp_path / "features").exists()


def test_a_damaged_file_is_named_moved_aside_and_recomputed(split, tmp_path, caplog):
    calls: list[int] = []
    method = _method(calls)
    first = _embed(method, split)
    (path,) = (tmp_path / "features").rglob("*.npz")
    path.write_bytes(path.read_bytes()[:50])
    with caplog.at_level(logging.WARNING):
        again = _embed(method, split)
    assert f"{path}: damaged feature cache" in caplog.text and sum(calls) == 36
    assert len(list(path.parent.glob(path.name + ".corrupt-*"))) == 1 and path.exists()
    np.testing.assert_array_equal(first[0], again[0])


def test_the_cache_can_be_turned_off(split, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "0")
    calls: list[int] = []
    method = _method(calls)
    _embed(method, split)
    _embed(method, split)
    assert sum(calls) == 36 and not (tmp_path / "features").exists()


def test_runs_reading_cached_features_give_the_same_metrics(tmp_path, monkeypatch):
    spec = dict(method="random-pointnet", task="synth-svm", overrides=TINY_SYNTH, progress=False,
                data_root=str(tmp_path / "data"))
    fresh = execute(RunSpec(**spec, results_dir=str(tmp_path / "a")))
    assert len(list((tmp_path / "data" / "features").rglob("*.npz"))) == 2  # train and test
    cached = execute(RunSpec(**spec, results_dir=str(tmp_path / "b")))
    monkeypatch.setenv(ENV, "0")
    uncached = execute(RunSpec(**spec, results_dir=str(tmp_path / "c")))
    assert fresh["metrics"] == cached["metrics"] == uncached["metrics"]


def test_retrievals_all_views_wrapper_is_served_but_a_cut_is_not(split, tmp_path):
    calls: list[int] = []
    method = _method(calls)
    _embed(method, split)
    _embed(method, FirstViews(split, 0))  # every view kept (retrieval's default): the split's own items
    assert sum(calls) == 18
    views = DATASETS.get("synth")("train", ("views",), split.config, tmp_path, progress=False, prepare=False)
    assert feature_cache._cacheable(method, FirstViews(views, 2), "views") is None
    assert feature_cache._cacheable(method, FirstViews(views, 0), "views")[0] is views


def test_other_code_is_embedded_again(split, tmp_path, monkeypatch):
    calls: list[int] = []
    method = _method(calls)
    assert code_digest(method, "points") == code_digest(method, "points")
    _embed(method, split)
    monkeypatch.setattr(feature_cache, "code_digest", lambda method, modality: "an edited forward")
    _embed(method, split)
    assert sum(calls) == 36 and len(_files(tmp_path)) == 2


def test_an_unwritable_data_root_loses_the_cache_not_the_run(split, tmp_path, caplog):
    (tmp_path / "features").write_text("a file where the folder should be")
    calls: list[int] = []
    with caplog.at_level(logging.WARNING):
        features, labels = _embed(_method(calls), split)
    assert features.shape == (18, 8) and sum(calls) == 18
    assert "feature cache not written" in caplog.text
