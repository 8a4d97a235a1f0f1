"""The runner: (method, preset + overrides, pretraining data, task, seed) -> a stored result.

Pretraining is cached under ``$SSL3D_DATA/pretrain/<method>/<key>/`` where the
key hashes everything that determines the weights (method and its code
version, resolved config, pretraining dataset + its settings, seed), so five
tasks on one method pretrain once, and an interrupted pretraining resumes from
the ``last.pt`` checkpoint of that folder (bench/run/pretrain_cache.py, which also
serves an E-epoch pretraining from a longer one's epoch-E snapshot).

A run has two phases. :func:`validate_run` resolves every name, setting and
modality of the spec and raises before anything exists on disk (no run
folder, no log, no cache); :func:`run_validated` then builds the caches,
pretrains, evaluates and stores the result, and when it fails its ``run.log``
records the exception with its traceback (:func:`run_log_of` gives the path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ssl3d.core.config import (
    ConfigError, apply_overrides, build_preset, check_range, config_hash, flat_keys, to_dict,
)
from ssl3d.core.io import QuietFileHandler, WriteFailedError, atomic_path, check_folder, os_error_reason, write_failed
from ssl3d.bench.run.init_checkpoint import method_from_preset
from ssl3d.bench.run.pretrain_cache import pretrain_or_load, pretraining_data
from ssl3d.bench.run.provenance import environment, git_commit
from ssl3d.bench.run.tracking import check_tracker, flat_params, tracking
from ssl3d.bench.protocols import PROTOCOLS, EvalContext, offered_modalities, usable_modalities
from ssl3d.bench.run.results import ResultStore, check_not_reference, settings_label
from ssl3d.bench.protocols.tasks import TASKS, Task, choose_release, compatibility, get_task
from ssl3d.core.errors import UserError, attach_log_path, log_path_of
from ssl3d.datasets import DATASETS, default_root
from ssl3d.methods import METHODS, Method
from ssl3d.methods.backbones.pretrained import check_weights_available
from ssl3d.methods.trainer import epoch_seconds
from ssl3d.core.distributed import device_for_rank, init_distributed, main_process_first
from ssl3d.core.seeding import seed_everything

log = logging.getLogger("ssl3d.run")


@dataclass
class RunSpec:
    """One run as the command line describes it."""

    method: str
    task: str
    preset: str = "quick"  # method preset: "quick" (2-core CPU, minutes) or "paper"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:i]
    overrides: dict[str, str] = field(default_factory=dict)  # --set key=value
    modality: str | None = None  # None = the task's first modality the method can embed
    pretrain_data: str | None = None  # None = the task's dataset (train split, labels unused)
    data_root: str | None = None
    results_dir: str | None = None
    progress: bool = True
    leaderboard: bool = True  # False: write only result.json (sweep jobs; the CSV is rebuilt from the files)
    log: str = "csv"  # experiment tracker: csv | tensorboard | mlflow (bench/run/tracking.py)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a missing CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a device; use auto, cpu or cuda[:i]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return device


def split_overrides(overrides: dict[str, str], protocol: str) -> tuple[dict, dict, dict]:
    """Sort ``--set`` keys into (method, data, protocol) overrides by their first component.

    ``train.*`` is a shortcut for ``method.train.*``.
    """
    method_o, data_o, proto_o = {}, {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "method" and rest:
            method_o[rest] = value
        elif head == "train" and rest:
            method_o[key] = value
        elif head == "data" and rest:
            data_o[rest] = value
        elif head == protocol and rest:
            proto_o[rest] = value
        else:
            raise ConfigError(
                f"--set {key}: unknown section {head!r}; keys start with method., train., data. or {protocol}. "
                "(run with a wrong key such as --set method.x=1 to see every valid key)"
            )
    return method_o, data_o, proto_o


def resolve_modality(task_name: str, method_cls: type[Method], requested: str | None, needs: str) -> str:
    """The modality a run evaluates; an impossible pair names what would work."""
    task = get_task(task_name)
    can = offered_modalities(method_cls, needs)
    usable = usable_modalities(method_cls, task, needs)
    if requested is not None:
        if requested not in task.modalities:
            raise ConfigError(f"task {task.name!r} evaluates {', '.join(task.modalities)}; not {requested!r}")
        if requested not in can:
            raise ConfigError(
                f"method {method_cls.name!r} cannot use {requested!r} for {needs} (it supports {', '.join(sorted(can)) or 'nothing'}); "
                f"for task {task.name!r} use --modality {' or '.join(usable)}" if usable else
                f"method {method_cls.name!r} cannot embed {requested!r} and shares no modality with task {task.name!r}"
            )
        return requested
    if not usable:
        fits = [n for n in METHODS.names() if usable_modalities(METHODS.get(n), task, needs)]
        raise ConfigError(
            f"method {method_cls.name!r} supports {', '.join(sorted(can)) or 'nothing'} for {needs} but task {task.name!r} "
            f"evaluates {', '.join(task.modalities)}; methods that fit this task: {', '.join(fits)}"
        )
    return usable[0]


def build_data_config(dataset_cls, task_options: dict, method: Method, user: dict[str, str]):
    """Dataset defaults < task options < the method's needs < the user's ``--set data.*``."""
    config = dataset_cls.Config()
    config = apply_overrides(config, task_options, section="data.")
    config = apply_overrides(config, method.data_overrides(), section="data.")
    return apply_overrides(config, user, section="data.")


def data_key(data_config: Any, dataset) -> str:
    """The leaderboard's hash of the evaluation data: its settings and, for multi-release datasets, the release.

    Runs on different dataset sizes, settings or raw releases (ModelNet OFF vs binvox) never share a row group.
    """
    payload = {k: v for k, v in to_dict(data_config).items() if k != "workers"}  # speed only
    return config_hash({**payload, **dataset.raw_identity()}, length=8)


def new_run_id(spec: RunSpec) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{spec.method}-{spec.task}-s{spec.seed}-{secrets.token_hex(3)}"


@dataclass
class ValidatedRun:
    """A :class:`RunSpec` with everything resolved; the datasets are indexed, their caches not built yet."""

    spec: RunSpec
    task: Task
    method: Method
    protocol: Any
    modality: str
    device: torch.device
    data_config: Any
    train_data: Any
    test_data: Any
    pre_name: str
    pre_config: Any
    pre_data: Any  # None when the method does not pretrain (it then sees the evaluation train split)


def validate_run(spec: RunSpec) -> ValidatedRun:
    """Resolve and check the whole spec; raises (a ConfigError, an UnknownNameError...) before any side effect.

    Names (method, task, protocol, datasets including ``--pretrain-data``), every ``--set`` override against
    its config, numeric ranges, the modality and the device are checked here, and each split is indexed
    (which checks the split, its modalities and, for real datasets, that the raw files are there) without
    building a cache. Nothing is written: no run folder, no log, no cache.
    """
    check_range("--seed", spec.seed, "[0, inf)")
    check_tracker(spec.log)
    task = get_task(spec.task)
    method_cls = METHODS.get(spec.method)
    protocol_cls = PROTOCOLS.get(task.protocol)
    if spec.pretrain_data:
        DATASETS.get(spec.pretrain_data)  # an unknown name fails before anything else is resolved
    method_o, data_o, proto_o = split_overrides(spec.overrides, protocol_cls.name)
    method = method_from_preset(method_cls, spec.preset, method_o)  # + its published checkpoint, checked
    check_weights_available(method.config)  # pretrained weights must be on this machine: never downloaded
    protocol = protocol_cls.for_task(task, proto_o)
    modality = resolve_modality(spec.task, method_cls, spec.modality, protocol_cls.needs)
    refusal = protocol.supports(method_cls, task, modality)  # what the modality alone does not tell (ibsr's gallery)
    if refusal:
        raise ConfigError(f"method {spec.method!r} cannot run task {task.name!r}: {spec.method} {refusal}")
    device = resolve_device(spec.device)
    root = check_run_folders(spec.results_dir, spec.data_root)
    needed = {modality} | (set(method.pretrain_modalities) if method.pretrains and not spec.pretrain_data else set())
    release = choose_release(task, needed, root)
    dataset_cls = DATASETS.get(release.dataset)
    pre_name = spec.pretrain_data or release.dataset
    pre_cls = DATASETS.get(pre_name)
    data_config = build_data_config(dataset_cls, release.data_options, method, data_o)
    protocol.check_run(method, data_config)
    pre_config = build_data_config(pre_cls, release.data_options if pre_name == release.dataset else {}, method, data_o)
    eval_modalities = protocol.dataset_modalities(modality)
    train = dataset_cls("train", eval_modalities, data_config, root, progress=spec.progress, prepare=False)
    test = dataset_cls("test", eval_modalities, data_config, root, progress=spec.progress, prepare=False)
    protocol.check_data(train, test)
    pre_data = None
    if method.pretrains:
        pre_modalities = sorted(method.pretrain_modalities)
        lacking = [m for m in pre_modalities if m not in pre_cls.available_modalities]
        if lacking:
            raise ConfigError(
                f"--pretrain-data {pre_name}: {spec.method} pretrains on {', '.join(pre_modalities)} but {pre_name} "
                f"provides {', '.join(sorted(pre_cls.available_modalities))}"
            )
        pre_data = pre_cls("train", pre_modalities, pre_config, root, progress=spec.progress, prepare=False)
        pre_data = pretraining_data(method, pre_data, spec.seed, release.dataset)  # label readers: minus validation
    return ValidatedRun(spec, task, method, protocol, modality, device, data_config, train, test, pre_name,
                        pre_config, pre_data)


def check_run_folders(results_dir: str | None, data_root: str | None) -> Path:
    """Refuse a results folder or data root a run could not write into (nor a committed reference); writes nothing.

    Returns the data root (``data_root`` or the default). One that exists is only checked to be a folder:
    read-only caches serve runs (pretrain_cache.py).
    """
    store = ResultStore(results_dir)
    what = ("--results-dir" if results_dir else "$SSL3D_RESULTS" if os.environ.get("SSL3D_RESULTS")
            else "the results folder")
    check_not_reference(store.root, what)
    check_folder(store.root, what)
    check_folder(store.root / "runs", f"{what} {store.root}: its runs folder")
    _ = store.leaderboard_path  # raises when a folder has that name
    root = Path(data_root) if data_root else default_root()
    what = "--data-root" if data_root else "$SSL3D_DATA" if os.environ.get("SSL3D_DATA") else "the data root"
    check_folder(root, what, writable=not root.exists())
    return root


def execute(spec: RunSpec) -> dict[str, Any]:
    """Run one (method, task, seed), store the result, return it (``{}`` on a non-zero distributed rank)."""
    return run_validated(validate_run(spec))


def run_log_of(exc: BaseException) -> Path | None:
    """The ``run.log`` of the run that raised ``exc`` (None when it failed before its folder existed)."""
    path = log_path_of(exc)
    return Path(path) if path is not None else None


def run_validated(plan: ValidatedRun) -> dict[str, Any]:
    """The run phase: caches, pretraining, evaluation, result; a failure is recorded in the run's log."""
    spec, method, protocol = plan.spec, plan.method, plan.protocol
    info = init_distributed(plan.device)  # a no-op unless launched by torchrun
    device = device_for_rank(plan.device)
    root = Path(spec.data_root) if spec.data_root else default_root()
    store = ResultStore(spec.results_dir)
    run_id = new_run_id(spec)
    run_dir = store.run_dir(run_id)
    handler = _attach_log_file(run_dir / "run.log") if info.is_main else logging.NullHandler()
    stack, failed = contextlib.ExitStack(), False
    try:
        log.info("run %s: method=%s preset=%s task=%s modality=%s seed=%d device=%s",
                 run_id, spec.method, spec.preset, spec.task, plan.modality, spec.seed, device)
        tracker = stack.enter_context(tracking(spec.log, store.root, run_id)) if info.is_main else None
        if tracker is not None:
            tracker.params(flat_params({"method": to_dict(method.config), "data": to_dict(plan.data_config),
                                        plan.task.protocol: to_dict(protocol.config)}),
                           {"method": method.name, "task": plan.task.name, "modality": plan.modality, "seed": str(spec.seed),
                            "preset": spec.preset, "pretrain_data": plan.pre_name, "git_commit": git_commit()})
        t0 = time.perf_counter()
        seed_everything(spec.seed)
        train, test = plan.train_data, plan.test_data
        with main_process_first():  # rank 0 builds the caches, the others then read them
            train.prepare()
            test.prepare()
        t_data = time.perf_counter()
        if plan.pre_data is not None:
            with main_process_first():
                plan.pre_data.prepare()
        pretrain_info = pretrain_or_load(method, plan.pre_data or train, spec.seed, device, root, spec.progress)
        t_pre = time.perf_counter()
        if not info.is_main:  # evaluation and results belong to rank 0
            return {}

        ctx = EvalContext(seed=spec.seed, device=str(device), progress=spec.progress)
        outcome = protocol.evaluate(method, train, test, plan.modality, ctx)
        t_eval = time.perf_counter()
        result = {
            "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": plan.task.name, "method": method.name, "modality": plan.modality, "preset": spec.preset,
            "seed": spec.seed, "pretrain_data": plan.pre_name, "dataset_version": train.version,
            # the evaluation data's settings: runs on different dataset sizes/settings never share a row group
            "data_key": data_key(plan.data_config, train),
            "settings": settings_label(spec.overrides, method.pretrain_info),  # a checkpoint by its digest
            "git_commit": git_commit(), "device": str(device), "world_size": info.world_size,
            "metrics": {k: round(float(v), 4) for k, v in outcome.metrics.items()},
            "protocol": {"name": protocol.name, "config": to_dict(protocol.config), "details": outcome.details},
            "config": {"method": to_dict(method.config), "data": to_dict(plan.data_config),
                       "pretrain_data_config": to_dict(plan.pre_config), "overrides": spec.overrides},
            "pretraining": {**pretrain_info, **{k: v for k, v in method.pretrain_info.items() if k != "history"},
                            "epoch_seconds": epoch_seconds(method.pretrain_info.get("history") or [])},
            "timings": {"data_s": round(t_data - t0, 3), "pretrain_s": round(t_pre - t_data, 3),
                        "eval_s": round(t_eval - t_pre, 3), "total_s": round(t_eval - t0, 3)},
            "environment": environment(),
        }
        try:
            if outcome.artifacts:
                import numpy as np

                with atomic_path(run_dir / "artifacts.npz") as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez_compressed(fh, **outcome.artifacts)
            path = store.save(result, leaderboard=spec.leaderboard)
        except OSError as exc:  # a full disk, a read-only folder: the evaluation is lost, not the pretraining
            raise _not_saved(exc, run_dir / "artifacts.npz", result, method) from exc
        for name, value in result["metrics"].items():
            tracker.scalar(f"{plan.task.name}/{name}", value, 0)
        tracker.params({"data_key": result["data_key"], "pretrain_key": str(pretrain_info.get("key"))}, {})
        log.info("metrics: %s", result["metrics"])
        log.info("result written to %s", path)
        return result
    except BaseException as exc:  # KeyboardInterrupt included: the log says how the run ended
        failed = True
        if info.is_main:
            _record_failure(handler, run_id, exc)
            if getattr(handler, "failed", None) is None:  # a log that could not be written is not worth a look
                attach_log_path(exc, run_dir / "run.log")
        raise
    finally:
        try:
            stack.close()
        except OSError as exc:  # the tracker's files on a full disk: never hides how the run ended
            if not failed:
                log.warning("%s: the tracker's files are incomplete (%s)", run_dir, os_error_reason(exc))
        logging.getLogger("ssl3d").removeHandler(handler)
        handler.close()


