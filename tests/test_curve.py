"""Budget curves: snapshots at the asked epochs, cache key unchanged, resume, no selection on the test split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssl3d.bench.sweep import curve as curve_mod
from ssl3d.bench.sweep.curve import CurveSpec, carve_validation, choose_knee, run_curve
from ssl3d.bench.protocols.fewshot_folds import FewShotError
from ssl3d.bench.run.pretrain_cache import pretrain_key, pretrain_or_load
from ssl3d.bench.run.runner import RunSpec, validate_run
from ssl3d.core.config import ConfigError
from ssl3d.datasets import default_root
from ssl3d.methods import RunContext
from ssl3d.methods.checkpoint import load_checkpoint
from ssl3d.methods.trainer import snapshot_path
from tests.conftest import TINY_SYNTH

FAST = {**TINY_SYNTH, "train.max_steps_per_epoch": "2"}


def _spec(**overrides: str) -> RunSpec:
    return RunSpec(method="parae-pointnet", task="synth-svm", device="cpu", overrides={**FAST, **overrides},
                   progress=False)


def _pretrain(tmp_path, name: str, **overrides: str):
    plan = validate_run(_spec(**overrides))
    plan.pre_data.prepare()
    folder = tmp_path / name
    plan.method.pretrain(plan.pre_data, RunContext(seed=0, checkpoint_dir=folder, progress=False))
    return plan, folder


def test_snapshots_change_neither_key_nor_weights(tmp_path):
    plain, _ = _pretrain(tmp_path, "plain", **{"train.epochs": "3"})
    snap, folder = _pretrain(tmp_path, "snap", **{"train.epochs": "3", "train.snapshot_epochs": "0,2,3"})
    settings = {g: plain.pre_data.settings(g) for g in plain.pre_data.groups()}
    assert pretrain_key(plain.method, "synth", settings, 0) == pretrain_key(snap.method, "synth", settings, 0)
    final_a, final_b = plain.method.model.state_dict(), snap.method.model.state_dict()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert sorted(p.name for p in folder.glob("epoch-*.pt")) == ["epoch-0.pt", "epoch-2.pt", "epoch-3.pt"]
    last = load_checkpoint(snapshot_path(folder, 3))["model"]
    assert all(torch.equal(last[k], final_b[k]) for k in final_b)
    first = load_checkpoint(snapshot_path(folder, 0))["model"]
    assert not all(torch.equal(first[k], final_b[k]) for k in final_b)  # epoch 0 is the untrained network


def test_snapshot_epochs_are_range_checked():
    with pytest.raises(ConfigError, match="train.snapshot_epochs"):
        validate_run(_spec(**{"train.snapshot_epochs": "1,-2"}))


def test_carve_validation_is_stratified_seeded_and_disjoint():
    labels = np.repeat([0, 1, 2], [10, 5, 2])
    fit, val = carve_validation(labels, 0.2, seed=3)
    assert np.bincount(labels[val]).tolist() == [2, 1, 1]  # round(0.2 n), at least one, never the whole class
    assert np.intersect1d(fit, val).size == 0 and len(fit) + len(val) == len(labels)
    again, _ = carve_validation(labels, 0.2, seed=3)
    assert np.array_equal(fit, again)
    assert any(not np.array_equal(val, carve_validation(labels, 0.2, seed=s)[1]) for s in range(4, 8))


def test_split_view_shapes_map_positions_through_skipped_shapes_and_nested_views():
    from ssl3d.bench.features.splits import SplitView

    class Indexed:  # an index of 5 shapes; preparing skipped shape 2
        shapes = [f"s{i}" for i in range(5)]
        _valid = None

    data = Indexed()
    assert SplitView(data, np.array([1, 2]), "v").shapes == ["s1", "s2"]  # unprepared: index positions
    data._valid = np.array([0, 1, 3, 4])
    outer = SplitView(data, np.array([1, 2, 3]), "fit")  # s1, s3, s4
    assert outer.shapes == ["s1", "s3", "s4"]
    assert SplitView(outer, np.array([2, 0]), "support").shapes == ["s4", "s1"]


def _rows(values: dict[int, list[float]], metric: str = "acc") -> pd.DataFrame:
    """A validation curve: ``values[epoch][i]`` is seed i's value."""
    return pd.DataFrame([{"series": "curve", "epoch": e, "seed": s, "metric": metric, "value": v, "split": "val"}
                         for e, per_seed in values.items() for s, v in enumerate(per_seed)])


