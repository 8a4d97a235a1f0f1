"""`bench` error handling: user errors are one line (exit 2), bugs show their traceback and the run log (exit 1)."""

from __future__ import annotations

import pytest

import ssl3d.bench.run.runner as runner
from ssl3d.bench.cli import main
from ssl3d.bench.protocols import PROTOCOLS

from conftest import tiny_set_args


def _run_args(tmp_path, *extra: str) -> list[str]:
    return ["run", "--method", "random-pointnet", "--task", "synth-svm", "--no-progress",
            "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"), *tiny_set_args(), *extra]


def test_user_error_is_one_line_with_exit_2(tmp_path, capsys):
    assert main(_run_args(tmp_path, "--set", "train.epochs=-1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench run: error: ") and "method.train.epochs=-1" in err and ">= 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_internal_value_error_shows_traceback_not_a_user_message(tmp_path, capsys, monkeypatch):
    def buggy(spec):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(runner, "validate_run", buggy)
    assert main(_run_args(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: internal invariant broken" in err
    assert "bench run: error: internal invariant broken" not in err


def test_crash_inside_a_run_prints_the_run_log_path(tmp_path, capsys, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(PROTOCOLS.get("svm"), "evaluate", broken)
    assert main(_run_args(tmp_path)) == 1
    err = capsys.readouterr().err
    logs = list((tmp_path / "results" / "runs").glob("*/run.log"))
    assert len(logs) == 1 and "RuntimeError: evaluation exploded" in err and str(logs[0]) in err
    assert "evaluation exploded" in logs[0].read_text()


@pytest.mark.parametrize("flag,value,pattern", [
    ("--seed", "-1", "--seed"), ("--nproc", "0", "--nproc"), ("--seeds", "-2", "--seeds"),
])
def test_numeric_flags_are_range_checked(tmp_path, capsys, flag, value, pattern):
    with pytest.raises(SystemExit) as info:
        main(_run_args(tmp_path, flag, value))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert pattern in err and ">= " in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()
