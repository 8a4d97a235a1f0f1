"""The PyG method example (docs/examples/ssl3d_pyg_method) installed as a plugin, its own test, and a bench run.

Mirrors tests/test_plugin.py for the rotnet example: the example is registered
only through a generated ``*.dist-info/entry_points.txt`` on ``sys.path`` (what
``pip install`` leaves behind), its test file (``check_method``) runs under
pytest as its author runs it, and ``bench run`` pretrains and evaluates it.
Its encoder is made of torch_geometric layers, so this also checks that they
run without PyG's compiled extensions (pyg-lib, torch-scatter, torch-cluster).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import BENCH, REPO_ROOT, install_example_plugin, run_example_contract_test, subprocess_env, tiny_set_args

EXAMPLE = REPO_ROOT / "docs" / "examples" / "ssl3d_pyg_method"


@pytest.fixture
def plugin_path(tmp_path) -> Path:
    """The example installed as a plugin (see conftest.install_example_plugin)."""
    return install_example_plugin(EXAMPLE, tmp_path)


def _bench(args: list[str], plugin: Path) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + args, env=subprocess_env([plugin]), capture_output=True, text=True, timeout=600)


def test_pyg_plugin_lists_and_runs_the_quick_preset(plugin_path, tmp_path):
    listed = _bench(["list", "--json"], plugin_path)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)["methods"]["pyg-contrast"]
    assert info["pretrain"] == ["points"]
    run = _bench(["run", "--method", "pyg-contrast", "--task", "synth-svm", "--preset", "quick", "--no-progress",
                  "--results-dir", str(tmp_path / "res"), "--set", "train.epochs=2",
                  "--set", "method.pretrain_points=128", *tiny_set_args()], plugin_path)  # views are random subsets
    assert run.returncode == 0, run.stderr
    assert "pyg-contrast on synth-svm (points" in run.stdout
    (result,) = (tmp_path / "res" / "runs").glob("*/result.json")
    saved = json.loads(result.read_text())
    assert saved["pretraining"]["epochs"] == 2 and saved["pretraining"]["steps"] > 0
    assert saved["preset"] == "quick" and saved["config"]["method"]["widths"] == [32, 32, 64]
    assert saved["config"]["method"]["pretrain_points"] == 128 and saved["config"]["data"]["n_points"] == 256
    assert 0 <= saved["metrics"]["overall_acc"] <= 100


def test_the_pyg_example_passes_its_own_contract_test(plugin_path):
    run_example_contract_test(EXAMPLE, plugin_path)