def _p_below_2dof(differences: list[float]) -> float:
    """One-sided p of a paired t over 3 seeds, by hand: the t CDF with 2 degrees of freedom is
    1/2 + t / (2 sqrt(2 + t^2))."""
    d = np.asarray(differences)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    return 0.5 + t / (2 * np.sqrt(2 + t * t))


def test_a_noisy_drop_larger_than_half_a_point_is_not_significant_so_the_cheaper_budget_is_the_knee():
    # epoch 1 is 0.6 below epoch 2 on average, but the seeds disagree (-2.0, +0.2, 0.0): t = -0.854, p = 0.241
    frame = _rows({0: [80.0, 80.0, 80.0], 1: [88.0, 91.2, 92.0], 2: [90.0, 91.0, 92.0]})
    out = curve_mod.knee_tests(frame, "acc")
    assert out["best"] == 2 and out["best_at_largest"] and out["seeds"] == [0, 1, 2]
    assert out["budgets"]["1"]["difference"] == pytest.approx(-0.6)
    p_below = out["budgets"]["1"]["p_below"]
    assert p_below == pytest.approx(_p_below_2dof([-2.0, 0.2, 0.0])) and p_below == pytest.approx(0.2415, abs=1e-4)
    assert out["budgets"]["2"] == {"mean": 91.0, "difference": 0.0, "ci95": 0.0, "p_below": 1.0, "test": "equal"}
    assert out["knee"] == choose_knee(frame, "acc") == 1
    assert choose_knee(frame, "acc", alpha=0.3) == 2  # the level is the rule's only knob


def test_a_consistent_drop_smaller_than_half_a_point_is_significant_so_the_larger_budget_is_the_knee():
    # epoch 1 is 0.3, 0.4, 0.5 below epoch 2 on the three seeds: t = -6.93, p = 0.0101
    frame = _rows({0: [80.0, 80.0, 80.0], 1: [89.7, 90.6, 91.5], 2: [90.0, 91.0, 92.0]})
    out = curve_mod.knee_tests(frame, "acc")
    p_below = out["budgets"]["1"]["p_below"]
    assert p_below == pytest.approx(_p_below_2dof([-0.3, -0.4, -0.5])) and p_below == pytest.approx(0.0101, abs=1e-4)
    assert out["budgets"]["1"]["test"] == "paired t" and out["knee"] == 2


def test_the_best_inside_the_curve_is_not_at_the_cap_and_the_untrained_network_is_no_candidate():
    # pretraining first hurts: epoch 0 is the best value but the reference, not a budget
    frame = _rows({0: [95.0, 95.0, 95.0], 1: [89.7, 90.6, 91.5], 2: [90.0, 91.0, 92.0], 4: [89.0, 90.0, 91.0]})
    out = curve_mod.knee_tests(frame, "acc")
    assert out["best"] == 2 and out["largest"] == 4 and not out["best_at_largest"]
    assert out["budgets"]["4"]["p_below"] == 0.0  # the same 1-point drop on every seed: certain
    assert out["knee"] == 2 and "0" not in out["budgets"]
    assert choose_knee(_rows({0: [91.7, 91.0, 92.0]}), "acc") == 0  # nothing else measured


def test_choose_knee_refuses_test_rows_too_few_seeds_and_unpaired_seeds():
    frame = _rows({0: [80.0, 80.0, 80.0], 1: [88.0, 91.2, 92.0], 2: [90.0, 91.0, 92.0]})
    with pytest.raises(ValueError, match="validation split only"):
        choose_knee(pd.concat([frame, frame.assign(split="test")]), "acc")
    two = frame[frame["seed"] < 2]
    with pytest.raises(ValueError, match=r"c\.csv, metric 'acc': seeds \[0, 1\]; a knee needs at least 3"):
        choose_knee(two, "acc", source="c.csv")
    moved = frame.assign(seed=np.where((frame["epoch"] == 2) & (frame["seed"] == 2), 5, frame["seed"]))
    with pytest.raises(ValueError, match=r"seeds differ between budgets .*2: \[0, 1, 5\]"):
        choose_knee(moved, "acc")
    with pytest.raises(ValueError, match="several values"):
        choose_knee(pd.concat([frame, frame]), "acc")
    with pytest.raises(ValueError, match="no curve rows"):
        choose_knee(frame, "other")
    with pytest.raises(ValueError, match="alpha"):
        choose_knee(frame, "acc", alpha=1.5)


