"""Shared fixtures: isolated data/results folders, small torch thread pools, tiny synth settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Small dataset settings for end-to-end tests: 4 classes, 6 + 3 shapes each, 256 points.
TINY_SYNTH = {
    "data.n_classes": "4", "data.train_per_class": "6", "data.test_per_class": "3",
    "data.n_points": "256", "data.workers": "1",
}


def tiny_set_args() -> list[str]:
    """``--set`` arguments of TINY_SYNTH for a ``bench`` command line."""
    return [arg for key, value in TINY_SYNTH.items() for arg in ("--set", f"{key}={value}")]


def optimisation_steps(method, batch: dict, optimizer: torch.optim.Optimizer, steps: int) -> dict:
    """``steps`` optimiser steps of ``method.training_step`` on one batch, in train mode, each step seeded
    with its index (the same random draws on every run); returns the last step's terms."""
    for step in range(steps):
        method.model.train()
        torch.manual_seed(step)
        terms = method.training_step(batch, step)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    return terms


def torch_threads() -> int:
    """Two threads at most, fewer where pytest-xdist's workers share the cores (no oversubscription)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own data and results folders; nothing touches ~/.cache."""
    data = tmp_path_factory.mktemp("ssl3d-data")
    results = tmp_path_factory.mktemp("ssl3d-results")
    monkeypatch.setenv("SSL3D_DATA", str(data))
    monkeypatch.setenv("SSL3D_RESULTS", str(results))
    torch.set_num_threads(torch_threads())
    yield


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a clean skip when this checkout has no shared folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present in the development workspace)")
    return SHARED_DATA


def subprocess_env(extra_paths: list[Path] | None = None) -> dict[str, str]:
    """Environment for `bench` subprocesses: current env + extra PYTHONPATH entries, no progress noise."""
    env = dict(os.environ)
    paths = [str(p) for p in (extra_paths or [])]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


BENCH = [sys.executable, "-m", "ssl3d.bench.cli"]


def install_example_plugin(example: Path, tmp_path: Path) -> Path:
    """A folder that, on ``sys.path``, makes ``example`` (a folder of docs/examples/) an installed plugin.

    It holds the example's module and a ``*.dist-info`` whose ``entry_points.txt``
    is generated from the example's own ``pyproject.toml``, so the tests exercise
    exactly the entry points the docs tell plugin authors to write.
    """
    import tomllib

    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    site.mkdir()
    module = example / f"{example.name}.py"
    (site / module.name).write_text(module.read_text())
    dist = site / f"{example.name}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
              for group, points in project["entry-points"].items()]
    (dist / "entry_points.txt").write_text("\n".join(groups))
    return site


def run_example_contract_test(example: Path, site: Path) -> None:
    """Run the example plugin's own test file (``test_<example>.py``) with pytest in ``site``; it must pass."""
    import subprocess

    name = f"test_{example.name}.py"
    (site / name).write_text((example / name).read_text())
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name], cwd=site,
                         env=subprocess_env([site]), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def fake_distribution(folder: Path, name: str, entry_points: str) -> None:
    """An installed-looking distribution ``name`` in ``folder`` (put it on ``sys.path``) with ``entry_points.txt``."""
    dist = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
