"""The ``bench suite`` flags of cluster sweeps (``--launcher`` and its resources), kept out of ``cli.py``.

Each flag is a field of :class:`~ssl3d.bench.sweep.launch_config.LaunchConfig`, whose defaults and ranges it shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ssl3d.bench.sweep.launch_config import LAUNCHERS, LaunchConfig


def add_launch_flags(suite: argparse.ArgumentParser, int_in: Callable[[str, str], Callable[[str], int]]) -> None:
    """``bench suite --launcher ...``: the fields of :class:`~ssl3d.bench.sweep.launch_config.LaunchConfig`."""
    d = LaunchConfig()
    group = suite.add_argument_group("cluster sweeps (docs/scaling.md)")
    group.add_argument("--launcher", choices=LAUNCHERS, default=None,
                       help="run the suite as jobs: local (submitit, this machine), slurm (submitit) or ray")
    group.add_argument("--status", action="store_true", help="show the sweep's pending/running/done/failed jobs")
    group.add_argument("--sweep-dir", default=None, help="sweep state and job logs (default <results-dir>/sweep)")
    group.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start one here)")
    group.add_argument("--partition", default=d.partition, help="SLURM partition (default: the cluster's)")
    group.add_argument("--slurm-setup", nargs="+", default=[], metavar="LINE", help="shell lines run before each SLURM job")
    for flag, name, text in (("--time-min", "time_min", "wall-clock limit per job, minutes"),
                             ("--gpus", "gpus", "GPUs per job"), ("--cpus", "cpus", "CPU cores per job"),
                             ("--mem-gb", "mem_gb", "memory per job, GiB"), ("--parallel", "parallel",
                             "jobs queued or running at once"), ("--retries", "retries", "new attempts of a failed job")):
        interval = LaunchConfig.__dataclass_fields__[name].metadata["range"]
        group.add_argument(flag, type=int_in(flag, interval), default=getattr(d, name),
                           help=f"{text} (default {getattr(d, name)})")


def launch_config(args: argparse.Namespace, folder: Path) -> LaunchConfig:
    """The :class:`LaunchConfig` of parsed ``bench suite`` flags; ``folder`` holds the sweep's state and logs."""
    return LaunchConfig(launcher=args.launcher, folder=folder.resolve(), partition=args.partition,
                        time_min=args.time_min, gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem_gb,
                        parallel=args.parallel, retries=args.retries, ray_address=args.ray_address,
                        slurm_setup=tuple(args.slurm_setup))
