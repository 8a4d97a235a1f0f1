"""The runner validates a whole run before creating anything; a failed run records its error in run.log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl3d.core.config import ConfigError
from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.core.registry import UnknownNameError
from ssl3d.bench.run.runner import RunSpec, execute, run_log_of, validate_run

from conftest import TINY_SYNTH


def _spec(tmp_path: Path, **kw) -> RunSpec:
    overrides = {**TINY_SYNTH, **kw.pop("overrides", {})}
    return RunSpec(method=kw.pop("method", "random-pointnet"), task="synth-svm", overrides=overrides, progress=False,
                   data_root=str(tmp_path / "data"), results_dir=str(tmp_path / "results"), **kw)


def _nothing_created(tmp_path: Path) -> bool:
    runs = tmp_path / "results" / "runs"
    return not (runs.exists() and any(runs.iterdir())) and not list((tmp_path).rglob("*.h5"))


@pytest.mark.parametrize("kw,error,pattern", [
    ({"overrides": {"data.npoints": "3"}}, ConfigError, "data.n_points"),
    ({"overrides": {"data.n_points": "0"}}, ConfigError, r"data\.n_points=0.*>= 1"),
    ({"overrides": {"train.epochs": "-1"}}, ConfigError, r"method\.train\.epochs=-1.*>= 0"),
    ({"seed": -1}, ConfigError, r"--seed -1.*>= 0"),
    ({"pretrain_data": "nope"}, UnknownNameError, "unknown dataset 'nope'"),
    ({"overrides": {"data.n_classes": "99"}}, ConfigError, "data.n_classes"),
    ({"modality": "voxels"}, ConfigError, "--modality points"),
    ({"device": "nonsense"}, ConfigError, "--device nonsense"),
])
def test_bad_spec_fails_before_any_folder_or_cache(tmp_path, kw, error, pattern):
    with pytest.raises(error, match=pattern):
        execute(_spec(tmp_path, **kw))
    assert _nothing_created(tmp_path)


def test_validate_run_resolves_everything_without_side_effects(tmp_path):
    plan = validate_run(_spec(tmp_path, pretrain_data="synth"))
    assert plan.modality == "points" and plan.data_config.n_points == 256 and plan.pre_name == "synth"
    assert _nothing_created(tmp_path) and not (tmp_path / "data").exists()


def test_failed_run_records_the_traceback_in_its_log(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(PROTOCOLS.get("svm"), "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation exploded") as info:
        execute(_spec(tmp_path))
    log_path = run_log_of(info.value)
    assert log_path is not None and log_path.parent.parent == tmp_path / "results" / "runs"
    text = log_path.read_text()
    assert "Traceback" in text and "RuntimeError: evaluation exploded" in text and f"run {log_path.parent.name} failed" in text
    assert not (log_path.parent / "result.json").exists()


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_result_json_is_strict_json_when_a_number_is_missing(tmp_path, monkeypatch):
    svm = PROTOCOLS.get("svm")
    real_evaluate = svm.evaluate

    def with_missing_detail(self, *args, **kwargs):
        outcome = real_evaluate(self, *args, **kwargs)
        outcome.details["cv_score_std"] = float("nan")  # a statistic of an empty set, as NumPy reports it
        return outcome

    monkeypatch.setattr(svm, "evaluate", with_missing_detail)
    result = execute(_spec(tmp_path))
    saved = _strict_loads((tmp_path / "results" / "runs" / result["run_id"] / "result.json").read_text())
    assert saved["protocol"]["details"]["cv_score_std"] is None and saved["metrics"] == result["metrics"]
