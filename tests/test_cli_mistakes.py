"""Mistakes on the command line are one line naming what is wrong (exit 2), refused before anything is written."""

from __future__ import annotations

import pytest

from ssl3d.bench.cli import main
from ssl3d.bench.protocols.svm import SVMConfig
from ssl3d.bench.run.results import LEADERBOARD_COLUMNS
from ssl3d.core.config import ConfigError, apply_overrides, from_dict, parse_set_args, to_dict
from ssl3d.core.registry import Registry
from ssl3d.methods.cmic import CMICConfig
from ssl3d.methods.config import TrainConfig

from conftest import fake_distribution, tiny_set_args


def _run_args(tmp_path, *extra: str) -> list[str]:
    return ["run", "--method", "random-pointnet", "--task", "synth-svm", "--no-progress",
            "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"), *tiny_set_args(), *extra]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"bench {command}: error: "), err
    return err.strip()


# -- 1. tuple and list fields of --set ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0.9", "train.betas=0.9: expected 2 numbers, e.g. [0.9,0.999]"),
    ("[0.9", "train.betas=[0.9: expected 2 numbers, e.g. [0.9,0.999]"),
    ("[0.9,0.99,0.5]", "train.betas=[0.9,0.99,0.5]: expected 2 numbers, e.g. [0.9,0.999]"),
    ("0.9,x", "train.betas=0.9,x: expected 2 numbers, e.g. [0.9,0.999]"),
    ("", "train.betas=: expected 2 numbers, e.g. [0.9,0.999]"),
    ("[[0.9],0.99]", "train.betas=[[0.9],0.99]: expected 2 numbers"),
    ('{"a": 1}', "train.betas="),
])
def test_fixed_length_tuple_takes_exactly_its_length(text, expected):
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), {"betas": text}, section="train.")
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize("text,expected", [
    ("[0.8,0.99]", (0.8, 0.99)), ("0.8,0.99", (0.8, 0.99)), ("0.8, 0.99", (0.8, 0.99)), ("[0, 0.5]", (0.0, 0.5)),
])
def test_fixed_length_tuple_accepts_its_forms(text, expected):
    assert apply_overrides(TrainConfig(), {"betas": text}).betas == expected


def test_variable_length_tuples_take_one_or_more():
    train = TrainConfig()
    assert apply_overrides(train, {"snapshot_epochs": "1,2,4"}).snapshot_epochs == (1, 2, 4)
    assert apply_overrides(train, {"snapshot_epochs": "[3]"}).snapshot_epochs == (3,)
    assert apply_overrides(train, {"snapshot_epochs": "1"}).snapshot_epochs == (1,)
    assert apply_overrides(SVMConfig(), {"c_grid": "1"}).c_grid == (1.0,)
    assert apply_overrides(SVMConfig(), {"c_grid": 1}).c_grid == (1.0,)  # a number from a preset or task option
    for text in ("", "[]", "1,,2", "[1", "1,x"):
        with pytest.raises(ConfigError, match=r"snapshot_epochs=.*: expected one or more integers, e.g. "):
            apply_overrides(train, {"snapshot_epochs": text})
    with pytest.raises(ConfigError, match=r"c_grid=0.1,a: expected one or more numbers, e.g. \[0.01,0.1,1,10,100\]"):
        apply_overrides(SVMConfig(), {"c_grid": "0.1,a"})


def test_stored_configs_still_round_trip():
    for config in (TrainConfig(), TrainConfig(snapshot_epochs=(2,)), CMICConfig(), SVMConfig()):
        assert from_dict(type(config), to_dict(config)) == config  # empty tuples (defaults) included


def test_set_betas_with_one_value_is_one_line_before_any_folder(tmp_path, capsys):
    assert main(_run_args(tmp_path, "--set", "train.betas=0.9")) == 2
    err = _one_line_error(capsys, "run")
    assert "method.train.betas=0.9: expected 2 numbers, e.g. [0.9,0.999]" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_parse_set_args_still_splits_on_the_first_equals():
    assert parse_set_args(["train.betas=[0.9,0.99]"]) == {"train.betas": "[0.9,0.99]"}


