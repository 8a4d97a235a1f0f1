"""The suite cost table: each pretraining counted once, evaluations summed, damaged files named."""

from __future__ import annotations

import json
import logging

import pytest

from ssl3d.bench.cost import cost_markdown, cost_table, main


def _result(root, name, method, key, pre_s, eval_s, data_s=1.0, epochs=4):
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    pretraining = {"cached": key is not None, "key": key, "epochs": epochs if key else 0, "seconds": pre_s}
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
                                          "suite random ,60,0\n")
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


def test_cost_command_writes_the_csv_and_names_a_missing_runs_folder(tmp_path, capsys):
    _result(tmp_path, "a", "vae", "k0", 120.0, 5.0)
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "cost.csv").read_text().startswith("method,pretrain_epochs,")
    assert "| vae | 4 | 1 | 2.0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    assert "nowhere/runs: no such folder" in capsys.readouterr().err
