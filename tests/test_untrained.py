"""The pretrained-vs-untrained table: every cell with both runs, paired (or Welch) CI, p and BH q against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl3d.bench.report.untrained import gains_markdown, pretraining_gains


def _rows(method, values, settings="", metric="overall_acc", task="modelnet10-svm"):
    return [{"task": task, "modality": "points", "metric": metric, "method": method, "preset": "cpu",
             "settings": settings, "data_key": "d", "seed": seed, "value": v, "created_at": f"2026-01-0{seed + 1}"}
            for seed, v in enumerate(values)]


def test_same_seeds_pair_and_match_a_hand_computation():
    a, b = np.array([90.0, 91.0, 92.5]), np.array([85.0, 84.0, 86.5])
    runs = pd.DataFrame(_rows("m", a) + _rows("m", b, "train.epochs=0") + _rows("other", [1.0, 2.0]))
    gains = pretraining_gains(runs)
    assert len(gains) == 1  # `other` has no untrained run
    row = gains.iloc[0]
    d = a - b  # 5, 7, 6: mean 6, sd 1
    assert row["test"] == "paired t" and row["difference"] == pytest.approx(6.0)
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue) == pytest.approx(
        2 * stats.t.sf(6.0 * np.sqrt(3), 2))
    assert row["q_value"] == pytest.approx(row["p_value"])
    assert "helps in 1 and hurts in 0" in gains_markdown(gains)


def test_different_seeds_fall_back_to_welch():
    a, b = np.array([90.0, 91.0, 92.5]), np.array([85.0, 84.0, 86.5])
    unpaired = [dict(r, seed=r["seed"] + 5) for r in _rows("m", b, "train.epochs=0")]
    row = pretraining_gains(pd.DataFrame(_rows("m", a) + unpaired)).iloc[0]
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert row["test"] == "Welch t"
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))
    assert row["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_q_values_over_the_table_count_identical_tests_once():
    """A balanced test set gives equal overall and mean-class accuracies: one test, not two."""
    a, b, c = [90.0, 91.0, 92.5], [85.0, 84.0, 86.5], [70.0, 72.0, 71.0]
    runs = pd.DataFrame(_rows("m", a) + _rows("m", b, "train.epochs=0")
                        + _rows("m", a, metric="mean_class_acc") + _rows("m", b, "train.epochs=0", "mean_class_acc")
                        + _rows("n", c) + _rows("n", [69.0, 72.5, 70.0], "train.epochs=0"))
    gains = pretraining_gains(runs).set_index(["method", "metric"])
    assert gains.loc[("m", "overall_acc"), "same_test_as"] == 0 and gains.loc[("m", "mean_class_acc"), "same_test_as"] == -1
    p = [gains.loc[("m", "mean_class_acc"), "p_value"], gains.loc[("n", "overall_acc"), "p_value"]]
    q = stats.false_discovery_control(p, method="bh")
    assert gains.loc[("m", "overall_acc"), "q_value"] == pytest.approx(q[0])
    assert gains.loc[("n", "overall_acc"), "q_value"] == pytest.approx(q[1])
    assert "this table's 2 distinct tests" in gains_markdown(pretraining_gains(runs))


def test_a_loss_is_reported_as_plainly_as_a_gain():
    runs = pd.DataFrame(_rows("m", [80.0, 80.5, 81.0]) + _rows("m", [88.0, 89.0, 88.5], "train.epochs=0"))
    gains = pretraining_gains(runs)
    assert gains.iloc[0]["difference"] < 0
    assert "helps in 0 and hurts in 1" in gains_markdown(gains)


def test_other_overrides_and_single_seeds_do_not_count_as_evidence():
    runs = pd.DataFrame(_rows("m", [80.0]) + _rows("m", [70.0], "train.epochs=0")
                        + _rows("m", [99.0, 99.0], "svm.kernel=rbf"))
    row = pretraining_gains(runs).iloc[0]
    assert row["pretrained"] == 80.0 and np.isnan(row["p_value"]) and np.isnan(row["ci95"])
    assert "Of 1 distinct tests, pretraining helps in 0 and hurts in 0" in gains_markdown(pretraining_gains(runs))


def test_an_ablation_borrows_its_twins_untrained_runs_only_when_it_has_none():
    twin = [90.0, 91.0, 92.0]
    runs = pd.DataFrame(_rows("cmic", [95.0, 96.0, 97.0]) + _rows("cmic", twin, "train.epochs=0")
                        + _rows("cmic-noncat", [93.0, 94.0, 95.0]) + _rows("parae-dgcnn", [93.0, 94.0, 95.0]))
    gains = pretraining_gains(runs).set_index("method")
    assert list(gains.index) == ["cmic", "cmic-noncat"]  # parae-dgcnn declares no twin: no untrained runs, no row
    assert gains.loc["cmic-noncat", "untrained"] == pytest.approx(np.mean(twin))
    assert gains.loc["cmic-noncat", "untrained_method"] == "cmic" and gains.loc["cmic", "untrained_method"] == "cmic"
    assert "91.00 (3, cmic's)" in gains_markdown(pretraining_gains(runs))
    own = pd.concat([runs, pd.DataFrame(_rows("cmic-noncat", [80.0, 81.0, 82.0], "train.epochs=0"))])
    row = pretraining_gains(own).set_index("method").loc["cmic-noncat"]
    assert row["untrained"] == pytest.approx(81.0) and row["untrained_method"] == "cmic-noncat"
