"""The papers' claims checked on leaderboard rows: pre-registered directions, paired or Welch tests, BH q-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl3d.bench.report.claims import CLAIMS, Claim, check_claims, claims_markdown
from ssl3d.bench.protocols.tasks import TASKS
from ssl3d.methods import METHODS
from ssl3d.bench.protocols import PROTOCOLS

CLAIM = Claim("p", "Table 9", "A beats B", "synth-svm", "points", "overall_acc", "a", "b")


def _rows(method: str, values, preset: str = "quick", settings: str = "", data_key: str = "d1",
          metric: str = "overall_acc") -> list[dict]:
    return [{"task": "synth-svm", "modality": "points", "metric": metric, "method": method, "preset": preset,
             "settings": settings, "data_key": data_key, "seed": seed, "value": v,
             "created_at": f"2026-01-01T00:00:0{seed}"} for seed, v in enumerate(values)]


def _check(rows: list[dict]) -> pd.Series:
    return check_claims(pd.DataFrame(rows), (CLAIM,)).iloc[0]


def test_a_clear_win_holds_with_scipys_p_value():
    better, worse = [80.0, 82.0, 81.0], [70.0, 73.0, 71.0]
    row = _check(_rows("a", better) + _rows("b", worse))
    assert row["verdict"] == "holds" and row["test"] == "paired t"  # both sides ran seeds 0 1 2
    assert row["p_value"] == pytest.approx(stats.ttest_rel(better, worse, alternative="greater").pvalue)
    assert row["p_two_sided"] == pytest.approx(stats.ttest_rel(better, worse).pvalue)
    assert row["q_value"] == pytest.approx(row["p_value"])  # a family of one
    assert row["direction"] == "a > b"
    assert row["mean_better"] == pytest.approx(81.0) and row["n_better"] == 3
    assert row["ci95_better"] == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))


def test_a_clear_loss_is_refuted_and_noise_is_inconclusive():
    assert _check(_rows("a", [60.0, 61.0, 62.0]) + _rows("b", [70.0, 71.0, 72.0]))["verdict"] == "refuted"
    row = _check(_rows("a", [70.0, 75.0, 66.0]) + _rows("b", [69.0, 76.0, 64.0]))  # paired differences 1, -1, 2
    assert row["verdict"] == "inconclusive (same direction)" and row["p_value"] > 0.05
    flat = _check(_rows("a", [50.0, 50.0]) + _rows("b", [50.0, 50.0]))
    assert flat["verdict"] == "inconclusive (equal)"


def test_seeds_that_do_not_pair_use_welch():
    rows = _rows("a", [80.0, 82.0, 81.0]) + [dict(r, seed=r["seed"] + 3) for r in _rows("b", [70.0, 73.0, 71.0])]
    row = _check(rows)
    assert row["test"] == "Welch t"
    assert row["p_value"] == pytest.approx(stats.ttest_ind([80.0, 82.0, 81.0], [70.0, 73.0, 71.0], equal_var=False,
                                                           alternative="greater").pvalue)


def test_a_one_sided_test_chosen_after_the_data_cannot_refute():
    """The data lean against the paper: one-sided p = 0.040 that way, but two-sided p = 0.079 is not below 0.05."""
    a = np.array([76.0, 78.0, 75.5])
    b = a + np.array([3.0, 1.2, 4.0])
    row = _check(_rows("a", list(a)) + _rows("b", list(b)))
    assert stats.ttest_rel(a, b, alternative="less").pvalue < 0.05 < row["p_two_sided"] == pytest.approx(0.0793, abs=1e-4)
    assert row["verdict"] == "inconclusive (opposite direction)"
    assert row["p_value"] > 0.9  # the paper's direction, fixed in advance


def test_identical_comparisons_are_counted_once():
    """Two claims over the same numbers (ParAE vs random-pointnet and vs its own untrained network) are one test."""
    twin = Claim("p", "Table 9", "A beats its untrained network", "synth-svm", "points", "overall_acc", "a", "a",
                 "train.epochs=0")
    worse = [70.0, 73.5, 71.0]
    rows = _rows("a", [80.0, 82.0, 81.0]) + _rows("b", worse) + _rows("a", worse, settings="train.epochs=0")
    table = check_claims(pd.DataFrame(rows), (CLAIM, twin))
    assert list(table["same_test_as"]) == [-1, 0]
    assert table["q_value"].iloc[0] == table["q_value"].iloc[1] == pytest.approx(table["p_value"].iloc[0])  # m = 1
    md = claims_markdown(table)
    assert "over the 1 distinct claims" in md and "| = 1 |" in md


def test_q_values_control_the_false_discovery_rate_over_the_family():
    claims = tuple(Claim("p", "T", f"A{i} beats B", "synth-svm", "points", "overall_acc", f"a{i}", "b") for i in range(3))
    rows = _rows("b", [70.0, 71.0, 72.0]) + _rows("a0", [80.0, 81.5, 82.0]) + _rows("a1", [70.5, 72.3, 72.1]) \
        + _rows("a2", [69.0, 71.5, 72.4])
    table = check_claims(pd.DataFrame(rows), claims)
    p = table["p_value"].to_numpy()
    assert table["q_value"].to_numpy() == pytest.approx(stats.false_discovery_control(p, method="bh"))


def test_only_plain_runs_of_the_preset_and_one_dataset_count():
    rows = (_rows("a", [80.0, 81.0, 82.0]) + _rows("b", [70.0, 71.0, 72.0])
            + _rows("b", [99.0, 99.5, 99.9], settings="svm.kernel=rbf")  # another experiment
            + _rows("b", [99.0, 99.5, 99.9], preset="paper")
            + _rows("b", [99.0, 99.5], data_key="other"))  # other evaluation data
    assert _check(rows)["mean_worse"] == pytest.approx(71.0)
    assert _check(_rows("a", [80.0, 81.0, 82.0]) + _rows("b", [70.0]))["verdict"] == "not run"
    with pytest.raises(ValueError, match="alpha"):
        check_claims(pd.DataFrame(_rows("a", [1.0])), (CLAIM,), alpha=1.5)


def test_an_untrained_baseline_is_the_same_method_with_its_settings():
    claim = Claim("p", "T", "training helps", "synth-svm", "points", "overall_acc", "a", "a", "train.epochs=0")
    rows = _rows("a", [80.0, 81.0, 82.0]) + _rows("a", [60.0, 61.0, 62.0], settings="train.epochs=0")
    row = check_claims(pd.DataFrame(rows), (claim,)).iloc[0]
    assert row["verdict"] == "holds" and row["mean_worse"] == pytest.approx(61.0)
    assert row["worse"] == "a [train.epochs=0]"


def test_markdown_lists_every_claim_and_counts_verdicts():
    table = check_claims(pd.DataFrame(_rows("a", [80.0, 82.0, 81.0]) + _rows("b", [70.0, 73.0, 71.0])), (CLAIM, CLAIM))
    md = claims_markdown(table)
    assert md.count("| A beats B |") == 2 and "**holds**" in md and "holds: 2" in md


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c.paper}-{c.better}-{c.worse}-{c.task}-{c.modality}")
def test_every_claim_names_a_pair_the_suite_runs(claim):
    task = TASKS.get(claim.task)
    protocol = PROTOCOLS.get(task.protocol).for_task(task)
    for name in (claim.better, claim.worse):
        assert protocol.supports(METHODS.get(name), task, claim.modality) is None, (name, claim.task, claim.modality)


def test_default_claims_are_checked_on_every_dataset_with_the_protocols_task():
    from ssl3d.bench.report.claims import claims_on_datasets

    moved = claims_on_datasets((CLAIM,), {"synth-svm", "modelnet10-svm", "modelnet10-ibsr"})
    assert sorted(c.task for c in moved) == ["modelnet10-svm", "synth-svm"]
    assert all(c.better == "a" and c.metric == "overall_acc" for c in moved)
    assert claims_on_datasets((CLAIM,), {"modelnet10-recon"}) == ()


def test_default_claims_on_real_rows_without_synth_rows():
    rows = [{**r, "task": "modelnet10-svm", "modality": "voxels"} for r in
            _rows("switchvae", [90.0, 91.0, 90.5]) + _rows("voxel-vae", [85.0, 86.0, 85.5])]
    table = check_claims(pd.DataFrame(rows))
    row = table[(table["better"] == "switchvae") & (table["worse"] == "voxel-vae")].iloc[0]
    assert row["task"] == "modelnet10-svm" and row["verdict"] == "holds" and set(table["task"]) == {"modelnet10-svm"}
