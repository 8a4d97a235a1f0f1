"""The engines a sweep's jobs run on: submitit (its local executor, or SLURM) and Ray.

Each backend only submits a picklable call and reports its state; the job graph,
retries and the state file belong to :mod:`ssl3d.bench.sweep.jobs`. Neither engine is
a dependency of ssl3d-bench: ``pip install ssl3d-bench[slurm]`` (submitit) or
``ssl3d-bench[ray]``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ssl3d.bench.sweep.launch_config import LaunchConfig
from ssl3d.core.errors import UserError


class LauncherUnavailableError(UserError, ImportError):
    """The engine asked for by ``--launcher`` is not installed."""


class Backend(Protocol):
    """What the sweep driver needs from an engine."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def poll(self, handle: Any) -> tuple[str, Any]: ...  # ("running" | "done" | "failed", result | error text)
    def job_id(self, handle: Any) -> str: ...
    def engine_log(self, handle: Any) -> str | None: ...  # the engine's own output file of the job, if any
    def close(self) -> None: ...


def _error_text(exc: BaseException) -> str:
    """One line: the exception type and the last line of its message (engines wrap the job's traceback)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1].strip() if lines else ''}"[:500]


class SubmititBackend:
    """``local``: processes of this machine (submitit's LocalExecutor); ``slurm``: one SLURM job per call."""

    def __init__(self, config: LaunchConfig) -> None:
        try:
            import submitit
        except ImportError:
            raise LauncherUnavailableError(f"--launcher {config.launcher} needs submitit: "
                                           "pip install 'ssl3d-bench[slurm]'") from None
        cluster = "local" if config.launcher == "local" else "slurm"
        self.executor = submitit.AutoExecutor(folder=config.folder / "submitit" / "%j", cluster=cluster)
        params: dict[str, Any] = {"timeout_min": config.time_min, "cpus_per_task": config.cpus,
                                  "gpus_per_node": config.gpus, "mem_gb": config.mem_gb, "name": "ssl3d-bench"}
        if cluster == "slurm":
            params.update(slurm_array_parallelism=config.parallel, slurm_setup=list(config.slurm_setup))
            if config.partition:
                params["slurm_partition"] = config.partition
        self.executor.update_parameters(**params)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def poll(self, handle: Any) -> tuple[str, Any]:
        if not handle.done():  # SLURM: answered from submitit's batched sacct watcher
            return "running", None
        try:
            return "done", handle.result()
        except Exception as exc:  # the job raised, was killed, timed out or was cancelled
            return "failed", _error_text(exc)

    def job_id(self, handle: Any) -> str:
        return str(handle.job_id)

    def engine_log(self, handle: Any) -> str | None:
        return str(handle.paths.stderr)

    def close(self) -> None:
        pass


class RayBackend:
    """Ray tasks on ``config.ray_address``, or on a Ray instance started here for the sweep (and stopped after)."""

    def __init__(self, config: LaunchConfig) -> None:
        try:
            import ray
        except ImportError:
            raise LauncherUnavailableError("--launcher ray needs ray: pip install 'ssl3d-bench[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            if config.ray_address:
                ray.init(address=config.ray_address, log_to_driver=False)
            else:  # room for `parallel` jobs of `cpus` cores each (GPUs: whatever this machine has)
                ray.init(num_cpus=config.parallel * config.cpus, include_dashboard=False, log_to_driver=False)
        self.options = {"num_cpus": config.cpus, "num_gpus": config.gpus, "max_retries": 0}  # retries: the driver's

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ray.remote(**self.options)(fn).remote(*args)

    def poll(self, handle: Any) -> tuple[str, Any]:
        ready, _ = self.ray.wait([handle], timeout=0)
        if not ready:
            return "running", None
        try:
            return "done", self.ray.get(handle)
        except Exception as exc:  # RayTaskError (the job raised) or WorkerCrashedError (its process died)
            return "failed", _error_text(exc)

    def job_id(self, handle: Any) -> str:
        return handle.task_id().hex()[:16]

    def engine_log(self, handle: Any) -> str | None:
        return None  # Ray keeps worker output under its session folder; the job's own log is what counts

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_backend(config: LaunchConfig) -> Backend:
    """The backend of ``config.launcher``; a missing engine is a :class:`LauncherUnavailableError`."""
    return RayBackend(config) if config.launcher == "ray" else SubmititBackend(config)