def _not_saved(exc: OSError, artifacts: Path, result: dict[str, Any], method: Method) -> WriteFailedError:
    """The one line for a result that could not be written, with its metrics and how to get it again."""
    what = str(exc) if isinstance(exc, WriteFailedError) else str(write_failed(artifacts, exc))
    metrics = ", ".join(f"{name}={value}" for name, value in result["metrics"].items())
    again = "it reuses the cached pretraining and evaluates again" if method.pretrains else "it evaluates again"
    return WriteFailedError(f"the result was NOT saved: {what}; its metrics were {metrics}; once that can be "
                            f"written, run the same command again: {again}")


def _record_failure(handler: logging.Handler, run_id: str, exc: BaseException) -> None:
    # straight to the file: through the logger the traceback would also reach the console's handler,
    # twice with the CLI's own report, and a user error would stop being one line
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run %s failed", (run_id,),
                            (type(exc), exc, exc.__traceback__))
    handler.handle(record)


def _attach_log_file(path: Path) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a full disk later: one line, not a traceback per record; a path that is not UTF-8 is escaped, not lost
        handler = QuietFileHandler(path, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:  # a full disk, or a folder made read-only since validate_run: nothing has run yet
        raise write_failed(path, exc) from exc
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ssl3d")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def list_everything() -> dict[str, Any]:
    """Methods, tasks, datasets and protocols with a few facts each (``bench list``)."""
    methods = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        methods[name] = {"pretrain": sorted(cls.pretrain_modalities), "embed": sorted(cls.embed_modalities),
                         "presets": list(getattr(cls.Config, "PRESETS", {"paper": {}})), "paper": cls.paper,
                         "config_keys": [f"method.{k}" for k in flat_keys(build_preset(cls.Config, "paper"))]}
    tasks = {n: {**{k: v for k, v in dataclasses.asdict(TASKS.get(n)).items() if k != "name"},
                 **_listed_compatibility(TASKS.get(n))} for n in TASKS.names()}
    datasets = {n: {"modalities": sorted(DATASETS.get(n).available_modalities)} for n in DATASETS.names()}
    return {"methods": methods, "tasks": tasks, "datasets": datasets, "protocols": PROTOCOLS.names(),
            "plugin_errors": {**METHODS.plugin_errors, **TASKS.plugin_errors, **DATASETS.plugin_errors}}



def _listed_compatibility(task: Task) -> dict[str, dict[str, Any]]:
    """``{"supported": {method: modalities}, "unsupported": {method: reason}}`` of one task for ``bench list``."""
    try:
        supported, unsupported = compatibility(task, METHODS.names())
    except UserError as exc:  # a plugin task naming an unknown protocol or a bad option must not break the listing
        supported, unsupported = {}, {n: f"cannot be checked: {exc}" for n in METHODS.names()}
    return {"supported": {n: list(m) for n, m in supported.items()}, "unsupported": unsupported}
