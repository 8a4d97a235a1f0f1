"""The `bench` command line as a user calls it (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import BENCH, subprocess_env, tiny_set_args


def _bench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + list(args), env=subprocess_env(), capture_output=True, text=True, timeout=600, **kw)


def test_version_and_help():
    out = _bench("--version")
    assert out.returncode == 0 and out.stdout.startswith("ssl3d-bench ")
    assert _bench().returncode == 2


def test_the_command_line_answers_help_without_loading_torch():
    # `bench --help` and `--version` must not pay for torch, torchvision and every method (seconds per call)
    probe = "import sys, ssl3d.bench.cli; print(sorted(m for m in ('torch', 'torchvision', 'ssl3d.methods') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_list_json_has_the_registries():
    out = _bench("list", "--json")
    info = json.loads(out.stdout)
    assert "random-pointnet" in info["methods"] and "synth-svm" in info["tasks"] and "synth" in info["datasets"]
    assert "svm" in info["protocols"]
    assert "method.global_dim" in info["methods"]["random-pointnet"]["config_keys"]
    assert "random-pointnet" in _bench("list").stdout


def test_list_shows_per_task_which_methods_run_it_and_why_not():
    out = _bench("list").stdout
    seg = out[out.index("  synth-seg "):out.index("  synth-svm ")]
    assert "runs cm, cmcv, parae-dgcnn" in seg
    assert "switchvae" in seg and "gives per-point features for nothing; synth-seg needs one of points" in seg
    info = json.loads(_bench("list", "--json").stdout)["tasks"]["synth-recon"]
    assert info["supported"]["switchvae"] == ["voxels", "views"]
    assert info["unsupported"]["random-pointnet"] == "reconstructs voxels from nothing; synth-recon needs one of voxels, views"


def test_a_reader_that_stops_early_ends_the_command_quietly():
    # `bench list | head`: the pipe closes before bench writes; no traceback, the exit status of SIGPIPE
    for args in (["list"], ["list", "--json"]):
        proc = subprocess.Popen(BENCH + args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=600) in (0, 141) and stderr == "", stderr


def test_errors_are_one_clear_line():
    out = _bench("run", "--method", "nope", "--task", "synth-svm")
    assert out.returncode == 2
    assert "unknown method 'nope'" in out.stderr and "random-pointnet" in out.stderr and "Traceback" not in out.stderr
    out = _bench("run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "svm.C=3")
    assert out.returncode == 2 and "svm.c_grid" in out.stderr and "Traceback" not in out.stderr


def test_two_concurrent_runs_lose_no_row_and_leaderboard_shows_them(tmp_path):
    res = str(tmp_path / "res")
    procs = [subprocess.Popen(BENCH + ["run", "--method", "random-pointnet", "--task", "synth-svm", "--seed", str(s),
                                       "--no-progress", "--results-dir", res, *tiny_set_args()],
                              env={**subprocess_env(), "SSL3D_DATA": str(tmp_path / f"data{s}")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    rows = (tmp_path / "res" / "leaderboard.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + 2 metrics x 2 runs
    board = _bench("leaderboard", "--results-dir", res)
    assert board.returncode == 0 and "random-pointnet" in board.stdout and "(2)" in board.stdout
    assert (tmp_path / "res" / "summary.csv").exists() and (tmp_path / "res" / "leaderboard.md").exists()
