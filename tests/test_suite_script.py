"""The real-ModelNet10 suite script's plan (benchmarks/modelnet10_cpu_suite.sh), with `bench` stubbed out.

Sourcing the script only defines its functions; the stubs record what each family step would run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "modelnet10_cpu_suite.sh"

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


def test_a_failing_step_is_timed_with_its_exit_code(tmp_path):
    _run(tmp_path, 'bench() { echo "bench $*" >> "$OUT/calls"; [[ $1 != suite ]]; }\n'
                   "family parae-dgcnn points points=random-dgcnn || true")
    timings = (tmp_path / "timings.csv").read_text().splitlines()
    assert timings[0].endswith(",0") and timings[1].startswith("suite parae-dgcnn") and timings[1].endswith(",1")
