"""The scene-segmentation protocols (bench/protocols/semseg.py): metrics, modes, the Table 3 deltas."""

from __future__ import annotations

import numpy as np
import pytest

from ssl3d.bench.protocols import PROTOCOLS, EvalContext
from ssl3d.bench.protocols.semseg import SemSegConfig
from ssl3d.bench.protocols.semseg_train import scene_metrics
from ssl3d.bench.protocols.tasks import Task, get_task
from ssl3d.datasets import get_dataset
from ssl3d.methods import METHODS


def test_metrics_match_a_hand_computed_example() -> None:
    # two rooms, three classes; concatenated target [0 0 1 1 2 2 0], prediction [0 1 1 1 2 0 0]
    preds = [np.array([0, 1, 1, 1]), np.array([2, 0, 0])]
    targets = [np.array([0, 0, 1, 1]), np.array([2, 2, 0])]
    m = scene_metrics(preds, targets, ("a", "b", "c"))
    # IoU_a = TP 2 / (pred 3 + true 3 - 2) = 1/2; IoU_b = 2 / (3 + 2 - 2) = 2/3; IoU_c = 1 / (1 + 2 - 1) = 1/2
    assert m["per_class_iou"] == pytest.approx({"a": 50.0, "b": 200 / 3, "c": 50.0})
    assert m["miou"] == pytest.approx(100 * (0.5 + 2 / 3 + 0.5) / 3)
    assert m["point_acc"] == pytest.approx(100 * 5 / 7)
    assert m["absent_classes"] == []


def test_a_class_absent_from_truth_and_prediction_is_listed() -> None:
    m = scene_metrics([np.array([0, 1])], [np.array([0, 0])], ("a", "b", "c"))
    assert m["per_class_iou"] == pytest.approx({"a": 50.0, "b": 0.0, "c": 100.0})
    assert m["absent_classes"] == ["c"]
    with pytest.raises(ValueError, match="non-empty and of one shape"):
        scene_metrics([np.array([0])], [np.array([0, 1])], ("a",))


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ValueError, match="semseg.mode must be one of scratch, finetune, linear, decoder"):
        SemSegConfig(mode="frozen")
    with pytest.raises(ValueError, match="label_fraction"):
        SemSegConfig(label_fraction=0)
    protocol = PROTOCOLS.get("semseg").for_task(get_task("synth-scenes-semseg"), {"train_areas": "1,2"})
    assert protocol.config.train_areas == (1, 2) and protocol.config.epochs == 4


