"""The real-ModelNet10 suite script's plan (scripts/modelnet10_cpu_suite.sh), with `bench` stubbed out.

Sourcing the script only defines its functions; the stubs record what each family step would run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "modelnet10_cpu_suite.sh"

STUBS = """
bench() { echo "bench $*" >> "$OUT/calls"; }
epochs_of() { case $1 in cmcv) echo 4 ;; parae-dgcnn) echo 1 ;; *) echo "no preset for $1" >&2; return 1 ;; esac; }
twin_of() { [[ $1 == cm ]] && echo cmcv || true; }
commit() { echo "commit $1" >> "$OUT/calls"; }
"""


def _bash(script: str) -> str:
    """Stdout of ``bash -c script``; skips where bash is missing."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True, timeout=60).stdout


def _run(tmp_path: Path, commands: str) -> list[str]:
    _bash(f'source "{SCRIPT}"\nOUT="{tmp_path}"\nset -euo pipefail\n{STUBS}\n{commands}\n')
    return (tmp_path / "calls").read_text().splitlines()


def test_sourcing_runs_nothing(tmp_path):
    out = _bash(f'cd "{tmp_path}" && source "{SCRIPT}" && type family > /dev/null && ls -A')
    assert out == ""  # no results folder, no timings.csv, no bench call


def test_snapshots_double_up_to_the_knee():
    out = _bash(f'source "{SCRIPT}"; snapshots_up_to 16; snapshots_up_to 1; snapshots_up_to 3').splitlines()
    assert out == ["1 2 4 8 16", "1", "1 2 3"]


def test_a_family_curves_every_modality_with_the_baseline_only_where_it_embeds(tmp_path):
    calls = _run(tmp_path, "family cmcv views,points points=random-dgcnn cm\n"
                           "family parae-dgcnn points points=random-dgcnn")
    common = "--task modelnet10-svm"
    assert calls == [
        f"bench curve --preset cpu --method cmcv {common} --modality views --epochs 1 2 4 --seeds 0 1 2 "
        f"--results-dir {tmp_path} --no-progress",
        f"bench curve --preset cpu --method cmcv {common} --modality points --epochs 1 2 4 --seeds 0 1 2 "
        f"--baseline random-dgcnn --results-dir {tmp_path} --no-progress",
        f"bench suite --preset cpu --methods cmcv --tasks modelnet10-[sri]* --seeds 0 1 2 --results-dir {tmp_path} "
        "--no-progress",
        f"bench suite --preset cpu --methods cmcv --tasks modelnet10-[sri]* --seeds 0 1 2 --results-dir {tmp_path} "
        "--no-progress --set train.epochs=0",
        "commit cmcv",
        # cm's untrained network is bitwise cmcv's: not evaluated again
        f"bench suite --preset cpu --methods cm --tasks modelnet10-[sri]* --seeds 0 1 2 --results-dir {tmp_path} "
        "--no-progress",
        "commit cm",
        f"bench curve --preset cpu --method parae-dgcnn {common} --modality points --epochs 1 --seeds 0 1 2 "
        f"--baseline random-dgcnn --results-dir {tmp_path} --no-progress",
        f"bench suite --preset cpu --methods parae-dgcnn --tasks modelnet10-[sri]* --seeds 0 1 2 "
        f"--results-dir {tmp_path} --no-progress",
        f"bench suite --preset cpu --methods parae-dgcnn --tasks modelnet10-[sri]* --seeds 0 1 2 "
        f"--results-dir {tmp_path} --no-progress --set train.epochs=0",
        "commit parae-dgcnn",
    ]
    timings = (tmp_path / "timings.csv").read_text().splitlines()
    assert len(timings) == 8 and all(line.endswith(",0") for line in timings)
    assert timings[1].startswith("curve cmcv points,")


def test_a_knee_curve_is_three_seeds_to_its_largest_budget_and_its_page_files_are_copied(tmp_path):
    # three seeds: choose_knee's paired test refuses fewer, and the family step is served all three pretrainings
    knee_out = tmp_path / "knee-page"
    knee_out.mkdir()
    stub_curve = ('bench() { echo "bench $*" >> "$OUT/calls"; mkdir -p "$OUT/knee/curves"; '
                  'for e in csv json png; do echo "$e" > "$OUT/knee/curves/parae-dgcnn-modelnet10-svm-points-val.$e"; '
                  'done; }')
    calls = _run(tmp_path, f'KNEE_OUT="{knee_out}"\n{stub_curve}\nknee parae-dgcnn points 4 random-dgcnn')
    assert calls == [
        "bench curve --preset cpu --method parae-dgcnn --task modelnet10-svm --modality points --epochs 1 2 4 "
        f"--seeds 0 1 2 --baseline random-dgcnn --results-dir {tmp_path}/knee --no-progress"]
    assert sorted(p.name for p in knee_out.iterdir()) == [f"parae-dgcnn-modelnet10-svm-points-val.{e}"
                                                          for e in ("csv", "json", "png")]
    # the PNG is moved: the leaderboard folder's HTML page shows every PNG of its image folders, knee/ is not one
    assert sorted(p.suffix for p in (tmp_path / "knee" / "curves").iterdir()) == [".csv", ".json"]
    assert (tmp_path / "timings.csv").read_text().startswith("knee parae-dgcnn points,")


def test_every_family_starts_from_its_knee_curve():
    # the preset's seed 0 is served from the knee curve's snapshot only if the knee curve ran first
    body = SCRIPT.read_text().split("main() {")[1]
    lines = [line.split()[:2] for line in body.splitlines() if line.strip().startswith(("knee ", "family "))]
    for i, (word, method) in enumerate(lines):
        if word == "family":
            assert ["knee", method] in lines[:i], f"family {method} has no knee curve before it"


def test_a_failing_step_is_timed_with_its_exit_code(tmp_path):
    _run(tmp_path, 'bench() { echo "bench $*" >> "$OUT/calls"; [[ $1 != suite ]]; }\n'
                   "family parae-dgcnn points points=random-dgcnn || true")
    timings = (tmp_path / "timings.csv").read_text().splitlines()
    assert timings[0].endswith(",0") and timings[1].startswith("suite parae-dgcnn") and timings[1].endswith(",1")
