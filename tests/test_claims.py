"""The papers' claims checked on leaderboard rows: verdicts against scipy's Welch t-test."""

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
    assert row["verdict"] == "holds"
    assert row["p_value"] == pytest.approx(stats.ttest_ind(better, worse, equal_var=False, alternative="greater").pvalue)
    assert row["mean_better"] == pytest.approx(81.0) and row["n_better"] == 3
    assert row["ci95_better"] == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))


def test_a_clear_loss_is_refuted_and_noise_is_inconclusive():
    assert _check(_rows("a", [60.0, 61.0, 62.0]) + _rows("b", [70.0, 71.0, 72.0]))["verdict"] == "refuted"
    row = _check(_rows("a", [70.0, 75.0, 66.0]) + _rows("b", [69.0, 74.0, 65.0]))
    assert row["verdict"] == "inconclusive (same direction)" and row["p_value"] > 0.05
    flat = _check(_rows("a", [50.0, 50.0]) + _rows("b", [50.0, 50.0]))
    assert flat["verdict"] == "inconclusive (equal)"


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
