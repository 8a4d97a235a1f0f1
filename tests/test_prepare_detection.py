"""`bench prepare NAME --from PATH` with another dataset's files says which dataset they are."""

from __future__ import annotations

import numpy as np
import pytest

from test_formats_modelnet import _normal_resampled_tree
from test_prepare import zip_folder
from test_real_datasets import make_modelnet40, make_modelnet_h5

from ssl3d.bench.cli import main


def _published_h5_folder(tmp_path):
    """PointNet's modelnet40_ply_hdf5_2048 as released: h5 files, file lists, shape names, id2file json."""
    base, _ = make_modelnet_h5(tmp_path / "download", np.random.default_rng(0))
    for split in ("train", "test"):
        (base / f"ply_data_{split}_0_id2file.json").write_text('["airplane/airplane_0001.ply"]')
    return base


def test_off_dataset_given_the_h5_folder_points_to_modelnet40_h5(tmp_path, capsys):
    h5_folder = _published_h5_folder(tmp_path)
    data = tmp_path / "data"
    assert main(["prepare", "modelnet40", "--from", str(h5_folder), "--data-root", str(data)]) == 2
    err = capsys.readouterr().err
    assert "*/train/*.off" in err  # still says what modelnet40 itself lacks
    assert f"matches the layout of modelnet40-h5 (modelnet40_ply_hdf5_2048): run `bench prepare modelnet40-h5 --from {h5_folder}`" in err
    assert not (data / "modelnet40" / "raw" / "ModelNet40.link").exists()
    # the suggestion works as given
    assert main(["prepare", "modelnet40-h5", "--from", str(h5_folder), "--data-root", str(data),
                 "--set", "data.n_points=32", "--set", "data.workers=1"]) == 0


def test_off_dataset_given_the_h5_zip_points_to_modelnet40_h5(tmp_path, capsys):
    archive = zip_folder(_published_h5_folder(tmp_path), tmp_path / "modelnet40_ply_hdf5_2048.zip")
    data = tmp_path / "data"
    assert main(["prepare", "modelnet40", "--from", str(archive), "--data-root", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"run `bench prepare modelnet40-h5 --from {archive}`" in err
    assert not (data / "modelnet40").exists()  # nothing left behind, not even the empty folders it made


@pytest.mark.parametrize("asked", ["modelnet40", "modelnet40-h5"])
def test_normal_resampled_folder_points_to_modelnet40_resampled(tmp_path, capsys, asked):
    folder = tmp_path / "modelnet40_normal_resampled"
    folder.mkdir()
    _normal_resampled_tree(folder)
    assert main(["prepare", asked, "--from", str(folder), "--data-root", str(tmp_path / "data")]) == 2
    assert f"run `bench prepare modelnet40-resampled --from {folder}`" in capsys.readouterr().err


def test_unrecognised_folder_gets_no_suggestion(tmp_path, capsys):
    off_folder = make_modelnet40(tmp_path / "src")
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "modelnet40-h5", "--from", str(tmp_path / "empty"), "--data-root", str(tmp_path / "d")]) == 2
    assert "bench prepare" not in capsys.readouterr().err.split("lacks")[1]
    # and the reverse direction: OFF meshes given to modelnet40-h5 point to modelnet40
    assert main(["prepare", "modelnet40-h5", "--from", str(off_folder), "--data-root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"run `bench prepare modelnet40 --from {off_folder}`" in err
    assert "modelnet10" not in err  # same layout, but the folder is named ModelNet40
