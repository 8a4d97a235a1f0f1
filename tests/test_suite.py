"""`bench suite`: planning (compatible pairs, skipped pairs with reasons) and resuming."""

from __future__ import annotations

import pytest

from ssl3d.core.config import ConfigError
from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.sweep.suite import plan_suite, run_suite

from conftest import TINY_SYNTH


def test_plan_lists_compatible_pairs_and_reasons_for_the_rest():
    planned, skipped = plan_suite("random-pointnet", "synth-*")
    assert {(p.task, p.modality) for p in planned} >= {("synth-svm", "points"), ("synth-retrieval", "points"),
                                                       ("synth-seg", "points")}
    reasons = {task: why for _, task, why in skipped}
    assert "synth-recon" in reasons and "reconstructs voxels from nothing" in reasons["synth-recon"]
    assert "synth-ibsr" in reasons and "image" in reasons["synth-ibsr"]


def test_suite_runs_then_resumes_without_rerunning(tmp_path):
    kw = dict(methods="random-pointnet", tasks="synth-svm", seeds=(0, 1), overrides=TINY_SYNTH,
              results_dir=str(tmp_path), progress=False)
    first = run_suite(**kw)
    assert first["todo"] == 2 and not first["failures"]
    assert len(ResultStore(tmp_path).read_leaderboard()) == 4
    second = run_suite(**kw)
    assert second["todo"] == 0
    assert len(ResultStore(tmp_path).read_leaderboard()) == 4
    # another experiment (different --set) is not "already done" because the preset's runs exist
    other = run_suite(**{**kw, "overrides": {**TINY_SYNTH, "svm.kernel": "rbf"}, "dry_run": True})
    assert other["todo"] == 2


def test_a_method_that_cannot_pretrain_on_the_tasks_dataset_is_skipped_with_the_reason():
    # modelnet40-fewshot reads only the points-only h5 release: CM-CV pretrains on views and points, ParAE on points
    planned, skipped = plan_suite("cmcv", "modelnet40-fewshot")
    assert not planned
    assert skipped == [("cmcv", "modelnet40-fewshot", "cmcv pretrains on points, views but modelnet40-h5 provides "
                        "points (bench run --pretrain-data NAME pretrains elsewhere)")]
    assert [p.method for p in plan_suite("parae-pointnet", "modelnet40-fewshot")[0]] == ["parae-pointnet"]
    # untrained, it needs no pretraining data
    untrained, skipped = plan_suite("cmcv", "modelnet40-fewshot", overrides={"train.epochs": "0"})
    assert [(p.method, p.modality) for p in untrained] == [("cmcv", "points")] and not skipped
    # modelnet40-svm also reads the OFF meshes, which give CM-CV's views
    assert [p.modality for p in plan_suite("cmcv", "modelnet40-svm")[0]] == ["points", "views", "image"]


def test_the_suite_routes_set_keys_through_the_runner():
    """A key of no section fails at planning, as it would in `bench run`, instead of being dropped."""
    with pytest.raises(ConfigError, match=r"--set trian.epochs: unknown section 'trian'"):
        plan_suite("cmcv", "modelnet40-fewshot", overrides={"trian.epochs": "0"})
    # method.train.* and train.* are the same key: both make CM-CV untrained, so it needs no views
    for key in ("train.epochs", "method.train.epochs"):
        planned, skipped = plan_suite("cmcv", "modelnet40-fewshot", overrides={key: "0"})
        assert [p.method for p in planned] == ["cmcv"] and not skipped


def test_pretrains_is_the_one_answer():
    from ssl3d.methods import METHODS

    cmcv = METHODS.get("cmcv")
    assert cmcv.from_preset("quick").pretrains
    assert not cmcv.from_preset("quick", {"train.epochs": 0}).pretrains
    assert not METHODS.get("random-pointnet").from_preset("quick").pretrains  # no pretext task


def test_bad_pattern_is_a_user_error():
    with pytest.raises(ConfigError, match=r"no method matches 'nope-\*'"):
        plan_suite("nope-*", "synth-*")


def test_a_crashed_run_is_reported_with_its_log_and_the_suite_goes_on(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(PROTOCOLS.get("svm"), "evaluate", broken)
    outcome = run_suite(methods="random-pointnet", tasks="synth-svm", seeds=(0, 1), overrides=TINY_SYNTH,
                        results_dir=str(tmp_path), progress=False)
    assert len(outcome["failures"]) == 2
    for _, why in outcome["failures"]:
        assert why.startswith("RuntimeError: evaluation exploded (traceback in ") and why.endswith("run.log)")
    logs = sorted((tmp_path / "runs").glob("*/run.log"))
    assert len(logs) == 2 and all("evaluation exploded" in p.read_text() for p in logs)
