"""Experiment tracking of a tiny run: CSV (default), TensorBoard event files and an MLflow file store, read back."""

from __future__ import annotations

import csv

import pytest

from ssl3d.bench.run.runner import RunSpec, execute
from ssl3d.bench.run.tracking import check_tracker
from ssl3d.core.errors import UserError

from conftest import TINY_SYNTH


def _run(tmp_path, log: str) -> dict:
    return execute(RunSpec(method="parae-pointnet", task="synth-svm", overrides={**TINY_SYNTH, "train.epochs": "2"},
                           results_dir=str(tmp_path), progress=False, log=log))


def test_csv_scalars_and_one_plain_line_per_epoch(tmp_path, capsys):
    result = _run(tmp_path, "csv")
    with open(tmp_path / "runs" / result["run_id"] / "scalars.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    losses = [(int(r["step"]), float(r["value"])) for r in rows if r["tag"] == "pretrain/loss"]
    assert [step for step, _ in losses] == [1, 2]
    assert losses[-1][1] == pytest.approx(result["pretraining"]["final_loss"])
    assert {r["tag"] for r in rows} >= {"pretrain/lr", "pretrain/items_per_s", "pretrain/epoch_seconds",
                                        "synth-svm/overall_acc", "synth-svm/mean_class_acc"}
    acc = next(float(r["value"]) for r in rows if r["tag"] == "synth-svm/overall_acc")
    assert acc == result["metrics"]["overall_acc"]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pretrain parae-pointnet epoch ")]
    assert [line.split(":")[0] for line in lines] == ["pretrain parae-pointnet epoch 1/2", "pretrain parae-pointnet epoch 2/2"]
    assert all(line.endswith("items/s") for line in lines)


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _run(tmp_path, "tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard" / result["run_id"]))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"pretrain/loss", "pretrain/lr", "pretrain/items_per_s", "synth-svm/overall_acc"} <= scalars
    loss = events.Scalars("pretrain/loss")
    assert [e.step for e in loss] == [1, 2]
    assert loss[-1].value == pytest.approx(result["pretraining"]["final_loss"], rel=1e-6)
    assert events.Scalars("synth-svm/overall_acc")[0].value == pytest.approx(result["metrics"]["overall_acc"])
    texts = events.Tensors("params/text_summary")  # config at the start, keys at the end (string tensors)
    table = "\n".join(t.tensor_proto.string_val[0].decode() for t in texts)
    assert "| method.train.epochs | 2 |" in table and f"| git_commit | {result['git_commit']} |" in table
    assert f"| data_key | {result['data_key']} |" in table


def test_mlflow_file_store_holds_params_tags_and_metrics(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what the tracker sets for its file store
    result = _run(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("ssl3d-bench")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == result["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["method.train.epochs"] == "2" and run.data.params["data.n_classes"] == "4"
    assert run.data.params["data_key"] == result["data_key"]
    assert run.data.params["pretrain_key"] == result["pretraining"]["key"]
    assert run.data.tags["seed"] == "0" and run.data.tags["git_commit"] == result["git_commit"]
    history = client.get_metric_history(run.info.run_id, "pretrain/loss")
    assert sorted(m.step for m in history) == [1, 2]
    assert max(history, key=lambda m: m.step).value == pytest.approx(result["pretraining"]["final_loss"])
    assert run.data.metrics["synth-svm/overall_acc"] == pytest.approx(result["metrics"]["overall_acc"])


def test_an_unknown_tracker_is_refused_before_the_run():
    with pytest.raises(UserError, match="--log wandb: not a tracker"):
        check_tracker("wandb")
