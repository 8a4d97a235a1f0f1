"""End-to-end runs in process: results, determinism, caching and the errors users see."""

from __future__ import annotations

import json

import pytest

from ssl3d.core.config import ConfigError
from ssl3d.core.registry import UnknownNameError
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.run.runner import RunSpec, execute, resolve_modality, split_overrides
from ssl3d.methods import NotPretrainedError, get_method

from conftest import TINY_SYNTH


def _run(seed: int = 0, **kw) -> dict:
    return execute(RunSpec(method=kw.pop("method", "random-pointnet"), task="synth-svm", seed=seed,
                           overrides={**TINY_SYNTH, **kw.pop("overrides", {})}, progress=False, **kw))


def test_run_writes_result_and_rows(tmp_path):
    result = _run(results_dir=str(tmp_path))
    saved = json.loads((tmp_path / "runs" / result["run_id"] / "result.json").read_text())
    for key in ("method", "task", "modality", "seed", "preset", "metrics", "timings", "environment", "git_commit",
                "device", "config", "protocol", "dataset_version", "pretrain_data"):
        assert key in saved
    assert saved["config"]["data"]["n_classes"] == 4 and saved["config"]["method"]["global_dim"] == 1024
    assert saved["protocol"]["details"]["n_train"] == 24 and saved["protocol"]["details"]["n_test"] == 12
    assert 0 <= saved["metrics"]["overall_acc"] <= 100
    assert saved["dataset_version"].startswith("synth-")
    frame = ResultStore(tmp_path).read_leaderboard()
    assert set(frame["metric"]) == {"overall_acc", "mean_class_acc"} and (frame["run_id"] == result["run_id"]).all()
    assert (tmp_path / "runs" / result["run_id"] / "run.log").read_text().count("metrics:") == 1


def test_same_seed_same_metrics_other_seed_other_weights(tmp_path):
    a = _run(seed=1, results_dir=str(tmp_path))
    b = _run(seed=1, results_dir=str(tmp_path))
    assert a["metrics"] == b["metrics"]
    assert a["protocol"]["details"] == b["protocol"]["details"]


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownNameError, match="random-pointnet"):
        execute(RunSpec(method="random-pointnt", task="synth-svm"))
    with pytest.raises(UnknownNameError, match="synth-svm"):
        execute(RunSpec(method="random-pointnet", task="synth-svn"))


def test_bad_overrides_name_valid_keys():
    with pytest.raises(ConfigError, match="svm.kernel"):
        _run(overrides={"svm.kernal": "rbf"})
    with pytest.raises(ConfigError, match="data.n_points"):
        _run(overrides={"data.npoints": "3"})
    with pytest.raises(ConfigError, match="unknown section"):
        split_overrides({"optim.lr": "1"}, "svm")
    with pytest.raises(ConfigError, match="not one of"):
        _run(overrides={"svm.kernel": "poly"})


def test_incompatible_modality_names_what_works():
    method = get_method("random-pointnet")
    assert resolve_modality("synth-svm", method, None, "embed") == "points"
    with pytest.raises(ValueError, match="--modality points"):
        resolve_modality("synth-svm", method, "voxels", "embed")
    with pytest.raises(ValueError, match="evaluates"):
        resolve_modality("synth-svm", method, "audio", "embed")


def test_unpretrained_method_raises_clear_error():
    method = get_method("random-pointnet")()
    with pytest.raises(NotPretrainedError, match="pretrain"):
        method.embed({"points": None}, "points")
    with pytest.raises(ValueError, match="cannot embed 'voxels'"):
        method.embed({}, "voxels")
