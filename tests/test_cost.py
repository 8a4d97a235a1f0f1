"""The suite cost table: each pretraining counted once, evaluations summed, damaged files named."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

import torch

from ssl3d.bench.report.cost import cost_markdown, cost_table, main
from ssl3d.core.errors import UserError
from ssl3d.methods.trainer import epoch_seconds


def _result(root, name, method, key, pre_s, eval_s, data_s=1.0, epochs=4, **pretraining_extra):
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    pretraining = {"cached": key is not None, "key": key, "epochs": epochs if key else 0, "seconds": pre_s,
                   **pretraining_extra}
    (folder / "result.json").write_text(json.dumps({"method": method, "pretraining": pretraining,
                                                    "timings": {"data_s": data_s, "eval_s": eval_s}}))


def test_cost_counts_each_pretraining_once_and_sums_evaluations(tmp_path, caplog):
    # seed 0's pretraining (600 s) is used by two tasks; seed 1's (660 s) by one; an untrained run has no key
    _result(tmp_path, "a", "vae", "k0", 600.0, 59.0)
    _result(tmp_path, "b", "vae", "k0", 600.0, 119.0)
    _result(tmp_path, "c", "vae", "k1", 660.0, 29.0)
    _result(tmp_path, "d", "vae", None, 0.0, 8.0)
    _result(tmp_path, "e", "random", None, 0.0, 29.0)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "result.json").write_text("{not json")
    (tmp_path / "timings.csv").write_text("what,seconds,exit\ncurve vae voxels,1500,0\nsuite vae ,300,0\n"
                                          "suite random (interrupted: 1 of 2, cached),60,143\n")
    with caplog.at_level(logging.WARNING):
        table = cost_table(tmp_path).set_index("method")
    assert "broken/result.json: skipped" in caplog.text
    vae = table.loc["vae"]
    assert (vae["pretrain_epochs"], vae["pretrainings"], vae["eval_runs"]) == (4, 2, 4)
    assert vae["pretrain_min_per_seed"] == pytest.approx(10.5) and vae["pretrain_min"] == pytest.approx(21.0)
    assert vae["eval_min"] == pytest.approx((60 + 120 + 30 + 9) / 60, abs=0.05)
    assert vae["logged_wall_min"] == pytest.approx(30.0)
    assert table.loc["random", "pretrainings"] == 0 and table.loc["random", "eval_min"] == pytest.approx(0.5)
    total = table.loc["total"]
    assert total["pretrain_min"] == pytest.approx(21.0) and total["eval_runs"] == 5
    assert total["total_min"] == pytest.approx(21.0 + 3.6 + 0.5, abs=0.11)
    assert cost_markdown(table.reset_index()).count("\n") == 2 + 3


def test_a_pretraining_served_from_a_snapshot_gives_its_time_per_seed_but_no_compute(tmp_path):
    # seed 0 came from the knee curve's epoch-4 snapshot (its 4 epochs took 600 s there); seed 1 trained here
    _result(tmp_path, "a", "vae", "k0", 600.0, 5.0, epoch_seconds=[150.0] * 4, from_snapshot="/c/knee/epoch-4.pt")
    _result(tmp_path, "b", "vae", "k1", 480.0, 5.0, epoch_seconds=[120.0] * 4)
    vae = cost_table(tmp_path).set_index("method").loc["vae"]
    assert (vae["pretrainings"], vae["served_from_snapshot"]) == (2, 1)
    assert vae["pretrain_min_per_seed"] == pytest.approx(9.0)  # (600 + 480) / 2 s
    assert vae["pretrain_min"] == pytest.approx(8.0) and vae["pretrain_min_idle"] == pytest.approx(8.0)


def test_cost_command_writes_the_csv_and_names_a_missing_runs_folder(tmp_path, capsys):
    _result(tmp_path, "a", "vae", "k0", 120.0, 5.0)
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "cost.csv").read_text().startswith("method,pretrain_epochs,")
    assert "| vae | 4 | 1 | 0 | 2.0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    assert "nowhere/runs: no such folder" in capsys.readouterr().err


def test_epoch_seconds_undo_the_running_total_kept_across_a_resume():
    # history's "seconds" is cumulative; a resumed pretraining continues the sum from its checkpoint
    history = [{"epoch": 1, "seconds": 65.0}, {"epoch": 2, "seconds": 937.0}, {"epoch": 3, "seconds": 1003.5}]
    assert epoch_seconds(history) == [65.0, 872.0, 66.5]
    assert epoch_seconds([]) == []


def test_idle_estimate_is_the_fastest_epoch_times_the_epochs(tmp_path, caplog):
    # k0 ran on a shared CPU (one 872 s epoch among 65 s ones): measured 1067 s, idle estimate 4 x 65 s
    _result(tmp_path, "a", "vae", "k0", 1067.0, 5.0, epoch_seconds=[65.0, 872.0, 65.0, 65.0])
    # k1's result predates epoch_seconds: its cached final.pt's history gives them (cumulative seconds)
    weights = tmp_path / "final.pt"
    torch.save({"model": {}, "pretrain_info": {"history": [{"seconds": s} for s in (70.0, 140.0, 230.0, 300.0)]}},
               weights)
    _result(tmp_path, "b", "vae", "k1", 300.0, 5.0, path=str(weights))
    table = cost_table(tmp_path).set_index("method")
    assert table.loc["vae", "fastest_epoch_s"] == pytest.approx(65.0)
    assert table.loc["vae", "pretrain_min_idle"] == pytest.approx((4 * 65 + 4 * 70) / 60, abs=0.05)
    assert table.loc["vae", "pretrain_min"] == pytest.approx((1067 + 300) / 60, abs=0.05)
    assert table.loc["total", "pretrain_min_idle"] == pytest.approx(9.0)

    # a pretraining whose epoch times are nowhere (weights gone, or damaged) leaves the estimate blank, named
    _result(tmp_path, "c", "ae", "k2", 100.0, 5.0, path=str(tmp_path / "gone.pt"))
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    _result(tmp_path, "d", "ae", "k3", 100.0, 5.0, path=str(damaged))
    with caplog.at_level(logging.WARNING):
        table = cost_table(tmp_path).set_index("method")
    assert f"{damaged}: no epoch times read" in caplog.text
    assert pd.isna(table.loc["ae", "pretrain_min_idle"]) and pd.isna(table.loc["total", "pretrain_min_idle"])
    assert table.loc["vae", "pretrain_min_idle"] == pytest.approx(9.0)  # the other method keeps its estimate


def test_a_timings_line_that_is_not_what_seconds_exit_is_named(tmp_path):
    (tmp_path / "timings.csv").write_text("what,seconds,exit\nsuite vae ,300,0\nsuite vae ,fast,0\n")
    with pytest.raises(UserError, match=r"timings\.csv, line 3: 'suite vae ,fast,0' is not 'what,seconds,exit'"):
        cost_table(tmp_path)
