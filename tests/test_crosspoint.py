"""CrossPoint (methods/crosspoint.py): the contract, the networks of the released code, the views it reads,
and an end-to-end `bench run`."""

from __future__ import annotations

import json

import pytest
import torch

from ssl3d.core.config import ConfigError
from ssl3d.methods import get_method
from ssl3d.methods.crosspoint import CrossPoint
from ssl3d.methods.testing import check_method, fake_batch

from conftest import tiny_set_args


def built(preset: str = "quick", **overrides) -> CrossPoint:
    method = CrossPoint.from_preset(preset, overrides)
    torch.manual_seed(0)
    method.model = method.build_model()
    return method


def test_crosspoint_meets_the_method_contract():
    assert get_method("crosspoint") is CrossPoint and not CrossPoint.reads_labels
    check_method(CrossPoint)


def test_paper_preset_is_the_released_training_command():
    cfg = CrossPoint.from_preset("paper").config
    t = cfg.train
    assert (t.epochs, t.batch_size, t.optimizer, t.lr, t.weight_decay, t.scheduler) == (100, 20, "adam", 1e-3, 1e-6,
                                                                                       "cosine")
    assert (cfg.k, cfg.emb_dims, cfg.proj_dim, cfg.temperature, cfg.image_arch, cfg.image_weights) == (
        15, 1024, 256, 0.1, "resnet50", None)
    assert (cfg.scale_low, cfg.scale_high, cfg.translate, cfg.jitter_std, cfg.jitter_clip, cfg.max_dropout) == (
        0.5, 2.0, 0.5, 0.01, 0.05, 0.875)
    assert (cfg.brightness, cfg.contrast, cfg.saturation, cfg.flip_prob, cfg.view_size) == (0.4, 0.4, 0.4, 0.5, 224)


def test_paper_networks_have_the_released_layer_shapes():
    state = built("paper").model.state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    # models/dgcnn.py: conv1..4 (6->64, 128->64, 128->128, 256->256), conv5 512->1024, inv_head 2048->1024->256
    assert [shapes[f"points.convs.{i}.weight"] for i in range(4)] == [(64, 6), (64, 128), (128, 128), (256, 256)]
    assert shapes["points.aggregate.weight"] == (1024, 512)
    assert shapes["point_head.0.weight"] == (1024, 2048) and shapes["point_head.0.bias"] == (1024,)
    assert shapes["point_head.1.weight"] == (1024,) and shapes["point_head.3.weight"] == (256, 1024)
    # ResNet(resnet50()): inv_head 2048 -> 512 -> 256, no biases; our trunk reads one grey channel
    assert shapes["image.inv_head.0.weight"] == (512, 2048) and shapes["image.inv_head.3.weight"] == (256, 512)
    assert "image.inv_head.0.bias" not in shapes and "image.inv_head.3.bias" not in shapes
    assert shapes["image.resnet.conv1.weight"] == (64, 1, 7, 7) and "image.resnet.fc.weight" not in shapes


def test_point_embedding_is_the_dgcnn_feature_before_the_projection_head():
    method = built()
    batch = fake_batch(method, 3, small=True)
    emb = method.embed(batch, "points")
    assert emb.shape == (3, 2 * method.config.emb_dims)  # max and average pooled, concatenated
    method.model.eval()
    with torch.no_grad():
        assert torch.allclose(emb, method.model.points(batch["points"]).global_feature)
        projected = method.model.point_head(emb)
    assert projected.shape == (3, method.config.proj_dim)
    assert torch.allclose(method.embed({"points": batch["points"][:1]}, "points"), emb[:1], atol=1e-5)


def test_view_embedding_averages_the_trunk_over_a_shapes_views():
    method = built()
    batch = fake_batch(method, 2, small=True)
    emb = method.embed(batch, "views")
    method.model.eval()
    with torch.no_grad():
        per_view = [method.model.image.features(batch["views"][i]) for i in range(2)]
    assert emb.shape == (2, 512)  # ResNet18's pooled feature
    assert torch.allclose(emb, torch.stack([f.mean(dim=0) for f in per_view]), atol=1e-5)
    assert method.encoder("views") is method.model.image.resnet and method.encoder("points") is method.model.points


def test_each_shape_gets_one_of_its_own_views():
    method = built(**{"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "flip_prob": 0.0})
    b, v = 6, 5
    code = (torch.arange(b * v, dtype=torch.float32) / (b * v)).view(b, v, 1, 1, 1)
    views = code.expand(b, v, 1, 8, 8).clone()  # view j of shape i is the constant image (i * v + j) / (b v)
    picks = []
    for seed in range(20):
        torch.manual_seed(seed)
        images = method.augment_views(views)
        assert images.shape == (b, 1, 8, 8) and bool((images == images[:, :, :1, :1]).all())
        index = (images[:, 0, 0, 0] * b * v).round().long()
        assert torch.equal(index // v, torch.arange(b))  # each shape's own view
        picks.append(index % v)
    assert len(torch.stack(picks).unique()) == v  # the view is drawn at random


def test_both_branches_learn_from_the_loss():
    method = built()
    batch = fake_batch(method, 4, small=True)
    method.model.train()
    torch.manual_seed(0)
    terms = method.training_step(batch, 0)
    assert set(terms) == {"loss", "imid", "cmid"} and torch.allclose(terms["loss"], terms["imid"] + terms["cmid"])
    terms["loss"].backward()
    for name in ("points.convs.0.weight", "point_head.3.weight", "image.resnet.conv1.weight", "image.inv_head.3.weight"):
        grad = dict(method.model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_data_settings_follow_the_config():
    assert CrossPoint.from_preset("cpu").data_overrides() == {"n_points": 1024, "view_rig": "random", "n_views": 12,
                                                              "view_size": 48}
    ring = CrossPoint.from_preset("cpu", {"view_rig": "ring12"}).data_overrides()
    assert "n_views" not in ring and ring["view_rig"] == "ring12"


@pytest.mark.parametrize("bad, message", [
    ({"scale_low": 3.0}, "scale_low must be <= scale_high"),
    ({"max_dropout": 1.0}, "out of range"),
    ({"temperature": 0.0}, "out of range"),
])
def test_bad_config_values_are_refused(bad, message):
    with pytest.raises((ValueError, ConfigError), match=message):
        CrossPoint.from_preset("quick", bad)


def test_bench_run_end_to_end(tmp_path):
    from ssl3d.bench.cli import main  # in process: the command, without an interpreter start-up

    res = tmp_path / "results"
    assert main(["run", "--method", "crosspoint", "--task", "synth-svm", "--preset", "quick", "--seeds", "0",
                 "--no-progress", "--results-dir", str(res), "--data-root", str(tmp_path / "data"),
                 *tiny_set_args()]) == 0
    results = [json.loads(p.read_text()) for p in res.glob("runs/*/result.json")]
    assert len(results) == 1 and results[0]["method"] == "crosspoint"
    rows = (res / "leaderboard.csv").read_text().splitlines()
    assert len(rows) >= 2 and all("crosspoint" in row for row in rows[1:])
