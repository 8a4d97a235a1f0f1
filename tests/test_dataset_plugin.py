"""The documented dataset example (docs/adding-a-dataset.md), installed as a plugin and prepared.

The example (docs/examples/ssl3d_toy_dataset) is registered only through a
``*.dist-info/entry_points.txt`` on ``sys.path``, what ``pip install`` of a
third-party distribution leaves behind: adding a dataset touches its module and
its pyproject.toml, nothing in ssl3d-bench.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BENCH, REPO_ROOT, install_example_plugin, subprocess_env

EXAMPLE = REPO_ROOT / "docs" / "examples" / "ssl3d_toy_dataset"
GUIDE = REPO_ROOT / "docs" / "adding-a-dataset.md"
#: files the guide's code blocks may quote (the example, and the built-in code it cites)
QUOTED = [EXAMPLE / "ssl3d_toy_dataset.py", EXAMPLE / "pyproject.toml", REPO_ROOT / "datasets" / "modelnet.py",
          REPO_ROOT / "datasets" / "modalities" / "builtin.py"]


@pytest.fixture
def plugin_path(tmp_path) -> Path:
    """The example installed as a plugin (see conftest.install_example_plugin)."""
    return install_example_plugin(EXAMPLE, tmp_path)


def test_guide_code_blocks_are_quoted_from_working_files():
    sources = "\n".join(p.read_text() for p in QUOTED)
    blocks = re.findall(r"```(?:python|toml)\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        for line in block.splitlines():
            if line.strip() and line.strip() != "...":
                assert line in sources, f"docs/adding-a-dataset.md quotes a line found in no example file: {line!r}"


def test_example_dataset_lists_and_prepares(plugin_path, tmp_path):
    env = subprocess_env([plugin_path])
    listed = subprocess.run(BENCH + ["list", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "voxels" in json.loads(listed.stdout)["datasets"]["toy-solids"]["modalities"]
    settings = ["data.n_points=64", "data.voxel_resolution=16", "data.train_per_class=2", "data.test_per_class=1",
                "data.workers=1"]
    prepared = subprocess.run(
        BENCH + ["prepare", "toy-solids", "--modalities", "points", "voxels", "--data-root", str(tmp_path / "data"),
                 "--no-progress", *[a for s in settings for a in ("--set", s)]],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert prepared.returncode == 0, prepared.stderr
    assert "toy-solids/train: 8 shapes" in prepared.stdout and "toy-solids/test: 4 shapes" in prepared.stdout
    assert "per class: box 2, cylinder 2, cone 2, sphere 2" in prepared.stdout
    assert len(list((tmp_path / "data" / "toy-solids" / "processed").glob("*.h5"))) == 4
