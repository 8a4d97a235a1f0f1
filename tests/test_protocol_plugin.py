"""The documented protocol example (docs/adding-a-protocol.md), installed the way a user installs it.

The example (docs/examples/ssl3d_knn_protocol) adds a protocol and a task through
the entry points of its ``pyproject.toml`` only; the test writes exactly those
entry points into a ``*.dist-info/entry_points.txt`` on ``sys.path``, what
``pip install`` of the distribution leaves behind, and runs the commands the
page shows. It also checks that the page's code blocks are the example's code.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BENCH, REPO_ROOT, install_example_plugin, subprocess_env, tiny_set_args

EXAMPLE = REPO_ROOT / "docs" / "examples" / "ssl3d_knn_protocol"
PAGE = REPO_ROOT / "docs" / "adding-a-protocol.md"


@pytest.fixture
def plugin_path(tmp_path) -> Path:
    """The example installed as a plugin (see conftest.install_example_plugin)."""
    return install_example_plugin(EXAMPLE, tmp_path)


def _bench(args: list[str], plugin: Path) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + args, env=subprocess_env([plugin]), capture_output=True, text=True, timeout=600)


def test_the_example_touches_two_files():
    assert sorted(p.name for p in EXAMPLE.iterdir() if p.name != "__pycache__") == [
        "pyproject.toml", "ssl3d_knn_protocol.py"]


def test_the_pages_code_is_the_examples_code():
    module = (EXAMPLE / "ssl3d_knn_protocol.py").read_text()
    project = (EXAMPLE / "pyproject.toml").read_text()
    blocks = re.findall(r"```(python|toml)\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert {language for language, _ in blocks} == {"python", "toml"}
    for language, block in blocks:
        assert block in (module if language == "python" else project), block


def test_protocol_and_task_are_listed_with_the_methods_they_run(plugin_path):
    listed = _bench(["list", "--json"], plugin_path)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)
    assert "knn" in info["protocols"] and not info["plugin_errors"]
    task = info["tasks"]["synth-knn"]
    assert task["protocol"] == "knn" and task["supported"]["random-pointnet"] == ["points"]
    assert task["unsupported"] == {}  # every built-in method embeds one of points, voxels, views, image
    plan = _bench(["suite", "--dry-run", "--tasks", "synth-knn", "--methods", "random-*", "--seeds", "0"], plugin_path)
    assert plan.returncode == 0, plan.stderr
    assert "would run random-pointnet on synth-knn (points) seed 0" in plan.stdout


def test_a_method_runs_on_the_plugin_task(plugin_path, tmp_path):
    run = _bench(["run", "--method", "random-pointnet", "--task", "synth-knn", "--set", "knn.k=3", "--no-progress",
                  "--results-dir", str(tmp_path / "res"), *tiny_set_args()], plugin_path)
    assert run.returncode == 0, run.stderr
    assert "random-pointnet on synth-knn (points" in run.stdout and "knn_acc=" in run.stdout
    (result,) = (tmp_path / "res" / "runs").glob("*/result.json")
    saved = json.loads(result.read_text())
    assert saved["protocol"]["name"] == "knn" and saved["protocol"]["details"]["k"] == 3
    assert 0 <= saved["metrics"]["knn_acc"] <= 100