def test_supports_only_scene_datasets() -> None:
    protocol = PROTOCOLS.get("semseg")()
    assert protocol.supports(METHODS.get("parae-dgcnn"), get_task("synth-scenes-semseg")) is None
    shapes = Task("synth-semseg", "synth", "semseg", ("points",))
    assert "synth is not a scene dataset" in protocol.supports(METHODS.get("parae-dgcnn"), shapes)
    assert "pretrains on points, views; synth-scenes provides point_labels, points" in protocol.supports(
        METHODS.get("cmcv"), get_task("synth-scenes-semseg"))
    assert "gives per-point features for nothing" in protocol.supports(METHODS.get("voxel-vae"),
                                                                        get_task("synth-scenes-semseg"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cls = get_dataset("synth-scenes")
    cfg = cls.Config(rooms_per_area=1, density=8, block_points=16, channels=3, min_block_points=8)
    root = tmp_path_factory.mktemp("scenes")
    train = cls("train", ("points", "point_labels"), cfg, root, progress=False)
    test = cls("test", ("points", "point_labels"), cfg, root, progress=False)
    method = METHODS.get("parae-pointnet").from_preset("quick", {"global_dim": "32"})
    method.model = method.build_model()  # stands in for pretrained weights
    return method, train, test


def test_linear_probe_scores_whole_rooms_and_repeats(tiny) -> None:
    method, train, test = tiny
    protocol = PROTOCOLS.get("semseg")(SemSegConfig(mode="linear", epochs=1, batch_size=8, train_areas=(1,)))
    ctx = EvalContext(seed=3, progress=False)
    out = protocol.evaluate(method, train, test, "points", ctx)
    assert 0 <= out.metrics["miou"] <= 100 and 0 <= out.metrics["point_acc"] <= 100
    assert out.details["n_test_points"] == len(test.room_points(0)[1])  # every point of the room is scored
    assert set(out.details["per_class_iou"]) == set(train.class_names)
    assert protocol.evaluate(method, train, test, "points", ctx).metrics == out.metrics  # seeded


def test_areas_protocol_reports_finetune_minus_scratch(tiny) -> None:
    method, train, test = tiny
    protocol = PROTOCOLS.get("semseg-areas")(SemSegConfig(epochs=1, batch_size=8, train_areas=(1, 2)))
    m = protocol.evaluate(method, train, test, "points", EvalContext(seed=0, progress=False)).metrics
    for area in (1, 2):
        for key in ("miou", "point_acc"):
            assert m[f"delta_{key}:area{area}"] == pytest.approx(m[f"{key}:area{area}:finetune"]
                                                                 - m[f"{key}:area{area}:scratch"])
    assert m["delta_miou:mean"] == pytest.approx((m["delta_miou:area1"] + m["delta_miou:area2"]) / 2)


def test_bad_areas_and_channel_mismatch_are_named(tiny) -> None:
    method, train, test = tiny
    ctx = EvalContext(progress=False)
    with pytest.raises(ValueError, match=r"train_areas \[5\] are not training areas"):
        PROTOCOLS.get("semseg")(SemSegConfig(train_areas=(5,))).evaluate(method, train, test, "points", ctx)
    wide = METHODS.get("parae-pointnet").from_preset("quick", {"in_channels": "9"})
    with pytest.raises(ValueError, match="--set method.in_channels=3"):
        PROTOCOLS.get("semseg")(SemSegConfig(mode="scratch")).evaluate(wide, train, test, "points", ctx)


def test_table3_shows_deltas_with_ci_next_to_the_paper(tmp_path) -> None:
    import json

    from ssl3d.bench.report.scene_table import table3_markdown

    for seed, (d1, d2) in enumerate([(1.0, 4.0), (3.0, 6.0)]):
        metrics = {"miou:area1:scratch": 10.0, "miou:area1:finetune": 10.0 + d1, "delta_miou:area1": d1,
                   "delta_point_acc:area1": 2 * d1, "miou:area2:scratch": 5.0, "miou:area2:finetune": 5.0 + d2,
                   "delta_miou:area2": d2, "delta_point_acc:area2": 0.0}
        metrics["delta_miou:mean"] = (d1 + d2) / 2
        metrics["delta_point_acc:mean"] = d1
        result = {"run_id": f"r{seed}", "task": "synth-scenes-semseg-areas", "method": "parae-dgcnn", "preset": "quick",
                  "settings": "", "seed": seed, "metrics": metrics, "timings": {"total_s": 60.0 * (seed + 1)},
                  "protocol": {"name": "semseg-areas", "details": {"test_area": 5}}}
        (tmp_path / "runs" / f"r{seed}").mkdir(parents=True)
        (tmp_path / "runs" / f"r{seed}" / "result.json").write_text(json.dumps(result))
    text = table3_markdown(tmp_path)
    # area 1: deltas 1 and 3 -> mean 2, CI = t(0.975, 1) * std(ddof=1) / sqrt(2) = 12.706 * 1.4142 / 1.4142
    assert "| Area 1 | 10.00 ± 0.00 | 12.00 ± 12.71 | +2.00 ± 12.71 | +4.00 ± 25.41 | +9.9 | +8.9 |" in text
    assert "| Area 2 |" in text and "+3.9 | +1.1 |" in text  # the paper's Area 2 deltas
    assert "wall time 3.0 min (1.0, 2.0 min per seed" in text and "n = 2" in text
