"""Committed reference leaderboards live in results/<name>/, apart from the user's own results/local/ (never written)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ssl3d.bench.cli import main
from ssl3d.bench.report.leaderboard import summarize
from ssl3d.bench.run.results import ResultStore

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = REPO_ROOT / "results" / "synth-quick"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_reference_summary_is_what_its_leaderboard_gives():
    """The committed summary.csv is exactly what `bench leaderboard` computes from the committed rows."""
    runs, skipped = ResultStore(REFERENCE).read_leaderboard_checked()
    assert skipped == [] and runs["run_id"].nunique() > 100
    assert summarize(runs).to_csv(index=False) == (REFERENCE / "summary.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("by_name", [True, False])
def test_reference_is_shown_beside_the_users_runs_and_never_written(tmp_path, monkeypatch, capsys, by_name):
    reference = tmp_path / "ref"
    shutil.copytree(REFERENCE, reference, ignore=shutil.ignore_patterns("plots"))
    if by_name:  # a name is looked up under ./results/
        (tmp_path / "results").mkdir()
        reference = reference.rename(tmp_path / "results" / "synth-quick")
    before = _snapshot(reference)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results-dir", "mine", "--reference", "synth-quick" if by_name else str(reference)]) == 0
    out = capsys.readouterr().out
    assert "_No results yet" in out  # the user's own (empty) table first
    assert f"## Reference: {'results/synth-quick' if by_name else reference}" in out
    assert "| parae-dgcnn | points | quick |" in out
    assert _snapshot(reference) == before
    assert (tmp_path / "mine" / "leaderboard.md").exists()


def test_the_checkouts_reference_is_found_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(REFERENCE)
    assert main(["leaderboard", "--results-dir", "mine", "--reference", "synth-quick"]) == 0
    assert f"## Reference: {REFERENCE}" in capsys.readouterr().out
    assert _snapshot(REFERENCE) == before


def test_an_unknown_reference_is_a_clear_error_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results-dir", "mine", "--reference", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no reference leaderboard 'nope'" in err and "synth-quick" in err  # the known names
    assert not (tmp_path / "mine").exists()


def test_user_results_are_git_ignored_and_the_reference_is_not():
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT).returncode == 0

    # `bench run` / `bench leaderboard` write ./results/local by default: a user's runs never dirty the checkout
    assert ignored("results/local/leaderboard.csv") and ignored("results/local/summary.csv") and ignored("results/local/runs/x/result.json")
    assert not ignored("results/synth-quick/leaderboard.csv") and not ignored("results/perf/cpu-2core.md")
    assert ignored("results/synth-quick/runs/x/result.json")  # a maintainer's regeneration leaves no runs behind


def test_a_damaged_reference_is_reported_not_repaired(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref"
    reference.mkdir()
    lines = (REFERENCE / "leaderboard.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (reference / "leaderboard.csv").write_text("".join(lines[1:20]), encoding="utf-8")  # header line lost
    before = _snapshot(reference)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results-dir", "mine", "--reference", str(reference)]) == 2
    assert f"{reference / 'leaderboard.csv'}:1: the header line is not a leaderboard header" in capsys.readouterr().err
    assert _snapshot(reference) == before and not (tmp_path / "mine").exists()


REFERENCES = sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/leaderboard.csv") if p.parent.name != "local")
PAGE_FILES = ("leaderboard.md", "summary.csv", "comparison.csv", "claims.csv", "pretraining_gains.csv",
              "control_gains.csv")


@pytest.mark.parametrize("name", REFERENCES)
def test_the_committed_pages_are_what_bench_leaderboard_writes_from_the_result_files(name, tmp_path):
    """The pages are a function of the result files: regenerating a copy of the folder changes no byte."""
    from ssl3d.bench.report.leaderboard import write_leaderboard

    folder = REPO_ROOT / "results" / name
    copy = shutil.copytree(folder, tmp_path / name, ignore=shutil.ignore_patterns(*PAGE_FILES, "runs"))
    write_leaderboard(copy)
    for page in PAGE_FILES:
        committed = folder / page
        made = copy / page
        assert made.exists() == committed.exists(), page
        if committed.exists():
            assert made.read_bytes() == committed.read_bytes(), f"results/{name}/{page} is stale: run bench " \
                f"leaderboard --results-dir results/{name} --html"


def test_the_readme_verdict_table_is_the_committed_leaderboards():
    from ssl3d.bench.report.verdicts import verdict_table

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- verdicts:start", 1)[1].split("\n", 1)[1].split("<!-- verdicts:end -->", 1)[0]
    assert block == verdict_table(REPO_ROOT / "results" / "modelnet10-cpu")
