"""``bench suite``: every compatible (method, task, modality) x seed, resumable, with an ETA.

A pair is compatible when the task's protocol says so
(:meth:`~ssl3d.bench.protocols.Protocol.supports`: the method offers one of the
task's modalities for what the protocol needs - global features, per-point
features or a voxel decoder - and meets the protocol's own requirements); every
other pair is listed as skipped with the reason, never silently dropped. Runs
already in the leaderboard (same task, method, modality, preset, ``--set``
overrides and seed) are skipped, so an interrupted suite resumes where it
stopped; cached pretrainings are reused across tasks by the runner. A run
counts as done when its ``result.json`` exists (or its rows are in the CSV), so
runs of a sweep whose rows are not in ``leaderboard.csv`` yet are not run again.

Without a launcher the runs go one after the other in this process; with one
(``launch``), the same runs become a job graph on submitit or Ray
(:mod:`ssl3d.bench.sweep.jobs`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

from tqdm.auto import tqdm

from ssl3d.core.config import ConfigError
from ssl3d.core.errors import UserError
from ssl3d.bench.sweep.launch_config import LaunchConfig
from ssl3d.bench.run.results import ResultStore, settings_label
from ssl3d.bench.run.runner import RunSpec, check_run_folders, execute, run_log_of, split_overrides
from ssl3d.bench.protocols.tasks import TASKS, Task, compatibility
from ssl3d.datasets import DATASETS
from ssl3d.methods import METHODS


@dataclass(frozen=True)
class PlannedRun:
    method: str
    task: str
    modality: str


DEFAULT_TASKS = "synth-*"  # with the default, only the embedded synth dataset's own tasks (not synth-scenes-*)


def _pretraining_problem(method_name: str, task: Task, preset: str, method_o: dict[str, str]) -> str | None:
    """Why the method cannot pretrain on any of the task's releases (a points-only release for a multi-modal method).

    ``method_o``: the method's share of ``--set``, as the runner routes it (``split_overrides``).
    """
    method_cls = METHODS.get(method_name)
    try:
        if not method_cls.from_preset(preset, method_o).pretrains:
            return None
    except (UserError, ValueError):  # a preset or key this method lacks: its own run reports that, not the plan
        return None
    needed = set(method_cls.pretrain_modalities)
    gives = {r.dataset: set(DATASETS.get(r.dataset).available_modalities) for r in task.candidates()}
    if any(needed <= provided for provided in gives.values()):
        return None
    return (f"{method_name} pretrains on {', '.join(sorted(needed))} but "
            + "; ".join(f"{name} provides {', '.join(sorted(provided))}" for name, provided in gives.items())
            + " (bench run --pretrain-data NAME pretrains elsewhere)")


def plan_suite(methods: str = "*", tasks: str = DEFAULT_TASKS, preset: str = "quick",
               overrides: dict[str, str] | None = None) -> tuple[list[PlannedRun], list[tuple[str, str, str]]]:
    """(compatible runs, skipped (method, task, reason)) for the name patterns.

    The default pattern plans the tasks of the embedded ``synth`` dataset: the scene tasks of ``synth-scenes``
    need a point method configured for their 9-channel blocks, so they are asked for by name. A method that
    would pretrain on a dataset lacking one of its pretraining modalities is skipped with the reason.
    """
    planned, skipped = [], []
    task_names = TASKS.names(tasks)
    if tasks == DEFAULT_TASKS:
        task_names = [t for t in task_names if TASKS.get(t).dataset == "synth"]
    method_names = METHODS.names(methods)
    if not task_names:
        raise ConfigError(f"no task matches {tasks!r}; tasks: {', '.join(TASKS.names())}")
    if not method_names:
        raise ConfigError(f"no method matches {methods!r}; methods: {', '.join(METHODS.names())}")
    for task_name in task_names:
        task = TASKS.get(task_name)
        method_o = split_overrides(dict(overrides or {}), task.protocol)[0]  # a key of no section fails here
        supported, unsupported = compatibility(task, method_names)
        for method_name in method_names:
            problem = None if method_name in unsupported else \
                _pretraining_problem(method_name, task, preset, method_o)
            if method_name in unsupported:
                skipped.append((method_name, task_name, f"{method_name} {unsupported[method_name]}"))
            elif problem:
                skipped.append((method_name, task_name, problem))
            else:
                planned.extend(PlannedRun(method_name, task_name, m) for m in supported[method_name])
    return planned, skipped


def run_suite(*, methods: str = "*", tasks: str = DEFAULT_TASKS, preset: str = "quick", seeds: tuple[int, ...] = (0, 1, 2),
              device: str = "auto", overrides: dict[str, str] | None = None, data_root: str | None = None,
              results_dir: str | None = None, progress: bool = True, dry_run: bool = False,
              launch: LaunchConfig | None = None, job_fn: Callable[..., Any] | None = None, log: str = "csv") -> dict:
    """Run the planned suite; returns counts, skipped pairs and failures.

    ``launch`` runs it as a job graph on submitit or Ray; ``job_fn`` replaces what a job does (tests).
    """
    planned, skipped = plan_suite(methods, tasks, preset, overrides)
    # a results folder or data root no run could use fails once here, not once per planned run
    check_run_folders(results_dir, data_root)
    store = ResultStore(results_dir)
    rows = store.merged_rows()[0]  # result files (a sweep's jobs write only those) and the CSV's rows
    done = {(str(r["task"]), str(r["method"]), str(r["modality"] or ""), str(r["preset"] or ""),
             str(r["settings"] or ""), int(r["seed"])) for r in rows}
    label = settings_label(overrides)
    todo = [(p, s) for p in planned for s in seeds if (p.task, p.method, p.modality, preset, label, s) not in done]
    for method, task, reason in skipped:
        print(f"skip {method} x {task}: {reason}")
    print(f"suite: {len(planned)} compatible (method, task, modality) x {len(seeds)} seeds = "
          f"{len(planned) * len(seeds)} runs; {len(planned) * len(seeds) - len(todo)} already done, {len(todo)} to run")
    failures: list[tuple[str, str]] = []
    if dry_run:
        for p, s in todo:
            print(f"would run {p.method} on {p.task} ({p.modality}) seed {s}")
        return {"planned": len(planned) * len(seeds), "todo": len(todo), "skipped": skipped, "failures": failures}
    t0 = time.perf_counter()
    if launch is not None:
        failures = _run_launched(todo, launch, job_fn, RunSpec(
            method="", task="", preset=preset, device=device, overrides=dict(overrides or {}), data_root=data_root,
            results_dir=str(store.root), progress=False, log=log))
        print(f"suite finished in {time.perf_counter() - t0:.0f}s: {len(todo) - len(failures)} runs, "
              f"{len(failures)} failed, {len(skipped)} pairs skipped")
        return {"planned": len(planned) * len(seeds), "todo": len(todo), "skipped": skipped, "failures": failures,
                "seconds": time.perf_counter() - t0}
    bar = tqdm(todo, desc="suite", unit="run", disable=not progress, dynamic_ncols=True)
    for p, seed in bar:
        bar.set_postfix_str(f"{p.method} / {p.task} / {p.modality} / s{seed}")
        spec = RunSpec(method=p.method, task=p.task, preset=preset, seed=seed, device=device,
                       overrides=dict(overrides or {}), modality=p.modality, data_root=data_root,
                       results_dir=results_dir, progress=False, log=log)
        try:
            result = execute(spec)
        except Exception as exc:  # one failing pair must not stop the suite; it is reported
            log_path = run_log_of(exc)  # None when the spec was refused before the run started
            where = f" (traceback in {log_path})" if log_path else ""
            failures.append((f"{p.method} x {p.task} ({p.modality}) seed {seed}", f"{type(exc).__name__}: {exc}{where}"))
            bar.write(f"FAILED {failures[-1][0]}: {failures[-1][1]}")
            continue
        metrics = "  ".join(f"{k}={v:.2f}" for k, v in result["metrics"].items())
        bar.write(f"{p.method} on {p.task} ({p.modality}) seed {seed}: {metrics}")
    bar.close()
    print(f"suite finished in {time.perf_counter() - t0:.0f}s: {len(todo) - len(failures)} runs, "
          f"{len(failures)} failed, {len(skipped)} pairs skipped")
    for what, why in failures:
        print(f"failed {what}: {why}")
    return {"planned": len(planned) * len(seeds), "todo": len(todo), "skipped": skipped, "failures": failures,
            "seconds": time.perf_counter() - t0}


def _run_launched(todo: list[tuple[PlannedRun, int]], launch: LaunchConfig, job_fn: Callable[..., Any] | None,
                  base: RunSpec) -> list[tuple[str, str]]:
    """The runs as a job graph (:mod:`ssl3d.bench.sweep.jobs`); then ``leaderboard.csv`` is rebuilt from the results."""
    from ssl3d.bench.sweep.jobs import build_graph, run_job, run_sweep

    specs = [dataclasses.replace(base, method=p.method, task=p.task, modality=p.modality, seed=seed)
             for p, seed in todo]
    jobs = build_graph(specs, threads=launch.cpus)  # every spec is validated before the first job is submitted
    print(f"launcher {launch.launcher}: {sum(j.kind == 'pretrain' for j in jobs)} pretraining jobs, "
          f"{sum(j.kind == 'eval' for j in jobs)} evaluation jobs; state: {launch.folder / 'state.json'}")
    states = run_sweep(jobs, launch, job_fn or run_job) if jobs else []
    ResultStore(base.results_dir).sync_leaderboard()
    failures = [(s.job.name, s.error) for s in states if s.state == "failed" and s.job.kind == "eval"]
    for what, why in failures:
        print(f"failed {what}: {why}")
    return failures
