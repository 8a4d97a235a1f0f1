"""`bench suite --launcher`: the job graph through submitit's local executor and a local Ray instance.

A tiny synth grid (2 methods x 2 tasks x 2 seeds, one of the methods pretrains) must give exactly the rows of
the sequential suite with identical metrics; a job SIGKILLed in the middle of its pretraining is retried, resumes
from its checkpoint and the sweep completes. Both engines are optional extras (importorskip).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ssl3d.bench.sweep.launch_config import LaunchConfig
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.sweep.suite import run_suite
from ssl3d.bench.sweep.jobs import Job, build_graph, run_job, run_sweep, status_lines
from ssl3d.bench.run.runner import RunSpec

from conftest import TINY_SYNTH

TESTS = Path(__file__).resolve().parent
OVERRIDES = {**TINY_SYNTH, "train.epochs": "3"}
GRID = dict(methods="[pr]a*-pointnet", tasks="synth-[rs][ev][tm]*", seeds=(0, 1), overrides=OVERRIDES, progress=False)


def _rows(results: Path) -> dict[tuple, float]:
    frame = ResultStore(results).read_leaderboard()
    return {(r.task, r.method, r.modality, int(r.seed), r.metric): float(r.value) for r in frame.itertuples()}


def _launch(tmp_path: Path, launcher: str, **kw) -> LaunchConfig:
    return LaunchConfig(launcher=launcher, folder=tmp_path / "sweep", gpus=0, cpus=2, mem_gb=2, parallel=2,
                        poll_s=0.2, time_min=10, **kw)


@pytest.fixture
def importable_tests(monkeypatch):
    """Job processes import this module (for the killing job function) by name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))


def killed_mid_pretraining_once(job: Job, log_path: str) -> dict:
    """A job function whose first pretraining attempt is SIGKILLed once its first epoch's checkpoint exists."""
    marker = Path(log_path).parent / f"{job.name}.killed"
    if job.kind == "pretrain" and not marker.exists():
        marker.touch()
        last = Path(job.spec.data_root) / "pretrain" / job.spec.method / job.key / "last.pt"

        def kill_after_first_epoch() -> None:
            while not last.exists():
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_after_first_epoch, daemon=True).start()
    return run_job(job, log_path)


def test_graph_has_one_pretraining_per_key_and_evaluations_depend_on_it(tmp_path):
    specs = [RunSpec(method=m, task=t, seed=s, overrides=OVERRIDES, results_dir=str(tmp_path))
             for m in ("parae-pointnet", "random-pointnet") for t in ("synth-svm", "synth-retrieval") for s in (0, 1)]
    jobs = build_graph(specs)
    pre = [j for j in jobs if j.kind == "pretrain"]
    assert len(pre) == 2 and {j.spec.seed for j in pre} == {0, 1}  # the two tasks share one key per seed
    evals = [j for j in jobs if j.kind == "eval"]
    assert len(evals) == 8 and jobs.index(pre[-1]) < jobs.index(evals[0])
    for j in evals:
        expected = next(p.name for p in pre if p.spec.seed == j.spec.seed) if j.spec.method == "parae-pointnet" else None
        assert j.depends == expected and not j.spec.leaderboard and Path(j.spec.results_dir).is_absolute()


def _check_same_as_sequential(tmp_path: Path, launcher: str) -> None:
    seq = run_suite(**GRID, results_dir=str(tmp_path / "seq"), data_root=str(tmp_path / "data-seq"))
    assert seq["todo"] == 8 and not seq["failures"]
    out = run_suite(**GRID, results_dir=str(tmp_path / "par"), data_root=str(tmp_path / "data-par"),
                    launch=_launch(tmp_path, launcher))
    assert out["todo"] == 8 and not out["failures"]
    expected, got = _rows(tmp_path / "seq"), _rows(tmp_path / "par")
    assert len(expected) == 8 * 3 and got == expected  # svm: 2 metrics, retrieval: 4; same keys, same values
    state = json.loads((tmp_path / "sweep" / "state.json").read_text())
    assert [j["state"] for j in state["jobs"]] == ["done"] * 10 and state["finished"]
    assert len(list((tmp_path / "data-par" / "pretrain" / "parae-pointnet").glob("*/final.pt"))) == 2
    assert status_lines(tmp_path / "sweep")[0].endswith("0 pending, 0 running, 10 done, 0 failed")
    again = run_suite(**GRID, results_dir=str(tmp_path / "par"), data_root=str(tmp_path / "data-par"),
                      launch=_launch(tmp_path, launcher))
    assert again["todo"] == 0  # resume: every run has its result file


