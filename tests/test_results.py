"""The result store (atomic, concurrent-safe) and the leaderboard statistics."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl3d.bench.report.leaderboard import summarize, to_markdown, write_leaderboard
from ssl3d.core.stats import ci95_halfwidth
from ssl3d.bench.run.results import LEADERBOARD_COLUMNS, ResultStore, leaderboard_rows, settings_label


def _result(run_id: str, seed: int, value: float, method: str = "m", created: str = "2026-01-01T00:00:00",
            settings: str = "") -> dict:
    return {"run_id": run_id, "created_at": created, "task": "synth-svm", "method": method, "modality": "points",
            "preset": "quick", "seed": seed, "pretrain_data": "synth", "dataset_version": "synth-1", "data_key": "d1",
            "settings": settings, "git_commit": "abc", "metrics": {"overall_acc": value, "mean_class_acc": value - 1}}


def _writer(root: str, worker: int, n: int) -> None:
    store = ResultStore(root)
    for i in range(n):
        store.save(_result(f"w{worker}-{i}", i, float(i)))


def test_save_writes_json_and_rows(tmp_path):
    store = ResultStore(tmp_path)
    path = store.save(_result("r1", 0, 80.0))
    assert path == tmp_path / "runs" / "r1" / "result.json" and path.exists()
    frame = store.read_leaderboard()
    assert list(frame.columns) == list(LEADERBOARD_COLUMNS)
    assert sorted(frame["metric"]) == ["mean_class_acc", "overall_acc"]
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "runs" / "r1").glob(".*.tmp"))


def test_concurrent_writers_lose_no_row(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    frame = ResultStore(tmp_path).read_leaderboard()
    assert len(frame) == 3 * 15 * 2
    assert frame["run_id"].nunique() == 45


def test_ci_matches_scipy():
    values = np.array([71.2, 74.9, 69.8, 73.3])
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert ci95_halfwidth(values) == pytest.approx((hi - lo) / 2)
    assert np.isnan(ci95_halfwidth(np.array([1.0])))


def test_summary_groups_seeds_and_ignores_reruns(tmp_path):
    rows = []
    for seed, value in enumerate([70.0, 72.0, 74.0]):
        rows += leaderboard_rows(_result(f"a{seed}", seed, value))
    rows += leaderboard_rows(_result("old", 0, 10.0, created="2025-01-01T00:00:00"))  # superseded rerun of seed 0
    rows += leaderboard_rows(_result("b0", 0, 50.0, method="other"))
    summary = summarize(pd.DataFrame(rows))
    row = summary[(summary.method == "m") & (summary.metric == "overall_acc")].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(72.0) and row["std"] == pytest.approx(2.0)
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3))
    md = to_markdown(summary)
    assert "| m | points | quick |  | d1 |" in md and "72.00 ± 4.97 (3)" in md and "50.00 (1)" in md


def test_settings_label_sorts_and_drops_speed_only_keys():
    label = settings_label({"svm.kernel": "rbf", "train.num_workers": "4", "method.beta": "2", "data.workers": "2"})
    assert label == "method.beta=2 svm.kernel=rbf"
    assert settings_label({}) == "" and settings_label(None) == ""


def test_runs_with_different_settings_are_never_averaged_together():
    rows = []
    for seed in range(2):
        rows += leaderboard_rows(_result(f"lin{seed}", seed, 70.0 + seed))
        rows += leaderboard_rows(_result(f"rbf{seed}", seed, 90.0 + seed, settings="svm.kernel=rbf"))
    summary = summarize(pd.DataFrame(rows))
    acc = summary[summary.metric == "overall_acc"].set_index("settings")
    assert acc.loc["", "mean"] == pytest.approx(70.5) and acc.loc["svm.kernel=rbf", "mean"] == pytest.approx(90.5)
    assert (acc["n"] == 2).all()
    assert "`svm.kernel=rbf`" in to_markdown(summary)


def test_write_leaderboard_files(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_result("x", 0, 60.0))
    summary, md = write_leaderboard(tmp_path)
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "leaderboard.md").exists()
    assert "synth-svm" in md and len(summary) == 2


def test_plots_and_reported_comparison(tmp_path):
    import matplotlib.image as mpimg

    store = ResultStore(tmp_path)
    for seed, value in enumerate([60.0, 64.0, 62.0]):
        store.save({**_result(f"p{seed}", seed, value), "task": "modelnet40-svm"})
    run_dir = tmp_path / "runs" / "p2"
    rng = np.random.default_rng(0)
    np.savez(run_dir / "artifacts.npz", test_embeddings=rng.normal(size=(40, 8)).astype(np.float32),
             test_labels=np.repeat(np.arange(4), 10), class_names=np.array(["a", "b", "c", "d"]))
    pd.DataFrame([{"paper": "x", "table": "Table 9", "method": "m", "dataset": "modelnet40", "task": "modelnet40-svm",
                   "protocol": "svm", "modality": "points", "setting": "", "metric": "overall_acc", "value": 65.5,
                   "notes": ""}]).to_csv(tmp_path / "reported.csv", index=False)
    summary, md = write_leaderboard(tmp_path, plot=True)
    assert "| modelnet40-svm | m | points |  | overall_acc | 62.00" in md and "| 65.50 | -3.50 | x Table 9 |" in md
    bars = mpimg.imread(tmp_path / "plots" / "modelnet40-svm.png")
    tsne = mpimg.imread(tmp_path / "plots" / "tsne-modelnet40-svm-m-points.png")
    assert bars.shape[0] > 200 and bars.shape[1] > 300 and tsne.shape[0] > 200
    assert (tmp_path / "comparison.csv").read_text().count("\n") == 2


def test_tsne_shows_the_plain_run_and_is_redrawn_only_when_that_run_changes(tmp_path, monkeypatch):
    from ssl3d.bench.report import plots

    store = ResultStore(tmp_path)
    rng = np.random.default_rng(0)
    for run_id, created, settings in [("trained", "2026-01-01T00:00:00", ""),
                                      ("untrained", "2026-01-02T00:00:00", "train.epochs=0")]:  # newer, not plain
        store.save(_result(run_id, 0, 60.0, created=created, settings=settings))
        np.savez(tmp_path / "runs" / run_id / "artifacts.npz", test_embeddings=rng.normal(size=(40, 8)).astype(np.float32),
                 test_labels=np.repeat(np.arange(4), 10))
    target = tmp_path / "plots" / "tsne-synth-svm-m-points.png"
    write_leaderboard(tmp_path, plot=True)
    assert plots.plotted_run(target) == "trained"

    def no_tsne(*args, **kwargs):
        raise AssertionError("redrawn although its run did not change")

    monkeypatch.setattr(plots, "tsne_plot", no_tsne)
    write_leaderboard(tmp_path, plot=True)  # the same run: kept
    store.save(_result("retrained", 0, 61.0, created="2026-01-03T00:00:00"))
    np.savez(tmp_path / "runs" / "retrained" / "artifacts.npz", test_embeddings=rng.normal(size=(40, 8)).astype(np.float32),
             test_labels=np.repeat(np.arange(4), 10))
    with pytest.raises(AssertionError, match="redrawn"):
        write_leaderboard(tmp_path, plot=True)


def test_an_older_leaderboard_is_migrated_to_the_current_columns(tmp_path):
    old_columns = [c for c in LEADERBOARD_COLUMNS if c != "data_key"]
    (tmp_path / "leaderboard.csv").write_text(",".join(old_columns) + "\n" +
                                              ",".join("1" if c in ("value", "seed") else "x" for c in old_columns)
                                              + "\n")
    store = ResultStore(tmp_path)
    store.save(_result("new", 0, 70.0))
    frame = store.read_leaderboard()
    assert list(frame.columns) == list(LEADERBOARD_COLUMNS) and len(frame) == 3
    assert frame["data_key"].isna().sum() == 1  # the old row has no data key
