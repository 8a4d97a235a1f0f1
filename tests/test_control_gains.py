"""Gains over the strongest control, the supervised upper bound and the label-reading marks, against hand computations.

Controls are the two registered random networks (``random-pointnet``, ``random-dgcnn``); a test-registered fake
control shows that the registry's ``Method.control``, not a list of names, decides what a control is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl3d.bench.report.controls import (
    controls_markdown, coverage_note, gains_over_controls, method_label, upper_bound, upper_bound_markdown,
)
from ssl3d.bench.report.html import build_page
from ssl3d.bench.report.leaderboard import summarize, to_markdown, write_leaderboard
from ssl3d.bench.report.untrained import gains_markdown, pretraining_gains
from ssl3d.bench.report.verdicts import verdict_table
from ssl3d.bench.run.results import LEADERBOARD_COLUMNS
from ssl3d.methods import METHODS
from ssl3d.methods.base import Method

P, D = "random-pointnet", "random-dgcnn"


def _rows(method, values, metric="overall_acc", settings="", task="modelnet10-svm", modality="points", seeds=None,
          data_key="d", pretrain_data="modelnet10"):
    seeds = range(len(values)) if seeds is None else seeds
    return [{"run_id": f"{method}-{task}-{metric}-{settings}-{seed}", "task": task, "modality": modality,
             "metric": metric, "method": method, "preset": "cpu", "settings": settings, "data_key": data_key,
             "pretrain_data": pretrain_data, "dataset_version": "1", "seed": seed, "value": v,
             "created_at": f"2026-01-0{seed + 1}", "git_commit": "abc"} for seed, v in zip(seeds, values)]


def _paired_p(d: np.ndarray) -> float:
    return float(2 * stats.t.sf(abs(d.mean()) / (d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1))


def test_the_strongest_control_is_chosen_per_cell_and_the_gain_is_paired_over_seeds():
    runs = pd.DataFrame(_rows("parae-pointnet", [80.0, 82.0, 84.0]) + _rows(P, [70.0, 71.0, 72.0])
                        + _rows(D, [75.0, 76.0, 80.0])  # overall_acc: random-dgcnn is stronger (77 > 71)
                        + _rows("parae-pointnet", [65.0, 63.0, 64.0], "map") + _rows(P, [60.0, 61.0, 62.0], "map")
                        + _rows(D, [50.0, 50.0, 50.0], "map"))  # map: random-pointnet is (61 > 50)
    gains = gains_over_controls(runs).set_index("metric")
    assert len(gains) == 2 and not gains["reads_labels"].any()
    row = gains.loc["overall_acc"]
    d = np.array([80.0, 82.0, 84.0]) - np.array([75.0, 76.0, 80.0])  # 5, 6, 4: mean 5, sd 1
    assert row["control"] == D and row["controls"] == f"{D} 77.00; {P} 71.00"
    assert row["test"] == "paired t" and row["difference"] == pytest.approx(5.0)
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))
    assert row["p_value"] == pytest.approx(_paired_p(d)) == pytest.approx(stats.ttest_rel([80, 82, 84], [75, 76, 80]).pvalue)
    m = gains.loc["map"]
    assert m["control"] == P and m["difference"] == pytest.approx(3.0) and m["control_mean"] == pytest.approx(61.0)
    assert m["p_value"] == pytest.approx(_paired_p(np.array([5.0, 2.0, 2.0])))
    q = stats.false_discovery_control([row["p_value"], m["p_value"]], method="bh")  # one family: both rows
    assert [row["q_value"], m["q_value"]] == pytest.approx(list(q))


def test_different_seeds_fall_back_to_welch():
    a, b = np.array([80.0, 82.0, 84.0]), np.array([75.0, 76.0, 80.0])
    runs = pd.DataFrame(_rows("parae-pointnet", a) + _rows(D, b, seeds=[5, 6, 7]))
    row = gains_over_controls(runs).iloc[0]
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert row["test"] == "Welch t" and row["difference"] == pytest.approx(5.0)
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))
    assert row["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_a_smaller_is_better_metric_takes_the_lowest_control_and_flips_the_sign_as_the_untrained_table_does():
    method, p_ctrl, d_ctrl = [0.10, 0.12, 0.11], [0.20, 0.22, 0.21], [0.15, 0.16, 0.14]
    runs = pd.DataFrame(_rows("parae-pointnet", method, "hau:chair", task="modelnet10-ibsr")
                        + _rows(P, p_ctrl, "hau:chair", task="modelnet10-ibsr")
                        + _rows(D, d_ctrl, "hau:chair", task="modelnet10-ibsr")
                        + _rows("parae-pointnet", p_ctrl, "hau:chair", "train.epochs=0", task="modelnet10-ibsr"))
    row = gains_over_controls(runs).iloc[0]
    assert row["control"] == D  # the lowest distance is the strongest control
    assert row["difference"] == pytest.approx(0.04)  # control - method: positive = the method is better
    assert row["p_value"] == pytest.approx(_paired_p(np.array([0.05, 0.04, 0.03])))
    untrained = pretraining_gains(runs).iloc[0]
    assert untrained["difference"] == pytest.approx(0.10)  # untrained - pretrained, the same orientation
    assert "helps in 1 and hurts in 0" in gains_markdown(pretraining_gains(runs))  # a smaller distance helps
    accuracy = pd.DataFrame(_rows("parae-pointnet", method, "iou", task="modelnet10-ibsr")
                            + _rows(P, p_ctrl, "iou", task="modelnet10-ibsr") + _rows(D, d_ctrl, "iou", task="modelnet10-ibsr"))
    flipped = gains_over_controls(accuracy).iloc[0]
    assert flipped["control"] == P and flipped["difference"] == pytest.approx(-0.10)  # larger is better for iou


def test_q_values_count_identical_comparisons_once_and_only_shared_cells_are_compared():
    a, b, c = [90.0, 91.0, 92.5], [85.0, 84.0, 86.5], [70.0, 72.0, 71.0]
    runs = pd.DataFrame(
        _rows("parae-pointnet", a) + _rows(P, b) + _rows("parae-pointnet", a, "mean_class_acc")
        + _rows(P, b, "mean_class_acc")  # a balanced test set: the same test twice
        + _rows("parae-dgcnn", c, pretrain_data="shapenet") + _rows(D, [69.0, 72.5, 70.0])  # pretraining data: no matter
        + _rows("parae-dgcnn", c, "train.epochs=0")  # an untrained network is not compared with a control
        + _rows("cmcv", c, data_key="other")  # other evaluation data: no control ran it
        + _rows("voxel-vae", c, modality="voxels") + _rows(P, c, modality="views"))  # no control of voxels
    gains = gains_over_controls(runs).set_index(["method", "metric"])
    assert sorted(gains.index) == [("parae-dgcnn", "overall_acc"), ("parae-pointnet", "mean_class_acc"),
                                   ("parae-pointnet", "overall_acc")]
    assert gains.loc[("parae-pointnet", "overall_acc"), "same_test_as"] == 1
    p = [gains.loc[("parae-dgcnn", "overall_acc"), "p_value"], gains.loc[("parae-pointnet", "mean_class_acc"), "p_value"]]
    q = stats.false_discovery_control(p, method="bh")
    assert gains.loc[("parae-dgcnn", "overall_acc"), "q_value"] == pytest.approx(q[0])
    assert gains.loc[("parae-pointnet", "overall_acc"), "q_value"] == pytest.approx(q[1])
    table = gains_over_controls(runs)
    text = controls_markdown(table, coverage_note(runs, table))
    assert "this table's 2 distinct tests" in text and "| = 2 |" in text
    assert "No control was run on voxels." in text and "On points, cmcv share no cell with a control" in text


def test_a_control_is_whatever_the_registry_declares(monkeypatch):
    class Handcrafted(Method):
        name = "test-descriptor"
        control = True

    monkeypatch.setitem(METHODS._items, Handcrafted.name, Handcrafted)  # registered for this test only
    runs = pd.DataFrame(_rows("parae-pointnet", [80.0, 82.0, 84.0]) + _rows(P, [70.0, 71.0, 72.0])
                        + _rows(Handcrafted.name, [78.0, 79.0, 80.0]))
    row = gains_over_controls(runs).iloc[0]
    assert row["control"] == Handcrafted.name and row["difference"] == pytest.approx(3.0)
    assert method_label(Handcrafted.name) == "test-descriptor (control)"
    assert "test-descriptor (control)" in to_markdown(summarize(runs))


def test_the_supervised_upper_bound_sits_beside_the_best_frozen_number_of_the_same_network():
    scratch = [92.0, 93.0, 94.0]
    runs = pd.DataFrame(
        _rows("parae-pointnet", scratch, task="modelnet10-cls", settings="classification.mode=scratch")
        + _rows("parae-pointnet", [90.0, 90.5, 91.0], task="modelnet10-cls",  # an explicit budget: 7 epochs
                settings="classification.epochs=7 classification.mode=scratch")
        + _rows("parae-pointnet", [88.0, 89.0, 87.0])  # svm: 88
        + _rows("parae-pointnet", [89.0, 90.0, 91.5], task="modelnet10-cls")  # linear (the default mode): 90.17
        + _rows("parae-pointnet", [99.0, 99.0, 99.0], task="modelnet10-cls", settings="classification.mode=finetune")
        + _rows("parae-pointnet", [99.0, 99.0, 99.0], settings="svm.label_fraction=0.5")  # other labels: not frozen
        + _rows("parae-pointnet", [99.0, 99.0, 99.0], settings="train.epochs=0")  # not the pretrained network
        + _rows("parae-pointnet", [99.0, 99.0, 99.0], data_key="other"))  # other data
    table = upper_bound(runs).set_index("settings")
    assert list(table.index) == ["classification.epochs=7 classification.mode=scratch", "classification.mode=scratch"]
    row = table.loc["classification.mode=scratch"]
    assert row["epochs"] == 20 and row["label_fraction"] == 1.0  # the protocol's default budget
    assert row["frozen_task"] == "modelnet10-cls" and row["frozen_settings"] == "" and row["n_frozen"] == 3
    assert row["frozen"] == pytest.approx(np.mean([89.0, 90.0, 91.5]))
    d = np.array(scratch) - np.array([89.0, 90.0, 91.5])
    assert row["test"] == "paired t" and row["difference"] == pytest.approx(d.mean())
    assert row["difference_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))
    assert row["scratch"] == pytest.approx(93.0) and row["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))
    assert table.loc["classification.epochs=7 classification.mode=scratch", "epochs"] == 7
    text = upper_bound_markdown(upper_bound(runs))
    assert "### Supervised upper bound (scratch)" in text and "| 20 | 1 | 93.00 ± 2.48 (3) | modelnet10-cls |" in text
    alone = upper_bound(pd.DataFrame(_rows("parae-pointnet", scratch, task="modelnet10-cls",
                                           settings="classification.mode=scratch")))
    assert alone.iloc[0]["n_frozen"] == 0 and "no frozen run on the same data" in upper_bound_markdown(alone)
    assert upper_bound(pd.DataFrame(_rows("parae-pointnet", scratch))).empty and upper_bound_markdown(
        upper_bound(pd.DataFrame(_rows("parae-pointnet", scratch)))) == ""


def _write(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "leaderboard.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LEADERBOARD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_every_page_marks_label_reading_methods_and_controls(tmp_path):
    rows = (_rows("cmic", [83.0, 84.0, 85.0], modality="views") + _rows("cmic", [79.0, 80.0, 80.5], "overall_acc",
            "train.epochs=0", modality="views") + _rows("cmic-noncat", [81.0, 82.0, 82.5], modality="views")
            + _rows("parae-pointnet", [80.0, 82.0, 84.0]) + _rows("parae-pointnet", [78.0, 79.0, 80.0], settings="train.epochs=0")
            + _rows(P, [70.0, 71.0, 72.0])
            + _rows("parae-pointnet", [92.0, 93.0, 94.0], task="modelnet10-cls", settings="classification.mode=scratch"))
    folder = _write(tmp_path / "res", rows)
    assert method_label("cmic") == "cmic †" and method_label("cmic-noncat") == "cmic-noncat"
    summary, markdown = write_leaderboard(folder)
    assert "| cmic † | views |" in markdown and "| cmic-noncat | views |" in markdown
    assert f"| {P} (control) | points |" in markdown and "† pretraining reads class labels (not self-supervised)" in markdown
    assert "| 1 | modelnet10-svm | cmic † | views | overall_acc |" in markdown  # the untrained table
    assert "### Gains over the strongest control" in markdown and "### Supervised upper bound (scratch)" in markdown
    saved = pd.read_csv(folder / "summary.csv").set_index("method")
    assert bool(saved.loc["cmic", "reads_labels"].all()) and bool(saved.loc[P, "control"])
    assert not saved.loc["cmic-noncat", "reads_labels"] and not saved.loc["cmic", "control"].any()
    assert pd.read_csv(folder / "pretraining_gains.csv").set_index("method").loc["cmic", "reads_labels"]
    controls = pd.read_csv(folder / "control_gains.csv")
    assert controls["method"].tolist() == ["parae-pointnet"] and controls["control"].tolist() == [P]
    page = build_page(folder)
    assert '<td data-v="cmic" title="† pretraining reads class labels (not self-supervised).">cmic †</td>' in page
    assert 'id="controls"' in page and 'id="upper"' in page and "Marks: † pretraining reads class labels" in page
    verdicts = verdict_table(folder, preset="cpu", cells=(("cmic", "views"), ("parae-pointnet", "points"),
                                                          ("point-mae", "points")))
    assert "| `cmic` † | views |" in verdicts and "| — | — | — |" in verdicts
    assert "| `point-mae` | points | not run | not run |" in verdicts  # a missing cell is said, not dropped
    assert f"`{P}` 71.00" in verdicts and "† pretraining reads class labels" in verdicts.replace("\n", " ")


def test_a_control_read_on_a_familys_data_is_matched_on_the_data_not_on_its_own_settings():
    family = "data.view_size=48 data.n_points=256"  # copied from the family: the same data_key
    runs = pd.DataFrame(_rows("parae-pointnet", [80.0, 82.0, 84.0], data_key="fam")
                        + _rows(D, [75.0, 76.0, 80.0], settings=family, data_key="fam")
                        + _rows(P, [90.0, 90.0, 90.0], settings="method.global_dim=64", data_key="other"))
    gains = gains_over_controls(runs)
    assert len(gains) == 1  # the control on other data (a stronger one) is not a candidate
    row = gains.iloc[0]
    assert row["control"] == f"{D} [{family}]" and row["difference"] == pytest.approx(5.0)
    # a protocol setting still makes a cell of its own: no control ran it
    method_side = pd.DataFrame(_rows("parae-pointnet", [80.0, 82.0, 84.0], settings="svm.kernel=rbf",
                                     data_key="fam") + _rows(D, [75.0, 76.0, 80.0], data_key="fam"))
    assert gains_over_controls(method_side).empty


def test_a_published_checkpoint_evaluated_as_is_is_compared_with_the_controls():
    ckpt = "method.init_checkpoint=sha256:0123456789abcdef train.epochs=0"
    runs = pd.DataFrame(_rows("parae-pointnet", [80.0, 82.0, 84.0], settings=ckpt)
                        + _rows("parae-pointnet", [70.0, 70.0, 70.0], settings="train.epochs=0")
                        + _rows(D, [75.0, 76.0, 80.0]))
    gains = gains_over_controls(runs)
    assert list(gains["settings"]) == [ckpt]  # the untrained network's own rows are not compared
    assert gains.iloc[0]["difference"] == pytest.approx(5.0)


def test_the_readme_block_is_replaced_between_its_markers_only():
    from ssl3d.bench.report.verdicts import replace_block

    readme = "intro\n<!-- verdicts:start (command) -->\nold table\n<!-- verdicts:end -->\noutro\n"
    assert replace_block(readme, "new\n") == "intro\n<!-- verdicts:start (command) -->\nnew\n<!-- verdicts:end -->\noutro\n"
    with pytest.raises(ValueError, match="notes.md: no '<!-- verdicts:start"):
        replace_block("no markers here\n", "new\n", "notes.md")
