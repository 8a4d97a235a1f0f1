"""``bench suite``: every compatible (method, task, modality) x seed, resumable, with an ETA.

A pair is compatible when the task's protocol says so
(:meth:`~ssl3d.bench.protocols.Protocol.supports`: the method offers one of the
task's modalities for what the protocol needs - global features, per-point
features or a voxel decoder - and meets the protocol's own requirements); every
other pair is listed as skipped with the reason, never silently dropped. Runs
already in the leaderboard (same task, method, modality, preset, ``--set``
overrides and seed) are skipped, so an interrupted suite resumes where it
stopped; cached pretrainings are reused across tasks by the runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from ssl3d.core.config import ConfigError
from ssl3d.bench.results import ResultStore, settings_label, text_columns
from ssl3d.bench.runner import RunSpec, execute, run_log_of
from ssl3d.bench.tasks import TASKS, compatibility
from ssl3d.methods import METHODS


@dataclass(frozen=True)
class PlannedRun:
    method: str
    task: str
    modality: str


def plan_suite(methods: str = "*", tasks: str = "synth-*") -> tuple[list[PlannedRun], list[tuple[str, str, str]]]:
    """(compatible runs, skipped (method, task, reason)) for the name patterns."""
    planned, skipped = [], []
    task_names = TASKS.names(tasks)
    method_names = METHODS.names(methods)
    if not task_names:
        raise ConfigError(f"no task matches {tasks!r}; tasks: {', '.join(TASKS.names())}")
    if not method_names:
        raise ConfigError(f"no method matches {methods!r}; methods: {', '.join(METHODS.names())}")
    for task_name in task_names:
        supported, unsupported = compatibility(TASKS.get(task_name), method_names)
        for method_name in method_names:
            if method_name in unsupported:
                skipped.append((method_name, task_name, f"{method_name} {unsupported[method_name]}"))
            else:
                planned.extend(PlannedRun(method_name, task_name, m) for m in supported[method_name])
    return planned, skipped


def run_suite(*, methods: str = "*", tasks: str = "synth-*", preset: str = "quick", seeds: tuple[int, ...] = (0, 1, 2),
              device: str = "auto", overrides: dict[str, str] | None = None, data_root: str | None = None,
              results_dir: str | None = None, progress: bool = True, dry_run: bool = False) -> dict:
    """Run the planned suite; returns counts, skipped pairs and failures."""
    planned, skipped = plan_suite(methods, tasks)
    store = ResultStore(results_dir)
    board = text_columns(store.read_leaderboard(), ("preset", "settings"))
    done = set()
    if not board.empty:
        done = {(r.task, r.method, r.modality, r.preset, r.settings, int(r.seed)) for r in board.itertuples()}
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
    bar = tqdm(todo, desc="suite", unit="run", disable=not progress, dynamic_ncols=True)
    for p, seed in bar:
        bar.set_postfix_str(f"{p.method} / {p.task} / {p.modality} / s{seed}")
        spec = RunSpec(method=p.method, task=p.task, preset=preset, seed=seed, device=device,
                       overrides=dict(overrides or {}), modality=p.modality, data_root=data_root,
                       results_dir=results_dir, progress=False)
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
