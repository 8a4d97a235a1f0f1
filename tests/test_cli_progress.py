"""Progress bars only on a terminal: no carriage-return frames in pipes or log files unless asked for."""

from __future__ import annotations

import subprocess

from conftest import BENCH, subprocess_env, tiny_set_args


def _bench(*args: str) -> subprocess.CompletedProcess:
    # stdout and stderr are pipes, as when a run is logged with `bench ... 2>&1 | tee log`; bytes, because text
    # mode would translate the '\r' this test looks for into '\n'
    return subprocess.run(BENCH + list(args), env=subprocess_env(), capture_output=True, timeout=300)


def test_no_progress_frames_when_stderr_is_a_pipe(tmp_path):
    out = _bench("run", "--method", "random-pointnet", "--task", "synth-svm", "--data-root", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "results"), *tiny_set_args())
    assert out.returncode == 0, out.stderr
    assert b"\r" not in out.stderr and b"\r" not in out.stdout


def test_progress_flag_forces_bars_on_and_off(tmp_path):
    args = ["prepare", "synth", "--split", "test", *tiny_set_args()]
    forced = _bench(*args, "--data-root", str(tmp_path / "a"), "--progress")
    assert forced.returncode == 0, forced.stderr
    assert b"\r" in forced.stderr  # tqdm frames
    plain = _bench(*args, "--data-root", str(tmp_path / "b"))
    assert plain.returncode == 0 and b"\r" not in plain.stderr
