"""Mistakes of the environment, not of the command: a results folder or data root that is a file, a
leaderboard.csv that is a folder, a full disk, a read-only results folder, inf/nan in leaderboard.csv,
and a run into a committed reference folder.

Each is one line ``bench CMD: error: ...`` (exit 2) naming the path, raised before anything is written,
never a traceback, never a half-written file. Tests run as root here, where permission bits do not bite:
unwritable and full disks are simulated by making the writes raise ``OSError(EACCES / ENOSPC)``; the one
test with real permissions is skipped as root.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

import ssl3d.bench.report.leaderboard as leaderboard_mod
import ssl3d.bench.run.results as results_mod
import ssl3d.bench.run.runner as runner
import ssl3d.bench.run.tracking as tracking
import ssl3d.core.io as io_mod
from ssl3d.bench.cli import main
from ssl3d.bench.run.results import LEADERBOARD_COLUMNS, ResultStore

from conftest import REPO_ROOT, tiny_set_args

NO_SPACE = os.strerror(errno.ENOSPC)  # 'No space left on device'
DENIED = os.strerror(errno.EACCES)  # 'Permission denied'


def _run_args(data: Path | None, results: Path | None, *extra: str) -> list[str]:
    args = ["run", "--method", "random-pointnet", "--task", "synth-svm", "--no-progress", *tiny_set_args(), *extra]
    args += ["--data-root", str(data)] if data is not None else []
    return args + (["--results-dir", str(results)] if results is not None else [])


def _one_error_line(capsys, command: str = "run") -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench {command}: error: "), err
    return lines[0]


def _result(run_id: str, seed: int, value: float) -> dict:
    return {"run_id": run_id, "created_at": f"2026-01-01T00:00:0{seed}+00:00", "task": "synth-svm",
            "method": "random-pointnet", "modality": "points", "preset": "quick", "seed": seed,
            "pretrain_data": "synth", "dataset_version": "1", "data_key": "abc", "settings": "", "git_commit": "x",
            "metrics": {"top1_acc": value}}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- 1. a results folder or data root that is a file --------------------------------------------------------
def test_results_dir_that_is_a_file_is_one_line_before_anything_is_written(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(_run_args(tmp_path / "data", afile)) == 2
    line = _one_error_line(capsys)
    assert f"--results-dir {afile} is a file, not a folder" in line
    assert not (tmp_path / "data").exists() and afile.read_text() == "not a folder"


def test_results_dir_below_a_file_names_the_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(_run_args(tmp_path / "data", afile / "sub")) == 2
    assert f"--results-dir {afile / 'sub'}: {afile} is a file, not a folder" in _one_error_line(capsys)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_data_root_that_is_a_file_is_one_line_before_the_run_folder_exists(tmp_path, capsys, monkeypatch, how):
    afile = tmp_path / "data-file"
    afile.write_text("")
    if how == "env":
        monkeypatch.setenv("SSL3D_DATA", str(afile))
    assert main(_run_args(afile if how == "flag" else None, tmp_path / "results")) == 2
    name = "--data-root" if how == "flag" else "$SSL3D_DATA"
    assert f"{name} {afile} is a file, not a folder" in _one_error_line(capsys)
    assert not (tmp_path / "results").exists()  # no runs/<id>/run.log


def test_unwritable_results_dir_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    real_access = os.access
    monkeypatch.setattr(io_mod.os, "access", lambda path, mode: False if Path(path) == results
                        else real_access(path, mode))
    assert main(_run_args(tmp_path / "data", results)) == 2
    assert f"--results-dir {results} is not writable" in _one_error_line(capsys)
    assert _files(results) == [] and not (tmp_path / "data").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_dir_with_real_permissions(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        assert main(_run_args(tmp_path / "data", results)) == 2
        assert f"--results-dir {results} is not writable" in _one_error_line(capsys)
        assert main(["leaderboard", "--results-dir", str(results)]) == 0  # 4.: the table, a warning
    finally:
        results.chmod(0o755)


# -- 2. leaderboard.csv that is a folder --------------------------------------------------------------------
@pytest.mark.parametrize("with_runs", [False, True])
def test_leaderboard_csv_that_is_a_folder_is_one_line(tmp_path, capsys, with_runs):
    results = tmp_path / "results"
    (results / "leaderboard.csv").mkdir(parents=True)
    if with_runs:  # `bench leaderboard` first adds the rows of result files that sweep jobs wrote
        (results / "runs").mkdir()
    assert main(["leaderboard", "--results-dir", str(results)]) == 2
    assert f"{results / 'leaderboard.csv'} is a folder, not a file" in _one_error_line(capsys, "leaderboard")


def test_run_into_a_folder_whose_leaderboard_csv_is_a_folder_is_refused_before_it_runs(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "leaderboard.csv").mkdir(parents=True)
    assert main(_run_args(tmp_path / "data", results)) == 2
    assert f"{results / 'leaderboard.csv'} is a folder, not a file" in _one_error_line(capsys)
    assert not (results / "runs").exists() and not (tmp_path / "data").exists()


# -- 3. a full disk -----------------------------------------------------------------------------------------
class _FullDiskStream:
    """What a log file's stream does on a full disk: every write fails."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, NO_SPACE)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_full_disk_when_the_result_is_written_says_it_was_not_saved(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"

    def half_written_then_full(path, payload):
        with io_mod.atomic_path(path) as tmp:
            tmp.write_text('{"run_id": "half')
            raise OSError(errno.ENOSPC, NO_SPACE)

    def full_log(path):
        handler = real_attach(path)
        handler.stream = _FullDiskStream()
        return handler

    def full_close(self):
        self.file.close()
        raise OSError(errno.ENOSPC, NO_SPACE)

    real_attach = runner._attach_log_file
    monkeypatch.setattr(results_mod, "atomic_write_json", half_written_then_full)
    monkeypatch.setattr(runner, "_attach_log_file", full_log)
    monkeypatch.setattr(tracking.CsvTracker, "close", full_close)
    assert main(_run_args(tmp_path / "data", results)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    lines = err.strip().splitlines()
    run_dir = next((results / "runs").iterdir())
    assert len(lines) <= 2, err  # at most: the run log's one warning, then the error
    if len(lines) == 2:
        assert lines[0].startswith("warning: could not write ") and "run.log" in lines[0] and NO_SPACE in lines[0]
    error = lines[-1]
    assert error.startswith("bench run: error: the result was NOT saved: ")
    assert f"{run_dir / 'result.json'} ({NO_SPACE})" in error
    assert "its metrics were overall_acc=" in error and "run the same command again" in error
    assert "run log:" not in error and len(lines) == 2  # the log could not be written: said once, not pointed at
    assert not (run_dir / "result.json").exists()
    assert not [name for name in _files(run_dir) if name.startswith(".") or name.endswith(".tmp")]
    assert not (results / "leaderboard.csv").exists()


def test_run_folder_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def no_space(self):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(logging.FileHandler, "_open", no_space)
    assert main(_run_args(tmp_path / "data", tmp_path / "results")) == 2
    line = _one_error_line(capsys)
    assert "could not write " in line and f"run.log ({NO_SPACE})" in line


def test_saved_result_whose_leaderboard_row_cannot_be_written_stays_saved(tmp_path, monkeypatch, caplog):
    def full(self, rows):
        raise OSError(errno.ENOSPC, NO_SPACE)

    store = ResultStore(tmp_path / "results")
    monkeypatch.setattr(ResultStore, "append_rows", full)
    with caplog.at_level(logging.WARNING):
        path = store.save(_result("r1", 0, 50.0))
    assert path.is_file() and "leaderboard.csv" in caplog.text and NO_SPACE in caplog.text
    monkeypatch.undo()
    store.sync_leaderboard(only_if_missing=True)  # what `bench leaderboard` does first: the row is added
    assert "r1" in (tmp_path / "results" / "leaderboard.csv").read_text()


def test_atomic_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "file.txt"
    io_mod.atomic_write_text(target, "old")

    def fails(*args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)

    for name in ("fsync", "chmod"):  # the data cannot be flushed; the mode cannot be set (some mounts)
        with monkeypatch.context() as patch:
            patch.setattr(io_mod.os, name, fails)
            with pytest.raises(OSError):
                io_mod.atomic_write_text(target, "new")
        assert _files(target.parent) == ["file.txt"] and target.read_text() == "old", name


# -- 4. a read-only results folder: `bench leaderboard` still prints the table ------------------------------
def test_leaderboard_of_a_read_only_folder_prints_the_table_and_one_warning(tmp_path, capsys, monkeypatch, caplog):
    results = tmp_path / "results"
    store = ResultStore(results)
    for seed in (0, 1):
        store.save(_result(f"r{seed}", seed, 50.0 + seed))
    before = {name: (results / name).read_bytes() for name in _files(results) if (results / name).is_file()}

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, DENIED)

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", read_only)  # every atomic write starts with one
    monkeypatch.setattr(ResultStore, "_lock", read_only)  # so does every lock file
    with caplog.at_level(logging.WARNING):
        assert main(["leaderboard", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "### synth-svm" in out and "| random-pointnet (control) |" in out and "50.50" in out
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(results / "summary.csv") in warnings[0] and DENIED in warnings[0], warnings
    assert {name: (results / name).read_bytes() for name in _files(results) if (results / name).is_file()} == before


# -- 5. inf and nan in leaderboard.csv ----------------------------------------------------------------------
def test_inf_and_nan_values_are_skipped_like_other_malformed_lines(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = []
    for i, value in enumerate(["50.0", "inf", "nan", "-Infinity", "NaN", "52.0"]):
        cells = {"run_id": f"r{i}", "created_at": f"2026-01-01T00:00:0{i}", "task": "synth-svm",
                 "method": "random-pointnet", "modality": "points", "preset": "quick", "seed": str(i),
                 "metric": "top1_acc", "value": value}
        rows.append(",".join(cells.get(c, "") for c in LEADERBOARD_COLUMNS))
    (results / "leaderboard.csv").write_text(",".join(LEADERBOARD_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    frame, skipped = ResultStore(results).read_leaderboard_checked()
    assert sorted(frame["value"]) == [50.0, 52.0]
    assert [s.line for s in skipped] == [3, 4, 5, 6] and "not a finite number" in skipped[0].reason
    summary, markdown = leaderboard_mod.write_leaderboard(results)
    assert "skipped 4 malformed lines" in markdown and summary["mean"].tolist() == [51.0]


# -- 6. a run into a committed reference folder -------------------------------------------------------------
@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A checkout's results/ with one committed reference, synth-quick (never the real one: nothing may land there)."""
    results = tmp_path / "checkout" / "results"
    reference = results / "synth-quick"
    ResultStore(reference).save(_result("r0", 0, 50.0))
    monkeypatch.setattr(results_mod, "CHECKOUT_RESULTS", results)
    monkeypatch.delenv("SSL3D_WRITE_REFERENCE", raising=False)
    return results


def test_the_checkout_results_folder_is_the_repository_one():
    assert results_mod.CHECKOUT_RESULTS == REPO_ROOT / "results"
    assert leaderboard_mod.CHECKOUT_RESULTS is results_mod.CHECKOUT_RESULTS  # one owner


@pytest.mark.parametrize("where", ["synth-quick", "synth-quick/sub", "relative"])
def test_run_into_a_committed_reference_is_refused(tmp_path, capsys, monkeypatch, checkout, where):
    reference = checkout / "synth-quick"
    before = _files(reference)
    target = str(checkout / where)
    if where == "relative":
        monkeypatch.chdir(checkout.parent)
        target = "results/synth-quick"
    assert main(_run_args(tmp_path / "data", Path(target))) == 2
    line = _one_error_line(capsys)
    inside = "in " if where.endswith("/sub") else ""
    assert f"--results-dir {target} is {inside}the committed reference {reference}: " in line
    assert "SSL3D_WRITE_REFERENCE=1" in line
    assert _files(reference) == before and not (tmp_path / "data").exists()


def test_ssl3d_results_pointing_at_a_committed_reference_is_refused(tmp_path, capsys, monkeypatch, checkout):
    monkeypatch.setenv("SSL3D_RESULTS", str(checkout / "synth-quick"))
    assert main(_run_args(tmp_path / "data", None)) == 2
    assert "$SSL3D_RESULTS" in _one_error_line(capsys)


def test_maintainers_write_a_reference_on_purpose_and_local_is_never_one(tmp_path, monkeypatch, checkout):
    runner.check_run_folders(str(checkout / "local"), str(tmp_path / "data"))  # results/local: the user's own folder
    monkeypatch.setenv("SSL3D_WRITE_REFERENCE", "1")
    runner.check_run_folders(str(checkout / "synth-quick"), str(tmp_path / "data"))


def test_leaderboard_regenerates_a_reference_without_the_variable(capsys, checkout):
    assert main(["leaderboard", "--results-dir", str(checkout / "synth-quick")]) == 0
    assert (checkout / "synth-quick" / "summary.csv").is_file() and "### synth-svm" in capsys.readouterr().out


def test_maintainer_script_and_docs_set_the_variable():
    script = (REPO_ROOT / "scripts" / "modelnet10_cpu_suite.sh").read_text()
    assert "export SSL3D_WRITE_REFERENCE=1" in script
    for doc in ("leaderboard.md", "leaderboard-modelnet10.md"):
        assert "SSL3D_WRITE_REFERENCE=1" in (REPO_ROOT / "docs" / doc).read_text(), doc


def test_a_suite_into_a_file_fails_once_before_planning_any_run(tmp_path, capsys):
    from ssl3d.bench.cli import main

    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["suite", "--methods", "random-pointnet", "--tasks", "synth-svm", "--results-dir", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err


def test_a_results_path_that_is_not_utf8_is_escaped_in_run_log(tmp_path, capsys, monkeypatch):
    """A folder name with a byte that is not UTF-8 (os.fsdecode's surrogate) used to cost run.log its line."""
    import logging
    import os

    from ssl3d.bench.cli import main

    # the records stay out of pytest's own log capture: a pytest-xdist worker cannot send its report home
    # with the surrogate in it ("strings must be utf-8 encodable"); run.log and stderr are what is checked
    monkeypatch.setattr(logging.getLogger("ssl3d"), "propagate", False)

    from conftest import tiny_set_args

    results = Path(os.fsdecode(os.fsencode(tmp_path) + b"/res\xff"))
    assert main(["run", "--method", "random-pointnet", "--task", "synth-svm", "--results-dir", str(results),
                 "--no-progress", *tiny_set_args()]) == 0
    assert "Logging error" not in capsys.readouterr().err
    (log,) = results.glob("runs/*/run.log")
    assert "result written to" in log.read_text(encoding="utf-8") and "\\udcff" in log.read_text(encoding="utf-8")
