"""The brief's headline command, `bench run --method switchvae --task modelnet40-svm`, end to end.

The data are tiny files in the official archives' layouts: ModelNet40.zip (ModelNet40/<class>/{train,test}/
<class>_NNNN.off, prepared with `bench prepare modelnet40 --from`) and PointNet's points-only h5 release.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ssl3d.bench.cli import main

from test_real_datasets import link_raw, make_modelnet40, make_modelnet_h5

TINY = ["--set", "data.categories=chair,toilet", "--set", "data.n_points=64", "--set", "train.batch_size=2",
        "--set", "train.max_steps_per_epoch=1", "--no-progress"]


def _official_zip(tmp_path: Path) -> Path:
    """ModelNet40.zip holding the tiny tree under its top folder ModelNet40/, as the official archive does."""
    tree = make_modelnet40(tmp_path / "src")
    archive = tmp_path / "ModelNet40.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*.off")):
            zf.write(path, path.relative_to(tree.parent).as_posix())
    return archive


def _result(results: Path) -> dict:
    (path,) = results.glob("runs/*/result.json")
    return json.loads(path.read_text())


def test_the_headline_command_runs_on_the_off_release(tmp_path, capsys):
    root, results = tmp_path / "data", tmp_path / "results"
    assert main(["prepare", "modelnet40", "--from", str(_official_zip(tmp_path)), "--data-root", str(root),
                 "--modalities", "voxels", "--set", "data.categories=chair,toilet", "--no-progress"]) == 0
    assert main(["run", "--method", "switchvae", "--task", "modelnet40-svm", "--data-root", str(root),
                 "--results-dir", str(results), *TINY]) == 0
    result = _result(results)
    assert (result["task"], result["modality"], result["pretrain_data"]) == ("modelnet40-svm", "voxels", "modelnet40")
    assert result["protocol"]["details"]["n_test"] == 2 and 0 <= result["metrics"]["overall_acc"] <= 100
    print(capsys.readouterr().out)  # the command's output on the tiny tree, for the record (pytest -s)


def test_a_points_only_release_points_to_the_one_that_gives_voxels(tmp_path, capsys):
    root = tmp_path / "data"
    make_modelnet_h5(link_raw(root, "modelnet40-h5"), np.random.default_rng(0))
    code = main(["run", "--method", "switchvae", "--task", "modelnet40-svm", "--data-root", str(root),
                 "--results-dir", str(tmp_path / "results"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "modelnet40-h5 does not give" in err and "bench prepare modelnet40 --from PATH" in err
    assert not (tmp_path / "results").exists()
    # a point method reads the same prepared h5 release, as modelnet40-svm always did (rows keep their data key)
    too_many = main(["run", "--method", "random-pointnet", "--task", "modelnet40-svm", "--data-root", str(root),
                     "--results-dir", str(tmp_path / "results"), "--no-progress"])
    assert too_many == 2 and "holds 32 points per cloud; data.n_points=1024" in capsys.readouterr().err
    assert main(["run", "--method", "random-pointnet", "--task", "modelnet40-svm", "--data-root", str(root),
                 "--results-dir", str(tmp_path / "results"), "--set", "data.n_points=32", "--no-progress"]) == 0
    result = _result(tmp_path / "results")
    assert result["pretrain_data"] == "modelnet40-h5" and result["config"]["data"]["point_order"] == "first"


@pytest.mark.parametrize("method", ["switchvae", "random-pointnet"])
def test_nothing_prepared_says_where_the_official_archive_comes_from(tmp_path, capsys, method):
    code = main(["run", "--method", method, "--task", "modelnet40-svm", "--data-root", str(tmp_path / "data"),
                 "--results-dir", str(tmp_path / "results"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "none is prepared" in err
    assert "--from PATH" in err and ("ModelNet40.zip" in err or "modelnet40_ply_hdf5_2048" in err)