class _Untouchable:
    """Stands in for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name}) while choosing on validation")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def _curve(results, epochs, seeds=(0,), **kw) -> dict:
    run = dataclasses.replace(_spec(), results_dir=str(results))
    return run_curve(CurveSpec(run, tuple(epochs), tuple(seeds), **kw))


def test_curve_on_val_never_reads_the_test_split(tmp_path, monkeypatch, caplog):
    real = curve_mod.validate_run

    def no_test(spec):
        plan = real(spec)
        plan.test_data = _Untouchable()
        return plan

    monkeypatch.setattr(curve_mod, "validate_run", no_test)
    out = _curve(tmp_path / "r", [1, 2], seeds=(0, 1, 2), baseline="random-pointnet")
    frame = pd.read_csv(out["csv"])
    curve = frame[frame["series"] == "curve"]
    assert sorted(curve["epoch"].unique()) == [0, 1, 2] and sorted(curve["seed"].unique()) == [0, 1, 2]
    assert set(frame["split"]) == {"val"} and set(frame[frame["series"] == "baseline"]["epoch"]) == {0}
    assert (curve["n_score"] == 4).all() and (curve["n_fit"] == 20).all()  # 4 classes x 6: one val shape each
    assert out["knees"]["overall_acc"] == choose_knee(frame, "overall_acc")
    # the JSON records the rule, its level and every budget's paired test, read back from the CSV the same way
    record = json.loads(out["csv"].with_suffix(".json").read_text())
    assert record["knee_alpha"] == curve_mod.KNEE_ALPHA and "one-sided" in record["knee_rule"]
    assert record["knee_tests"]["overall_acc"] == curve_mod.knee_tests(frame, "overall_acc", source=str(out["csv"]))
    assert sorted(record["knee_tests"]["overall_acc"]["budgets"]) == ["1", "2"]
    rising = "overall_acc is best at the largest budget measured (2 epochs): still rising" in caplog.text
    assert rising == record["knee_tests"]["overall_acc"]["best_at_largest"]
    assert out["plot"].stat().st_size > 0


def test_curve_resumes_and_replays_missing_snapshots(tmp_path, monkeypatch):
    first = _curve(tmp_path / "r", [2])
    frame = first["frame"]
    # one seed: the curve is kept, the knee refused and the reason recorded
    record = json.loads(first["csv"].with_suffix(".json").read_text())
    assert first["knees"] == record["knees"] == {} and "seeds [0]: a knee needs at least 3" in record["knee_refused"]
    # rerun of the same curve: nothing is pretrained or evaluated again
    with monkeypatch.context() as patch:  # not monkeypatch.undo(): that would also drop the isolated data folder
        patch.setattr(curve_mod, "snapshot_files", lambda *a: pytest.fail("resume pretrained again"))
        again = _curve(tmp_path / "r", [2])
    pd.testing.assert_frame_equal(again["frame"], frame)
    # a new budget after the pretraining finished: replayed beside the cache, same weights as the first run
    more = _curve(tmp_path / "r", [1, 2])
    assert sorted(more["frame"]["epoch"].unique()) == [0, 1, 2]
    folders = list((default_root() / "pretrain" / "parae-pointnet").iterdir())
    folder = next(f for f in folders if (f / curve_mod.REPLAY).is_dir())
    a = load_checkpoint(snapshot_path(folder, 2))["model"]
    b = load_checkpoint(snapshot_path(folder / curve_mod.REPLAY, 2))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_shorter_curve_and_run_are_served_by_a_longer_curves_snapshots(tmp_path, monkeypatch):
    # the 3-seed knee curve pretrains every seed furthest; the preset's runs and its shorter 3-seed curve (the
    # suite script's family step) train nothing more, for any seed
    knee = _curve(tmp_path / "knee", [1, 2], seeds=(0, 1, 2))
    method_cls = type(validate_run(_spec()).method)
    with monkeypatch.context() as patch:
        patch.setattr(method_cls, "training_step", lambda *a: pytest.fail("trained again"))
        run = validate_run(_spec(**{"train.epochs": "1"}))
        run.pre_data.prepare()
        served = pretrain_or_load(run.method, run.pre_data, 2, run.device, default_root(), False)
        short = _curve(tmp_path / "short", [1], seeds=(0, 1, 2))
    assert run.method.pretrain_info["from_snapshot"].endswith("epoch-1.pt") and not served["cached"]
    assert not list((default_root() / "pretrain").rglob(curve_mod.REPLAY))
    rows = knee["frame"][knee["frame"]["epoch"] <= 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(short["frame"], rows)


def test_curve_refuses_bad_specs_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="--split"):
        _curve(tmp_path / "r", [1], split="train")
    with pytest.raises(ConfigError, match="--epochs"):
        _curve(tmp_path / "r", [-1])
    assert not (tmp_path / "r").exists()


def test_a_val_curve_checks_the_carved_parts_before_pretraining(tmp_path):
    # 2 queries per class: the test split holds 3 per class, the validation part of train only 1
    fewshot = {**FAST, "fewshot.way": "2", "fewshot.shot": "1", "fewshot.queries": "2", "fewshot.folds": "1"}
    run = RunSpec(method="parae-pointnet", task="synth-fewshot", device="cpu", overrides=fewshot, progress=False,
                  results_dir=str(tmp_path / "r"), data_root=str(tmp_path / "data"))
    assert curve_mod.validate_curve(CurveSpec(run, (1,), split="test"))  # reporting on test: possible
    with pytest.raises(FewShotError, match="2 queries per class"):
        curve_mod.validate_curve(CurveSpec(run, (1,), split="val"))
    assert not (tmp_path / "r").exists() and not (tmp_path / "data" / "pretrain").exists()


def test_snapshot_epochs_do_not_split_leaderboard_groups():
    from ssl3d.bench.run.results import settings_label

    # snapshots change no number, so a curve's runs share a row group with plain runs of the same settings
    assert settings_label({"train.snapshot_epochs": "1,2", "train.epochs": "4"}) == settings_label({"train.epochs": "4"})


def test_a_curve_rerun_with_other_settings_never_reuses_stale_evaluations(tmp_path, monkeypatch):
    first = _curve(tmp_path / "r", [1])
    stem = tmp_path / "r" / "curves" / "parae-pointnet-synth-svm-points-val"
    before = json.loads((stem / "parae-pointnet-s0-e1.json").read_text())
    calls = []
    real = curve_mod.snapshot_files
    with monkeypatch.context() as patch:
        patch.setattr(curve_mod, "snapshot_files", lambda *a: calls.append(1) or real(*a))
        # the same file names, another protocol setting
        run = dataclasses.replace(_spec(**{"svm.c_grid": "1.0"}), results_dir=str(tmp_path / "r"))
        other = run_curve(CurveSpec(run, (1,), (0,)))
    after = json.loads((stem / "parae-pointnet-s0-e1.json").read_text())
    assert calls and after["identity"] != before["identity"]
    assert len(first["frame"]) == len(other["frame"])


def test_curve_plot_labels_the_measured_budgets_and_draws_the_references():
    import matplotlib.pyplot as plt

    from ssl3d.bench.report.plots import curve_figure

    rows = [{"series": "curve", "method": "m", "epoch": e, "seed": s, "metric": "overall_acc", "value": 80.0 + e + s,
             "split": "val"} for e in (0, 1, 2, 4, 16) for s in (0, 1)]
    rows += [{"series": "baseline", "method": "random-m", "epoch": 0, "seed": s, "metric": "overall_acc",
              "value": 79.0, "split": "val"} for s in (0, 1)]
    fig = curve_figure(pd.DataFrame(rows))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "4", "16"]
        assert ax.xaxis.get_minorticklocs().size == 0
        labels = ax.get_legend_handles_labels()[1]
        assert labels == ["m (n=2)", "m untrained (epoch 0)", "random-m (baseline)"]
        assert ax.get_ylabel() == "overall_acc (val split)"
    finally:
        plt.close(fig)
