"""`bench perf` measures real throughput and memory (no timing assertions: only that it measures).

Its fake batches (ssl3d.methods.testing.fake_batch) are tested in tests/test_testing_kit.py.
"""

from __future__ import annotations

from ssl3d.bench.run.perf import measure_data_pipeline, measure_method, run_perf


def test_measure_method_reports_throughput_and_memory():
    row = measure_method("random-pointnet", "quick", "cpu", steps=1, batch_size=2)
    assert row["method"] == "random-pointnet" and row["batch_size"] == 2
    assert row["embed_points_samples_per_s"] > 0 and row["peak_memory_mb"] > 0


def test_data_pipeline_and_report_files(tmp_path):
    rows = measure_data_pipeline(n_shapes=2)
    assert [r["modality"] for r in rows] == ["points", "voxels", "views", "image"]
    assert all(r["shapes_per_s"] > 0 for r in rows)
    path = run_perf("random-pointnet", ("quick",), "cpu", 1, 2, tmp_path, data=False)
    assert path.exists() and path.with_suffix(".csv").exists()
    assert "random-pointnet" in path.read_text()
