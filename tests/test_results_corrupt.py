"""A damaged ``leaderboard.csv`` loses no row: bad headers are backed up and rebuilt, bad lines skipped by name."""

from __future__ import annotations

import json
import logging

import pytest

from ssl3d.bench.cli import main
from ssl3d.bench.report.leaderboard import write_leaderboard
from ssl3d.bench.run.results import LeaderboardFormatError, ResultStore


def _result(run_id: str, seed: int, value: float, created: str = "2026-01-01T00:00:00") -> dict:
    return {"run_id": run_id, "created_at": created, "task": "synth-svm", "method": "m", "modality": "points",
            "preset": "quick", "seed": seed, "pretrain_data": "synth", "dataset_version": "synth-1", "data_key": "d1",
            "settings": "", "git_commit": "abc", "metrics": {"overall_acc": value, "mean_class_acc": value - 1}}


def _three_runs(tmp_path) -> ResultStore:
    store = ResultStore(tmp_path)
    for seed in range(3):
        store.save(_result(f"r{seed}", seed, 70.0 + seed, created=f"2026-01-01T00:00:0{seed}"))
    return store


def _backups(tmp_path) -> list:
    return sorted(tmp_path.glob("leaderboard-backup-*.csv"))


@pytest.mark.parametrize("damage", ["no header", "bom", "semicolons"])
def test_a_foreign_header_never_erases_the_old_rows(tmp_path, caplog, damage):
    store = _three_runs(tmp_path)
    clean = store.leaderboard_path.read_text(encoding="utf-8")
    damaged = {"no header": clean.split("\n", 1)[1], "bom": "\ufeff" + clean,
               "semicolons": clean.replace(",", ";")}[damage]
    store.leaderboard_path.write_text(damaged, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        store.save(_result("new", 3, 90.0, created="2026-01-02T00:00:00"))
    frame = store.read_leaderboard()
    assert sorted(frame["run_id"].unique()) == ["new", "r0", "r1", "r2"]  # no run_id erased, none lost
    assert len(frame) == 8 and frame["value"].notna().all()
    if damage == "bom":  # a BOM is tolerated: the rows stay in place, no backup
        assert _backups(tmp_path) == []
        return
    (backup,) = _backups(tmp_path)
    assert backup.read_text(encoding="utf-8") == damaged  # the unreadable file, byte for byte
    assert str(backup) in caplog.text and str(store.leaderboard_path) in caplog.text
    summary, _ = write_leaderboard(tmp_path)  # the next `bench leaderboard` works
    assert summary[summary.metric == "overall_acc"]["n"].tolist() == [4]


def test_bench_leaderboard_rebuilds_a_headerless_file_from_the_result_files(tmp_path, capsys):
    store = _three_runs(tmp_path)
    headerless = store.leaderboard_path.read_text(encoding="utf-8").split("\n", 1)[1]
    store.leaderboard_path.write_text(headerless, encoding="utf-8")
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    assert "71.00 ± 2.48 (3)" in capsys.readouterr().out
    assert _backups(tmp_path)[0].read_text(encoding="utf-8") == headerless


def test_rebuild_is_idempotent_and_names_unreadable_result_files(tmp_path, caplog):
    store = _three_runs(tmp_path)
    before = store.leaderboard_path.read_text(encoding="utf-8")
    broken = store.run_dir("broken") / "result.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"run_id": "broken", "metrics": ', encoding="utf-8")
    no_metrics = store.run_dir("empty") / "result.json"
    no_metrics.parent.mkdir(parents=True)
    no_metrics.write_text(json.dumps({"run_id": "empty"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        report = store.rebuild_leaderboard()
    assert {p for p, _ in report.unreadable} == {broken, no_metrics}
    assert str(broken) in caplog.text and str(no_metrics) in caplog.text
    assert report.runs == 3 and report.rows == 6 and report.backup is None  # same rows as before: nothing backed up
    assert store.leaderboard_path.read_text(encoding="utf-8") == before
    assert store.rebuild_leaderboard().backup is None
    assert store.leaderboard_path.read_text(encoding="utf-8") == before and _backups(tmp_path) == []


def test_rebuild_backs_up_rows_that_have_no_result_file(tmp_path):
    store = _three_runs(tmp_path)
    with store.leaderboard_path.open("a", encoding="utf-8") as fh:  # a row from a run whose folder is gone
        fh.write("gone,2025-01-01T00:00:00,synth-svm,m,points,quick,9,overall_acc,1.0,synth,synth-1,d1,,abc\n")
    before = store.leaderboard_path.read_text(encoding="utf-8")
    report = store.rebuild_leaderboard()
    assert report.backup is not None and report.backup.read_text(encoding="utf-8") == before
    assert "gone" not in set(store.read_leaderboard()["run_id"])


def test_a_bad_line_in_a_current_file_is_kept_as_it_is_when_rows_are_appended(tmp_path):
    store = _three_runs(tmp_path)
    with store.leaderboard_path.open("a", encoding="utf-8") as fh:
        fh.write('bad,"unclosed\n')
    store.save(_result("new", 3, 90.0))
    text = store.leaderboard_path.read_text(encoding="utf-8")
    assert 'bad,"unclosed\n' in text and _backups(tmp_path) == []
    assert len(store.read_leaderboard()) == 8


BAD_LINES = {
    'x,"unclosed quote,synth-svm\n': "not valid CSV",
    "x,2026,synth-svm,m,points,quick,0,overall_acc,1.0,synth,synth-1,d1,,abc,EXTRA\n": "15 fields, expected 14",
    "x,2026,synth-svm,m\n": "4 fields, expected 14",
    "x,2026,synth-svm,m,points,quick,0,overall_acc,high,synth,synth-1,d1,,abc\n": "value 'high' is not a number",
    "x,2026,synth-svm,m,points,quick,zero,overall_acc,1.0,synth,synth-1,d1,,abc\n": "seed 'zero' is not an integer",
}


def test_bad_lines_are_skipped_with_file_and_line_and_counted(tmp_path, caplog, capsys):
    store = _three_runs(tmp_path)
    lines = store.leaderboard_path.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = list(BAD_LINES)
    # header, row, bad, row, bad, bad, row, row, row, row, bad, bad: bad lines on 3, 5, 6, 11, 12
    damaged = lines[:2] + bad[:1] + lines[2:3] + bad[1:3] + lines[3:] + bad[3:]
    store.leaderboard_path.write_text("".join(damaged), encoding="utf-8")
    frame, skipped = store.read_leaderboard_checked()
    assert len(frame) == 6 and frame["seed"].tolist() == [0, 0, 1, 1, 2, 2]
    assert [s.line for s in skipped] == [3, 5, 6, 11, 12]
    for s, why in zip(skipped, BAD_LINES.values()):
        assert why in s.reason and str(s).startswith(f"{store.leaderboard_path}:{s.line}: ")
    with caplog.at_level(logging.WARNING):
        assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "71.00 ± 2.48 (3)" in out and f"skipped 5 malformed lines of {store.leaderboard_path}" in out
    assert f"{store.leaderboard_path}:3: " in caplog.text and f"{store.leaderboard_path}:12: " in caplog.text


def test_an_unusable_header_is_a_clear_error_when_reading(tmp_path):
    (tmp_path / "leaderboard.csv").write_text("a;b;c\n1;2;3\n", encoding="utf-8")
    with pytest.raises(LeaderboardFormatError, match=r"leaderboard\.csv:1: .*run_id"):
        ResultStore(tmp_path).read_leaderboard()


def test_fields_with_line_breaks_stay_on_one_line(tmp_path):
    store = ResultStore(tmp_path)
    store.save({**_result("r0", 0, 70.0), "git_commit": "abc\ndef"})
    assert store.leaderboard_path.read_text(encoding="utf-8").count("\n") == 3
    assert store.read_leaderboard()["git_commit"].tolist() == ["abc def", "abc def"]
