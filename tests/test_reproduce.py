"""`bench reproduce`: rerun a committed cell's seeds, compare per seed and for the mean (CI, paired test)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from ssl3d.bench.cli import main
from ssl3d.bench.report.reproduce import Comparison, reproduce_cell
from ssl3d.bench.run.results import ResultStore, settings_label
from ssl3d.bench.sweep.suite import run_suite
from ssl3d.core.config import ConfigError

from conftest import TINY_SYNTH


def test_ci_and_paired_test_against_hand_computed_values():
    c = Comparison("overall_acc", {0: 80.0, 1: 82.0, 2: 84.0}, {0: 83.0, 1: 84.0, 2: 88.0})
    # committed: mean 82, sd 2 -> CI half-width t(0.975, 2) * 2 / sqrt(3); reproduced mean 85 is 3 away
    assert c.ci95 == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6) and c.inside_ci
    # paired differences 3, 2, 4: mean 3, sd 1 -> t = 3 sqrt(3) on 2 dof
    assert c.test == "paired t" and c.p_value == pytest.approx(2 * stats.t.sf(3 * math.sqrt(3), 2))
    far = Comparison("overall_acc", {0: 80.0, 1: 82.0, 2: 84.0}, {0: 90.0, 1: 90.5, 2: 91.0})
    assert not far.inside_ci and far.p_value < 0.05
    welch = Comparison("overall_acc", {0: 80.0, 1: 82.0, 2: 84.0}, {3: 83.0, 4: 85.0, 5: 87.0})
    t = -3 / math.sqrt(8 / 3)  # Welch with equal variances and sizes: df = 2 (n - 1) = 4
    assert welch.test == "Welch t" and welch.p_value == pytest.approx(2 * stats.t.sf(abs(t), 4))
    same = Comparison("m", {0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0})
    assert same.inside_ci and same.test == "equal" and same.p_value == 1.0


def test_reproduce_a_tiny_cell_on_the_same_machine(tmp_path, capsys):
    ref = tmp_path / "ref"
    run_suite(methods="random-pointnet", tasks="synth-svm", seeds=(0, 1), overrides=TINY_SYNTH,
              results_dir=str(ref), progress=False)
    label = settings_label(TINY_SYNTH)
    comparisons, facts = reproduce_cell(str(ref), "synth-svm/random-pointnet", settings=label,
                                        results_dir=str(tmp_path / "mine"))
    assert {c.metric for c in comparisons} == {"overall_acc", "mean_class_acc"} and facts["runs"] == 2
    assert facts["reproduced_data_keys"] == [facts["committed_data_key"]]
    for c in comparisons:  # same machine, same threads: the same numbers, seed by seed
        assert c.reproduced == c.committed and c.inside_ci
    assert len(ResultStore(tmp_path / "mine").read_leaderboard()) == 4
    assert len(ResultStore(ref).read_leaderboard()) == 4  # the reference is only read
    assert main(["reproduce", "synth-svm/random-pointnet", "--reference", str(ref), "--settings", label,
                 "--results-dir", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "## overall_acc" in out and "reproduced mean inside the committed 95% CI" in out
    assert list((tmp_path / "cli" / "reproduce").glob("synth-svm_random-pointnet-*.md"))


def test_a_cell_that_is_not_there_is_named(tmp_path):
    ref = tmp_path / "ref"
    run_suite(methods="random-pointnet", tasks="synth-svm", seeds=(0,), overrides=TINY_SYNTH,
              results_dir=str(ref), progress=False)
    with pytest.raises(ConfigError, match=r"leaderboard.csv: cell synth-svm/random-pointnet .* matches 0 groups"):
        reproduce_cell(str(ref), "synth-svm/random-pointnet", settings="svm.kernel=rbf")
    with pytest.raises(ConfigError, match="write TASK/METHOD"):
        reproduce_cell(str(ref), "synth-svm")