def _check_killed_job_is_retried(tmp_path: Path, launcher: str) -> None:
    out = run_suite(methods="parae-pointnet", tasks="synth-svm", seeds=(0,), overrides=OVERRIDES, progress=False,
                    results_dir=str(tmp_path / "res"), data_root=str(tmp_path / "data"),
                    launch=_launch(tmp_path, launcher, retries=1), job_fn=killed_mid_pretraining_once)
    assert not out["failures"]
    state = {j["name"]: j for j in json.loads((tmp_path / "sweep" / "state.json").read_text())["jobs"]}
    pre = next(j for j in state.values() if j["kind"] == "pretrain")
    assert pre["state"] == "done" and pre["attempts"] == 2
    assert "resumed from" in Path(pre["log"]).read_text()  # the second attempt went on from epoch 1's checkpoint
    assert len(ResultStore(tmp_path / "res").read_leaderboard()) == 2


@pytest.mark.slow
def test_submitit_local_sweep_matches_the_sequential_suite(tmp_path):
    pytest.importorskip("submitit")
    _check_same_as_sequential(tmp_path, "local")


@pytest.mark.slow
def test_submitit_local_retries_a_killed_job(tmp_path, importable_tests):
    pytest.importorskip("submitit")
    _check_killed_job_is_retried(tmp_path, "local")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), old]))  # workers inherit it
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # two jobs of 2 logical CPUs
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.mark.slow
def test_ray_sweep_matches_the_sequential_suite(tmp_path, local_ray):
    _check_same_as_sequential(tmp_path, "ray")


@pytest.mark.slow
def test_ray_retries_a_killed_job(tmp_path, local_ray):
    _check_killed_job_is_retried(tmp_path, "ray")


class _InlineBackend:
    """Runs each submitted call at once in this process (the driver's logic without an engine)."""

    def __init__(self):
        self.calls = []

    def submit(self, fn, *args):
        self.calls.append(args[0].name)
        try:
            return ("done", fn(*args))
        except Exception as exc:
            return ("failed", f"{type(exc).__name__}: {exc}")

    def poll(self, handle):
        return handle

    def job_id(self, handle):
        return str(len(self.calls))

    def engine_log(self, handle):
        return None

    def close(self):
        pass


def test_failures_are_retried_a_bounded_number_of_times_and_named_with_their_log(tmp_path, capsys):
    spec = RunSpec(method="parae-pointnet", task="synth-svm", results_dir=str(tmp_path))
    jobs = [Job("pre", "pretrain", spec, key="k"), Job("ev", "eval", spec, depends="pre", key="k"),
            Job("other", "eval", spec)]

    def job_fn(job, log_path):
        Path(log_path).write_text(f"log of {job.name}")
        if job.name == "pre":
            raise RuntimeError("out of memory")
        return {"metrics": {"acc": 50.0}, "modality": "points"}

    backend = _InlineBackend()
    states = {s.job.name: s for s in run_sweep(jobs, _launch(tmp_path, "local", retries=2), job_fn, backend=backend)}
    assert backend.calls == ["pre", "other", "pre", "pre"]  # 1 + 2 retries; "ev" never ran
    assert states["pre"].state == "failed" and states["pre"].attempts == 3
    assert states["pre"].error.startswith("RuntimeError: out of memory (log: ")
    assert Path(states["pre"].log).read_text() == "log of pre" and states["pre"].log.endswith("pre.attempt3.log")
    assert states["ev"].state == "failed" and "its pretraining pre failed: RuntimeError" in states["ev"].error
    assert states["other"].state == "done"
    lines = status_lines(tmp_path / "sweep")
    assert lines[0].endswith("0 pending, 0 running, 1 done, 2 failed") and "failed  pre after 3 attempts" in lines[-2]


def test_status_without_a_sweep_says_so(tmp_path, capsys):
    from ssl3d.bench.cli import main

    assert main(["suite", "--status", "--results-dir", str(tmp_path)]) == 0
    assert "no sweep state in" in capsys.readouterr().out
