"""DDP pretraining launched by torchrun: 2 CPU processes (gloo) on a tiny synth, then resume with 1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import BENCH, subprocess_env, tiny_set_args
from test_plugin import plugin_path  # noqa: F401  (fixture: the example method installed as a plugin)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "ssl3d.bench.cli"]


def _args(epochs: int) -> list[str]:
    return ["run", "--method", "rotnet", "--task", "synth-svm", "--no-progress", "--set", f"train.epochs={epochs}",
            "--set", "train.batch_size=8", "--set", "method.global_dim=32", *tiny_set_args()]


@pytest.mark.slow
def test_two_ranks_disjoint_shards_identical_logs_one_result(plugin_path, tmp_path):  # noqa: F811
    env = {**subprocess_env([plugin_path]), "SSL3D_DATA": str(tmp_path / "data"),
           "SSL3D_TRACE_DIR": str(tmp_path / "trace")}
    out = subprocess.run(TORCHRUN + _args(2) + ["--set", "train.snapshot_epochs=1", "--results-dir",
                                                str(tmp_path / "res")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = json.loads((tmp_path / "trace" / "rank0-epoch0.json").read_text())
    r1 = json.loads((tmp_path / "trace" / "rank1-epoch0.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["indices"] and r1["indices"] and not set(r0["indices"]) & set(r1["indices"])  # disjoint shards
    assert r0["record"]["loss"] == r1["record"]["loss"]  # reduced across ranks: identical on both
    for epoch in (0, 1):
        a = json.loads((tmp_path / "trace" / f"rank0-epoch{epoch}.json").read_text())
        b = json.loads((tmp_path / "trace" / f"rank1-epoch{epoch}.json").read_text())
        drop = {"seconds"}  # wall time is per process
        assert {k: v for k, v in a["record"].items() if k not in drop} == \
            {k: v for k, v in b["record"].items() if k not in drop}
    (ckpt_dir,) = (tmp_path / "data" / "pretrain" / "rotnet").iterdir()
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["epoch-1.pt", "final.pt", "last.pt", "trajectory.json"]
    results = list((tmp_path / "res" / "runs").glob("*/result.json"))
    assert len(results) == 1
    assert json.loads(results[0].read_text())["pretraining"]["world_size"] == 2
    assert len((tmp_path / "res" / "leaderboard.csv").read_text().strip().splitlines()) == 1 + 2  # 2 metrics, 1 run
    # a 1-epoch run on two ranks is served from the epoch-1 snapshot: rank 0 decides, both ranks load it
    out = subprocess.run(TORCHRUN + _args(1) + ["--results-dir", str(tmp_path / "served")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (served,) = (tmp_path / "served" / "runs").glob("*/result.json")
    assert json.loads(served.read_text())["pretraining"]["from_snapshot"] == str(ckpt_dir / "epoch-1.pt")


@pytest.mark.slow
def test_resume_a_two_rank_pretraining_with_one_process(plugin_path, tmp_path):  # noqa: F811
    env = {**subprocess_env([plugin_path]), "SSL3D_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen(TORCHRUN + _args(40) + ["--results-dir", str(tmp_path / "res")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    found = []
    while time.time() < deadline and proc.poll() is None and not found:
        root = tmp_path / "data" / "pretrain" / "rotnet"
        found = list(root.glob("*/last.pt")) if root.exists() else []
        time.sleep(0.05)
    assert found and proc.poll() is None, "the distributed pretraining ended before it could be interrupted"
    # the launcher and both ranks (torchrun may put workers in their own process groups)
    victims = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for p in victims:
        p.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(victims, timeout=30)
    assert not list((tmp_path / "data" / "pretrain" / "rotnet").glob("*/final.pt"))
    single = subprocess.run(BENCH + _args(40) + ["--results-dir", str(tmp_path / "res")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "resumed from" in single.stderr
    (result,) = (tmp_path / "res" / "runs").glob("*/result.json")
    saved = json.loads(result.read_text())
    assert saved["pretraining"]["world_size"] == 1 and saved["pretraining"]["epochs"] == 40
