"""The pretraining lock: one job trains a cache key, a second waits and reuses it; stale locks are broken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ssl3d.bench.run.pretrain_lock import KeyLock
from ssl3d.bench.run.pretrain_cache import pretrain_key
from ssl3d.bench.run.runner import RunSpec, validate_run
from ssl3d.datasets import default_root

from conftest import BENCH, TINY_SYNTH, subprocess_env, tiny_set_args

FAST = {"train.epochs": "2", "method.pretrain_points": "128"}


def _holder(path: Path, host: str, pid: int, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "t0", "since": time.time() - age_s}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def test_a_lock_of_a_dead_local_process_is_broken(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _holder(tmp_path / "k.lock", socket.gethostname(), dead.pid)
    with KeyLock(tmp_path / "k.lock", poll_s=0.01) as lock:
        assert json.loads((tmp_path / "k.lock").read_text())["token"] == lock.token
    assert not (tmp_path / "k.lock").exists() and not list(tmp_path.glob("*.stale-*"))


def test_a_fresh_lock_of_another_host_is_waited_for_and_an_untouched_one_broken(tmp_path):
    path = tmp_path / "k.lock"
    _holder(path, "other-node", 1)
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (KeyLock(path, poll_s=0.02, stale_after_s=60).acquire(), got.set()))
    waiter.start()
    time.sleep(0.3)
    assert not got.is_set()  # a live holder elsewhere (its heartbeat keeps the file fresh): wait
    path.unlink()  # the holder releases
    waiter.join(5)
    assert got.is_set()
    _holder(path, "other-node", 1, age_s=120)  # no heartbeat for 2 minutes: that node is gone
    lock = KeyLock(path, poll_s=0.02, stale_after_s=60)
    lock.acquire()
    assert json.loads(path.read_text())["host"] == socket.gethostname()
    lock.release()


def test_the_holder_heartbeat_keeps_its_lock_fresh(tmp_path):
    path = tmp_path / "k.lock"
    with KeyLock(path, heartbeat_s=0.05):
        os.utime(path, (time.time() - 100, time.time() - 100))
        time.sleep(0.3)
        assert time.time() - path.stat().st_mtime < 5


@pytest.mark.slow
def test_two_processes_pretrain_one_key_once(tmp_path):
    """Both wait on a held lock; once it is free one trains and the other waits for it, then reuses final.pt."""
    overrides = {**TINY_SYNTH, **FAST}
    plan = validate_run(RunSpec(method="parae-pointnet", task="synth-svm", overrides=overrides, progress=False))
    settings = {g: plan.pre_data.settings(g) for g in plan.pre_data.groups()}
    key = pretrain_key(plan.method, plan.pre_data.name, settings, 0)
    folder = default_root() / "pretrain" / "parae-pointnet" / key
    results = tmp_path / "res"
    extra = [arg for k, v in FAST.items() for arg in ("--set", f"{k}={v}")]
    lock = KeyLock(folder / "pretrain.lock")
    lock.acquire()  # the test holds the key: both jobs must wait
    procs = [subprocess.Popen([*BENCH, "run", "--method", "parae-pointnet", "--task", task, *tiny_set_args(), *extra,
                               "--results-dir", str(results), "--no-progress"], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for task in ("synth-svm", "synth-retrieval")]
    try:
        deadline = time.time() + 180  # two interpreters importing torch on a busy machine
        while time.time() < deadline:
            logs = [p.read_text() for p in results.glob("runs/*/run.log")]
            if len(logs) == 2 and all("waiting for the pretraining parae-pointnet/" in t for t in logs):
                break
            assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
            time.sleep(0.2)
        else:
            pytest.fail("the two runs never waited on the lock")
        assert not (folder / "final.pt").exists()
    finally:
        lock.release()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = [json.loads(p.read_text()) for p in results.glob("runs/*/result.json")]
    assert sorted(r["pretraining"]["cached"] for r in runs) == [False, True]
    assert {r["pretraining"]["key"] for r in runs} == {key}
    # the run that found the weights cached reports the pretraining's own epoch times, read from final.pt
    assert runs[0]["pretraining"]["epoch_seconds"] == runs[1]["pretraining"]["epoch_seconds"] != []
    assert not (folder / "pretrain.lock").exists()
