"""How ``bench suite --launcher local|slurm|ray`` asks its engine for resources, and how it retries.

Every field is a ``bench suite`` flag (docs/scaling.md lists them); the defaults
are a one-GPU job of a ``paper`` preset run. ``local`` runs the jobs as
processes of this machine through submitit's local executor (the same code path
as ``slurm``, without a scheduler); ``slurm`` submits them with submitit's
SLURM executor; ``ray`` runs them as Ray tasks on ``ray_address`` (or a Ray
instance started for the sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ssl3d.core.config import ConfigError, check_ranges

LAUNCHERS = ("local", "slurm", "ray")


@dataclass
class LaunchConfig:
    """Resources per job, parallelism and retries of a sweep."""

    launcher: str = field(default="local", metadata={"choices": LAUNCHERS})  # the engine that runs the jobs
    folder: Path = field(default=Path("results/local/sweep"))  # state.json, job logs, submitit's files (shared filesystem)
    partition: str = ""  # SLURM partition ('' = the cluster's default)
    time_min: int = field(default=24 * 60, metadata={"range": "[1, inf)"})  # wall-clock limit of one job (minutes)
    gpus: int = field(default=1, metadata={"range": "[0, inf)"})  # GPUs per job (0 = CPU jobs)
    cpus: int = field(default=8, metadata={"range": "[1, inf)"})  # CPU cores per job (data loading, SVM, ...)
    mem_gb: int = field(default=32, metadata={"range": "[1, inf)"})  # memory per job (GiB)
    parallel: int = field(default=16, metadata={"range": "[1, inf)"})  # jobs queued or running at once
    retries: int = field(default=2, metadata={"range": "[0, 20]"})  # new attempts of a failed job (then: failed)
    poll_s: float = field(default=5.0, metadata={"range": "(0, inf)"})  # how often the driver looks at its jobs
    ray_address: str | None = None  # an existing Ray cluster ('auto', 'ray://host:10001'); None = start one here
    slurm_setup: tuple[str, ...] = ()  # shell lines run before each SLURM job (module load, conda activate)

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher {self.launcher}: not a launcher; use {', '.join(LAUNCHERS)}")
        check_ranges(self, "launch.")
        self.folder = Path(self.folder)
