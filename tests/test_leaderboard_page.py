"""The real leaderboard page: kernel-aware comparison with the papers, curves and the untrained table shown."""

from __future__ import annotations

import pandas as pd

from ssl3d.bench.report.leaderboard import compare_with_reported, curves_markdown


def _summary(settings: str) -> pd.DataFrame:
    return pd.DataFrame([{"task": "modelnet10-svm", "method": "switchvae", "modality": "voxels", "preset": "cpu",
                          "settings": settings, "pretrain_data": "", "metric": "overall_acc", "mean": 88.0,
                          "ci95": 1.0, "n": 3}])


REPORTED = pd.DataFrame([
    {"paper": "switchvae", "table": "Table 2", "method": "switchvae", "task": "modelnet10-svm", "modality": "voxels",
     "setting": "pretrained on modelnet40; svm=rbf", "metric": "overall_acc", "value": 90.07},
    {"paper": "x", "table": "Table 9", "method": "switchvae", "task": "modelnet10-svm", "modality": "voxels",
     "setting": "", "metric": "overall_acc", "value": 80.0},
])


def test_rbf_numbers_are_compared_with_rbf_runs_only():
    rbf = compare_with_reported(_summary("svm.gamma=auto svm.kernel=rbf"), REPORTED)
    linear = compare_with_reported(_summary(""), REPORTED)
    assert rbf["reported"].tolist() == [90.07] and linear["reported"].tolist() == [80.0]
    assert rbf.iloc[0]["difference"] == 88.0 - 90.07
    assert "ours: pretrained on modelnet10 train, preset cpu" in rbf.iloc[0]["setting_differences"]
    assert "paper: pretrained on modelnet40" in rbf.iloc[0]["setting_differences"]


def test_curve_plots_beside_a_leaderboard_are_linked(tmp_path):
    assert curves_markdown(tmp_path) == ""
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "voxel-vae-modelnet10-svm-voxels-val.png").write_bytes(b"png")
    assert "](curves/voxel-vae-modelnet10-svm-voxels-val.png)" in curves_markdown(tmp_path)


def test_settings_agree_on_fraction_gallery_and_mode():
    from ssl3d.bench.report.leaderboard import settings_agree

    assert settings_agree("svm=linear; label_fraction=0.5", "svm.label_fraction=0.5")
    assert not settings_agree("svm=linear; label_fraction=0.5", "")
    assert not settings_agree("svm=linear", "svm.label_fraction=0.2")
    assert settings_agree("unseen shapes (ShapeNet)", "ibsr.gallery_dataset=r2n2")
    assert not settings_agree("", "ibsr.gallery_dataset=r2n2")
    assert settings_agree("finetune", "classification.mode=finetune", "classification")
    assert not settings_agree("finetune", "", "classification")  # the default mode is the linear probe
    assert settings_agree("from scratch", "classification.mode=scratch", "classification")
    assert settings_agree("frozen", "", "segmentation")  # the segmentation protocol's default
