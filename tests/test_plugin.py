"""The documented plugin example, installed the way a user installs it, its own test, and pretraining resume.

The example method (docs/examples/ssl3d_rotnet) is registered only through a
``*.dist-info/entry_points.txt`` on ``sys.path``, exactly what ``pip install``
of a third-party distribution leaves behind. Its test file (the testing kit's
``check_method``) runs under pytest as the plugin's author runs it. It has a
real pretraining loop, so it also serves the SIGKILL-and-resume test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BENCH, REPO_ROOT, install_example_plugin, run_example_contract_test, subprocess_env, tiny_set_args

EXAMPLE = REPO_ROOT / "docs" / "examples" / "ssl3d_rotnet"


@pytest.fixture
def plugin_path(tmp_path) -> Path:
    """The example installed as a plugin (see conftest.install_example_plugin)."""
    return install_example_plugin(EXAMPLE, tmp_path)


def _bench(args: list[str], plugin: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + args, env=subprocess_env([plugin]), capture_output=True, text=True,
                          timeout=600, **kw)


def test_plugin_appears_in_list_and_runs(plugin_path, tmp_path):
    listed = _bench(["list", "--json"], plugin_path)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)
    assert info["methods"]["rotnet"]["pretrain"] == ["points"]
    run = _bench(["run", "--method", "rotnet", "--task", "synth-svm", "--no-progress", "--results-dir",
                  str(tmp_path / "res"), "--set", "train.epochs=2", "--set", "method.global_dim=32", *tiny_set_args()],
                 plugin_path)
    assert run.returncode == 0, run.stderr
    assert "rotnet on synth-svm (points" in run.stdout
    (result,) = (tmp_path / "res" / "runs").glob("*/result.json")
    saved = json.loads(result.read_text())
    assert saved["pretraining"]["epochs"] == 2 and saved["pretraining"]["steps"] > 0
    # each epoch's own seconds (the cost table's idle estimate): they add up to the pretraining's total
    times = saved["pretraining"]["epoch_seconds"]
    assert len(times) == 2 and min(times) > 0 and sum(times) == pytest.approx(saved["pretraining"]["seconds"], abs=0.01)


MISFITS = """
from ssl3d.methods import Method


def make_method():
    return None


class Impostor(Method):
    name = "random-pointnet"
    pretrain_modalities = frozenset({"voxels"})
    embed_modalities = frozenset({"voxels"})


class Misnamed(Method):
    name = "something-else"
"""


def test_the_plugin_example_passes_its_own_contract_test(plugin_path):
    run_example_contract_test(EXAMPLE, plugin_path)


def test_broken_plugins_are_reported_and_everything_else_still_lists(plugin_path):
    (plugin_path / "ssl3d_misfits.py").write_text(MISFITS)
    dist = plugin_path / "ssl3d_misfits-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ssl3d-misfits\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ssl3d.methods]\nnotamethod = ssl3d_misfits:make_method\nrandom-pointnet = ssl3d_misfits:Impostor\n"
        "misnamed = ssl3d_misfits:Misnamed\n"
    )
    listed = _bench(["list"], plugin_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    assert ("entry point 'notamethod' (ssl3d_misfits:make_method) loads function ssl3d_misfits.make_method, "
            "not a Method subclass") in listed.stderr
    assert ("entry point 'random-pointnet' (ssl3d_misfits:Impostor) reuses the name of the built-in method "
            "'random-pointnet'") in listed.stderr
    assert ("entry point 'misnamed' (ssl3d_misfits:Misnamed) loads a method named 'something-else'") in listed.stderr
    methods = {line.split()[0]: line for line in listed.stdout.split("Tasks:")[0].splitlines()[1:]}
    assert {"rotnet", "random-pointnet", "switchvae"} <= set(methods)  # the good plugin and the built-ins
    assert not {"notamethod", "misnamed", "something-else"} & set(methods)
    assert methods["random-pointnet"].endswith("embeds points")  # the built-in, not the impostor


def test_sigkill_mid_pretraining_resumes_from_last_checkpoint(plugin_path, tmp_path):
    args = ["run", "--method", "rotnet", "--task", "synth-svm", "--no-progress", "--set", "train.epochs=40",
            "--set", "train.batch_size=8", "--set", "method.global_dim=32", *tiny_set_args()]
    data_a, data_b = tmp_path / "data_a", tmp_path / "data_b"
    env_a = {**subprocess_env([plugin_path]), "SSL3D_DATA": str(data_a)}
    proc = subprocess.Popen(BENCH + args + ["--results-dir", str(tmp_path / "ra")], env=env_a,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((data_a / "pretrain" / "rotnet").glob("*/last.pt")) if (data_a / "pretrain").exists() else []
        if found:
            ckpt = found[0]
            time.sleep(0.5)  # let it get into a later epoch
            break
        time.sleep(0.02)
    assert ckpt is not None and proc.poll() is None, "pretraining finished or failed before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parent / "final.pt").exists()
    assert not list((tmp_path / "ra").glob("runs/*/result.json"))

    resumed = subprocess.run(BENCH + args + ["--results-dir", str(tmp_path / "ra")], env=env_a,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    epoch = int(resumed.stderr.split("after epoch ")[1].split("/")[0])
    assert 1 <= epoch < 40

    # an uninterrupted run from scratch ends with the same weights, hence the same metrics
    env_b = {**subprocess_env([plugin_path]), "SSL3D_DATA": str(data_b)}
    fresh = subprocess.run(BENCH + args + ["--results-dir", str(tmp_path / "rb")], env=env_b,
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    (ra,) = (tmp_path / "ra").glob("runs/*/result.json")
    (rb,) = (tmp_path / "rb").glob("runs/*/result.json")
    a, b = json.loads(ra.read_text()), json.loads(rb.read_text())
    assert a["metrics"] == b["metrics"]
    assert a["pretraining"]["final_loss"] == pytest.approx(b["pretraining"]["final_loss"], rel=1e-6)
