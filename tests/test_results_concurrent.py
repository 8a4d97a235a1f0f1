"""Results on shared filesystems: jobs write only their own result.json; the CSV is rebuilt from them."""

from __future__ import annotations

import multiprocessing as mp

from ssl3d.bench.run.results import ResultStore, parse_leaderboard


def _result(run_id: str, seed: int, value: float, created: str) -> dict:
    return {"run_id": run_id, "created_at": created, "task": "synth-svm", "method": "m", "modality": "points",
            "preset": "quick", "seed": seed, "pretrain_data": "synth", "dataset_version": "synth-1", "data_key": "d1",
            "settings": "", "git_commit": "abc", "metrics": {"overall_acc": value, "mean_class_acc": value - 1}}


def _job_writer(root: str, worker: int, n: int) -> None:
    store = ResultStore(root)
    for i in range(n):  # what a sweep job does: its own result.json, never the shared CSV
        store.save(_result(f"w{worker}-{i}", i, 10.0 * worker + i, f"2026-01-01T00:00:{i:02d}"), leaderboard=False)


def test_eight_concurrent_result_writers_lose_no_row_after_the_rebuild(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_result("local-0", 0, 50.0, "2025-12-31T00:00:00"))  # a single-machine run: CSV row at once
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_job_writer, args=(str(tmp_path), w, 12)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(store.read_leaderboard()) == 2  # the jobs did not touch the CSV
    report = store.sync_leaderboard()
    frame = store.read_leaderboard()
    assert report.rows == len(frame) == (8 * 12 + 1) * 2 and report.backup is None
    assert frame["run_id"].nunique() == 8 * 12 + 1
    row = frame[(frame.run_id == "w5-7") & (frame.metric == "overall_acc")]
    assert row["value"].tolist() == [57.0] and row["seed"].tolist() == [7]
    assert frame["run_id"].iloc[0] == "local-0"  # sorted by creation time
    # idempotent: a second rebuild writes the same bytes and keeps no backup
    before = store.leaderboard_path.read_bytes()
    again = store.sync_leaderboard()
    assert store.leaderboard_path.read_bytes() == before and again.backup is None


def test_rows_without_a_result_file_are_kept_and_bad_lines_backed_up(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_result("old", 0, 40.0, "2025-01-01T00:00:00"))
    (tmp_path / "runs" / "old" / "result.json").unlink()  # e.g. an old run folder deleted by hand
    with open(store.leaderboard_path, "a", encoding="utf-8") as fh:
        fh.write('broken,"line\n')
    store.save(_result("new", 1, 41.0, "2026-01-01T00:00:00"), leaderboard=False)
    report = store.sync_leaderboard()
    assert report.backup is not None and 'broken,"line' in report.backup.read_text()
    parsed = parse_leaderboard(store.leaderboard_path, store.leaderboard_path.read_text())
    assert [r["run_id"] for r in parsed.rows] == ["old", "old", "new", "new"] and not parsed.skipped


def test_bench_leaderboard_adds_the_rows_of_job_result_files(tmp_path, capsys):
    from ssl3d.bench.cli import main

    store = ResultStore(tmp_path)
    store.save(_result("a", 0, 70.0, "2026-01-01T00:00:00"))
    store.save(_result("b", 1, 72.0, "2026-01-01T00:00:01"), leaderboard=False)
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    assert set(store.read_leaderboard()["run_id"]) == {"a", "b"}
    assert "| 2 |" in (tmp_path / "leaderboard.md").read_text() or "(2)" in (tmp_path / "leaderboard.md").read_text()