# -- 2. seeds -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--seed", "4294967296"], ["--seeds", "0", "4294967296"],
])
def test_seed_beyond_numpy_range_is_refused(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(_run_args(tmp_path, *argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {argv[0]}: {argv[0]} 4294967296 is out of range: must be in [0, 4294967295]" in err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_largest_seed_is_accepted_by_the_parser():
    from ssl3d.bench.cli import build_parser

    assert build_parser().parse_args(["run", "--method", "m", "--task", "t", "--seed", "4294967295"]).seed == 2**32 - 1


@pytest.mark.parametrize("command,argv", [
    ("run", ["--method", "random-pointnet", "--task", "synth-svm", "--seeds", "0", "1", "0"]),
    ("curve", ["--method", "random-pointnet", "--task", "synth-svm", "--epochs", "1", "--seeds", "0", "0"]),
    ("suite", ["--methods", "random-pointnet", "--tasks", "synth-svm", "--seeds", "2", "2", "--dry-run"]),
])
def test_repeated_seeds_are_refused(tmp_path, capsys, command, argv):
    assert main([command, *argv, "--results-dir", str(tmp_path / "results"), "--data-root", str(tmp_path / "data")]) == 2
    err = _one_line_error(capsys, command)
    assert "--seeds " in err and "is given twice; list each seed once" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


# -- 3. a plugin that calls sys.exit() on import --------------------------------------------------------------------

def test_plugin_calling_sys_exit_is_reported_and_the_rest_loads(tmp_path, monkeypatch):
    (tmp_path / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "fine_widget.py").write_text("class Fine:\n    name = 'fine'\n")
    fake_distribution(tmp_path, "quitter", "[test.quitting]\nquitter = quitter:Thing\nfine = fine_widget:Fine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("widget", "test.quitting")
    assert reg.names() == ["fine"]
    assert reg.plugin_errors["quitter"] == "SystemExit: the plugin called sys.exit(3) while it was imported"


# -- 4. bench reproduce: did you mean ------------------------------------------------------------------------------

def _reference(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    rows = [",".join(LEADERBOARD_COLUMNS)]
    for task, method, modality in (("synth-svm", "random-pointnet", "points"), ("synth-svm", "parae-pointnet", "points"),
                                   ("synth-retrieval", "random-pointnet", "points")):
        for seed in (0, 1):
            values = dict(run_id=f"r-{task}-{method}-{seed}", created_at="2026-01-01T00:00:00+00:00", task=task,
                          method=method, modality=modality, preset="quick", seed=str(seed), metric="overall_acc",
                          value="50.0", pretrain_data="synth", dataset_version="synth-1.0", data_key="abc",
                          settings="", git_commit="0")
            rows.append(",".join(values[c] for c in LEADERBOARD_COLUMNS))
    (ref / "leaderboard.csv").write_text("\n".join(rows) + "\n")
    return ref


@pytest.mark.parametrize("cell,suggestion", [
    ("synth-svm/random-pointnt", "synth-svm/random-pointnet"),
    ("synth-sv/parae-pointnet", "synth-svm/parae-pointnet"),
    ("synth-svm/random-pointnet/point", "synth-svm/random-pointnet/points"),
])
def test_reproduce_misspelt_cell_suggests_the_closest(tmp_path, capsys, cell, suggestion):
    ref = _reference(tmp_path)
    assert main(["reproduce", cell, "--reference", str(ref), "--results-dir", str(tmp_path / "mine")]) == 2
    err = _one_line_error(capsys, "reproduce")
    assert f"did you mean {suggestion!r}?" in err
    assert not (tmp_path / "mine").exists()


# -- 5. inf / nan in a leaderboard's value column --------------------------------------------------------------------

def test_leaderboard_lines_with_inf_or_nan_values_are_skipped_and_named(tmp_path):
    from ssl3d.bench.run.results import ResultStore

    ref = _reference(tmp_path)
    lines = (ref / "leaderboard.csv").read_text().splitlines()
    for i, bad in ((2, "inf"), (3, "nan"), (4, "-Infinity")):
        lines[i - 1] = lines[i - 1].replace(",50.0,", f",{bad},")
    (ref / "leaderboard.csv").write_text("\n".join(lines) + "\n")
    frame, skipped = ResultStore(ref).read_leaderboard_checked()
    assert len(frame) == 3 and frame["value"].tolist() == [50.0] * 3
    assert [str(s) for s in skipped] == [f"{ref / 'leaderboard.csv'}:{i}: value {bad!r} is not a finite number"
                                         for i, bad in ((2, "inf"), (3, "nan"), (4, "-Infinity"))]


def test_a_bad_flag_is_one_line_too(capsys):
    """argparse's own errors (a range, a missing flag) print one line, not the usage block."""
    for argv in (["run", "--method", "x", "--task", "y", "--seed", "4294967296"], ["run", "--method", "x"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("bench run: error: ")
