"""A suite as a job graph on a cluster engine: one pretraining job per cache key, its evaluations after it.

``bench suite --launcher local|slurm|ray`` plans exactly as the sequential suite
(same compatible runs, skip reasons and resume); each run still to do becomes an
*evaluation job*, and the evaluations sharing a pretraining cache key (method,
config, pretraining data, seed: :func:`~ssl3d.bench.run.pretrain_cache.pretrain_key`) depend
on one *pretraining job*. Methods that do not pretrain (random-init baselines,
``train.epochs=0``) have evaluation jobs only.

This process (the driver) submits a job once what it depends on is done, keeps
at most ``parallel`` jobs queued or running, and retries a failed job (an
exception, a killed process, a timeout) up to ``retries`` times, each attempt
with its own log. Evaluations of a pretraining that failed for good fail without
running. Jobs write only their own ``result.json``; the driver rebuilds
``leaderboard.csv`` from them at the end. Even without the driver's ordering two
jobs never train one key at once: the pretraining takes a lock beside its cache
folder (:mod:`ssl3d.bench.run.pretrain_lock`).

The driver keeps ``<folder>/state.json`` up to date; ``bench suite --status``
prints it. Stopping the driver leaves finished work in place: the same command
resumes (done runs are skipped, finished pretrainings are cache hits).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from ssl3d.bench.sweep.launch_config import LaunchConfig
from ssl3d.core.io import QuietFileHandler
from ssl3d.bench.sweep.launchers import Backend, make_backend
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.run.pretrain_cache import pretrain_key, pretrain_or_load
from ssl3d.bench.run.runner import RunSpec, execute, resolve_device, validate_run
from ssl3d.bench.run.tracking import tracking
from ssl3d.core.io import atomic_write_json
from ssl3d.core.seeding import seed_everything
from ssl3d.datasets import default_root

log = logging.getLogger("ssl3d.sweep")
STATES = ("pending", "running", "done", "failed")


@dataclass(frozen=True)
class Job:
    """One node of the graph."""

    name: str  # unique and file-name safe: the log file is named after it
    kind: str  # "pretrain" or "eval"
    spec: RunSpec  # an evaluation's run; a pretraining job uses the spec of its first evaluation
    depends: str | None = None  # the pretraining job an evaluation waits for
    key: str | None = None  # the pretraining cache key (None: the method does not pretrain)
    threads: int = 0  # torch CPU threads of the job: its share of cores (0 = torch's default, all cores)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def build_graph(specs: Sequence[RunSpec], threads: int = 0) -> list[Job]:
    """Pretraining jobs (one per key, in order of first use) followed by every evaluation job.

    Each spec is validated here (before anything is submitted); its data root and results folder become
    absolute paths, so jobs on other nodes or working folders read and write the same places.
    """
    jobs: dict[str, Job] = {}
    evals = []
    for spec in specs:
        spec = dataclasses.replace(spec, data_root=str(Path(spec.data_root or default_root()).resolve()),
                                   results_dir=str(ResultStore(spec.results_dir).root.resolve()),
                                   progress=False, leaderboard=False)
        plan = validate_run(spec)
        key = None
        if plan.pre_data is not None:
            settings = {g: plan.pre_data.settings(g) for g in plan.pre_data.groups()}
            key = pretrain_key(plan.method, plan.pre_data.name, settings, spec.seed)
            name = _safe(f"pretrain-{spec.method}-s{spec.seed}-{key}")
            jobs.setdefault(name, Job(name, "pretrain", spec, key=key, threads=threads))
        depends = _safe(f"pretrain-{spec.method}-s{spec.seed}-{key}") if key else None
        evals.append(Job(_safe(f"eval-{spec.method}-{spec.task}-{plan.modality}-s{spec.seed}"), "eval", spec,
                         depends, key, threads))
    return [*jobs.values(), *evals]


def run_job(job: Job, log_path: str) -> dict[str, Any]:
    """What one job does, in its own process (submitit) or worker (Ray); its log goes to ``log_path``."""
    handler = QuietFileHandler(log_path, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ssl3d")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        log.info("job %s on %s (pid %d)", job.name, socket.gethostname(), os.getpid())
        if job.threads:  # more threads than the job's cores make every job on the node crawl
            import torch

            torch.set_num_threads(job.threads)
        if job.kind == "pretrain":
            plan = validate_run(job.spec)
            seed_everything(job.spec.seed)
            plan.pre_data.prepare()
            with tracking(job.spec.log, job.spec.results_dir, job.name):  # the losses are streamed from here
                info = pretrain_or_load(plan.method, plan.pre_data, job.spec.seed, resolve_device(job.spec.device),
                                        Path(job.spec.data_root), progress=False)
            return {"pretraining": info}
        result = execute(job.spec)
        return {"run_id": result["run_id"], "metrics": result["metrics"], "modality": result["modality"]}
    except BaseException:
        log.exception("job %s failed", job.name)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


@dataclass
class JobState:
    """What the driver knows of one job (one entry of ``state.json``)."""

    job: Job
    state: str = "pending"  # one of STATES
    attempts: int = 0  # submissions so far (1 + retries used)
    job_id: str = ""  # the engine's id of the latest attempt (SLURM job id, Ray task id, local pid)
    log: str = ""  # this attempt's own log (logging of ssl3d, traceback on failure)
    engine_log: str | None = None  # the engine's stdout/stderr file of the attempt (submitit)
    error: str = ""  # why the latest attempt failed, with its log paths
    outcome: dict[str, Any] | None = None  # what the job returned (metrics of an evaluation)
    handle: Any = None  # the engine's handle while it runs

    def record(self) -> dict[str, Any]:
        return {"name": self.job.name, "kind": self.job.kind, "state": self.state, "attempts": self.attempts,
                "depends": self.job.depends, "key": self.job.key, "job_id": self.job_id, "log": self.log,
                "engine_log": self.engine_log, "error": self.error}


def run_sweep(jobs: list[Job], config: LaunchConfig, job_fn: Callable[[Job, str], dict[str, Any]] = run_job,
              backend: Backend | None = None, echo: Callable[[str], None] = print) -> list[JobState]:
    """Run the graph to the end (every job done or failed for good); returns the final job states."""
    states = {job.name: JobState(job) for job in jobs}
    logs = config.folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    backend = backend or make_backend(config)
    try:
        while any(s.state in ("pending", "running") for s in states.values()):
            running = sum(s.state == "running" for s in states.values())
            for s in states.values():
                if s.state != "pending":
                    continue
                parent = states.get(s.job.depends) if s.job.depends else None
                if parent is not None and parent.state == "failed":
                    s.state, s.error = "failed", f"its pretraining {parent.job.name} failed: {parent.error}"
                    echo(f"FAILED {s.job.name}: {s.error}")
                elif (parent is None or parent.state == "done") and running < config.parallel:
                    _submit(s, backend, job_fn, logs)
                    running += 1
            for s in states.values():
                if s.state == "running":
                    _poll(s, backend, config, job_fn, logs, echo)
            write_state(config.folder, config, states.values())
            if any(s.state == "running" for s in states.values()):
                time.sleep(config.poll_s)
    finally:
        write_state(config.folder, config, states.values(), finished=True)
        backend.close()
    return list(states.values())


def _submit(s: JobState, backend: Backend, job_fn: Callable, logs: Path) -> None:
    s.attempts += 1
    s.log = str(logs / f"{s.job.name}.attempt{s.attempts}.log")
    s.handle = backend.submit(job_fn, s.job, s.log)
    s.state, s.job_id, s.engine_log = "running", backend.job_id(s.handle), backend.engine_log(s.handle)


def _poll(s: JobState, backend: Backend, config: LaunchConfig, job_fn: Callable, logs: Path,
          echo: Callable[[str], None]) -> None:
    state, payload = backend.poll(s.handle)
    if state == "running":
        return
    s.handle = None
    if state == "done":
        s.state, s.outcome, s.error = "done", payload, ""
        if s.job.kind == "eval":
            metrics = "  ".join(f"{k}={v:.2f}" for k, v in payload["metrics"].items())
            echo(f"{s.job.spec.method} on {s.job.spec.task} ({payload['modality']}) seed {s.job.spec.seed}: {metrics}")
        return
    where = f" (log: {s.log}" + (f"; engine log: {s.engine_log})" if s.engine_log else ")")
    s.error = f"{payload}{where}"
    if s.attempts <= config.retries:
        echo(f"retrying {s.job.name} (attempt {s.attempts} of {config.retries + 1} failed: {s.error})")
        _submit(s, backend, job_fn, logs)
    else:
        s.state = "failed"
        echo(f"FAILED {s.job.name} after {s.attempts} attempts: {s.error}")


def write_state(folder: Path, config: LaunchConfig, states, finished: bool = False) -> None:
    """``<folder>/state.json``: every job's state, attempts, ids and logs (what ``--status`` shows)."""
    atomic_write_json(Path(folder) / "state.json", {
        "launcher": config.launcher, "driver": f"{socket.gethostname()}:{os.getpid()}", "finished": finished,
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "jobs": [s.record() for s in states]})


def status_lines(folder: str | os.PathLike[str]) -> list[str]:
    """``bench suite --status``: counts per state, then the running and failed jobs with their logs."""
    path = Path(folder) / "state.json"
    if not path.exists():
        return [f"no sweep state in {path} (no `bench suite --launcher ...` has run with this folder)"]
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        jobs = state["jobs"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{path}: unreadable sweep state ({exc})"]
    counts = {name: sum(j["state"] == name for j in jobs) for name in STATES}
    driver = "finished" if state.get("finished") else f"driver {state.get('driver')} running or stopped"
    lines = [f"sweep ({state.get('launcher')}, {driver}; updated {state.get('updated_at')}): "
             + ", ".join(f"{n} {name}" for name, n in counts.items())]
    for job in jobs:
        if job["state"] == "running":
            lines.append(f"  running {job['name']} (job {job['job_id']}, attempt {job['attempts']}): {job['log']}")
    for job in jobs:
        if job["state"] == "failed":
            lines.append(f"  failed  {job['name']} after {job['attempts']} attempts: {job['error']}")
    return lines
