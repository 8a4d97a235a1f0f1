"""Settings the data cannot serve fail in ``validate_run``, before any pretraining, cache or run folder."""

from __future__ import annotations

import logging

import pytest

from ssl3d.bench.protocols.fewshot_folds import FewShotError
from ssl3d.bench.run.runner import RunSpec, execute, validate_run
from ssl3d.core.errors import UserError
from ssl3d.datasets import DATASETS

from conftest import TINY_SYNTH


def _written(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("method, task, overrides, error, message", [
    # TINY_SYNTH has 4 classes: a 5-way setting cannot be drawn; parae-pointnet would pretrain first
    ("parae-pointnet", "synth-fewshot", {"fewshot.way": "5", "fewshot.shot": "2", "fewshot.queries": "2"},
     FewShotError, "5-way 2-shot with 2 queries per class needs 5 classes.*4 qualify"),
    # modelnet10's raw files are not under this data root: the run stops in validation, naming the dataset
    ("cmic", "synth-ibsr", {"ibsr.gallery_dataset": "modelnet10", "ibsr.shape_distances": "true"},
     UserError, "modelnet10"),
])
def test_what_the_data_cannot_serve_fails_before_pretraining(tmp_path, method, task, overrides, error, message):
    spec = RunSpec(method=method, task=task, overrides={**TINY_SYNTH, **overrides}, progress=False,
                   data_root=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    with pytest.raises(error, match=message):
        execute(spec)
    assert not (tmp_path / "results").exists()
    assert not [f for f in _written(tmp_path / "data") if "pretrain" in f or f.endswith(".h5")]


def test_a_fewshot_setting_that_fits_passes_validation(tmp_path):
    overrides = {**TINY_SYNTH, "fewshot.way": "4", "fewshot.shot": "6", "fewshot.queries": "3"}
    validate_run(RunSpec(method="parae-pointnet", task="synth-fewshot", overrides=overrides, progress=False,
                         data_root=str(tmp_path)))  # exactly 6 train and 3 test shapes per class: fits


def test_skipped_shapes_are_summarised_once_per_reason(tmp_path, caplog):
    ds = DATASETS.get("synth")("train", ("points",), root=tmp_path, progress=False, prepare=False)
    skipped = {f"chair_{i:04d}": f"/data/chair_{i:04d}.binvox: occupancy grid is empty" for i in range(7)}
    skipped["desk_0001"] = "/data/desk_0001.off: not an OFF file"
    with caplog.at_level(logging.WARNING, logger="ssl3d.datasets.base"):
        ds._warn_skipped(skipped)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("synth/train: skipped 7 shape(s), occupancy grid is empty: chair_0000, ")
    assert "chair_0004 and 2 more (`bench prepare synth` lists each file)" in lines[0]
    assert "chair_0005" not in lines[0]
    assert lines[1].startswith("synth/train: skipped 1 shape(s), not an OFF file: desk_0001 (")
