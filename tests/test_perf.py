"""`bench perf` measures real throughput and memory (no timing assertions: only that it measures)."""

from __future__ import annotations

from ssl3d.bench.perf import fake_batch, measure_data_pipeline, measure_method, run_perf
from ssl3d.methods import get_method


def test_measure_method_reports_throughput_and_memory():
    row = measure_method("random-pointnet", "quick", "cpu", steps=1, batch_size=2)
    assert row["method"] == "random-pointnet" and row["batch_size"] == 2
    assert row["embed_points_samples_per_s"] > 0 and row["peak_memory_mb"] > 0


def test_fake_batch_follows_the_method_data_settings():
    method = get_method("random-pointnet").from_preset("quick")
    batch = fake_batch(method, 3, small=True)
    assert batch["points"].shape == (3, 128, 3) and batch["voxels"].shape == (3, 32, 32, 32)
    assert batch["views"].shape[:3] == (3, 12, 1) and batch["image"].shape == (3, 3, 32, 32)


def test_data_pipeline_and_report_files(tmp_path):
    rows = measure_data_pipeline(n_shapes=2)
    assert [r["modality"] for r in rows] == ["points", "voxels", "views", "image"]
    assert all(r["shapes_per_s"] > 0 for r in rows)
    path = run_perf("random-pointnet", ("quick",), "cpu", 1, 2, tmp_path, data=False)
    assert path.exists() and path.with_suffix(".csv").exists()
    assert "random-pointnet" in path.read_text()
