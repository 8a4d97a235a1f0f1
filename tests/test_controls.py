"""The controls (methods/controls.py): the Method contract, hand-computed descriptors, seeds, and the sizes docs state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssl3d.bench.features import extract_features
from ssl3d.datasets import DATASETS
from ssl3d.methods import METHODS, RunContext
from ssl3d.methods.controls import D2Histogram, OccupancyPool
from ssl3d.methods.testing import FakeShapes, check_method, fake_batch

CONTROLS = ("random-voxel-cnn", "pooled-occupancy", "random-view-cnn", "d2-shape-distribution")


def _built(name: str, seed: int = 0, preset: str = "quick", **overrides) -> object:
    """The control as a run builds it: ``pretrain`` with ``train.epochs=0`` draws the seeded network."""
    method = METHODS.get(name).from_preset(preset, overrides)
    batch = fake_batch(method, 2, small=True)
    return method.pretrain(FakeShapes(batch), RunContext(seed=seed, progress=False))


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", CONTROLS)
def test_control_meets_the_method_contract(name):
    check_method(METHODS.get(name))


@pytest.mark.parametrize("name", CONTROLS)
def test_controls_declare_no_pretext_task_under_any_preset(name):
    cls = METHODS.get(name)
    assert cls.control and cls.pretrain_modalities == frozenset()
    assert set(cls.Config.PRESETS) == {"paper", "quick", "cpu"}
    for preset in cls.Config.PRESETS:
        method = cls.from_preset(preset)
        assert method.config.train.epochs == 0 and not method.pretrains


def test_pooled_occupancy_is_the_fraction_of_each_cell_occupied():
    voxels = torch.zeros(1, 4, 4, 4)
    voxels[0, :2, :2, :2] = 1  # cell (0, 0, 0) full
    voxels[0, 3, 3, 3] = 1  # one voxel of eight in cell (1, 1, 1)
    voxels[0, 0, 0, 2] = voxels[0, 1, 1, 3] = 1  # two in cell (0, 0, 1)
    expected = torch.tensor([[1.0, 0.25, 0, 0, 0, 0, 0, 0.125]])  # [x, y, z] order: index 4x + 2y + z
    assert torch.equal(OccupancyPool(grid=2)(voxels), expected)


def test_pooled_occupancy_gives_512_features_of_a_32_grid_and_owns_no_weights():
    method = _built("pooled-occupancy")
    voxels = (torch.rand(3, 32, 32, 32) > 0.5).float()
    features = method.embed({"voxels": voxels}, "voxels")
    assert features.shape == (3, 512)
    torch.testing.assert_close(features[:, 0], voxels[:, :4, :4, :4].mean(dim=(1, 2, 3)))
    assert _n_params(method.model) == 0  # the one parameter is the empty device anchor


def test_d2_counts_the_pair_distances_of_a_square_in_units_of_their_mean():
    square = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]])
    # 6 pairs: 4 sides of 1, 2 diagonals of sqrt 2; mean (4 + 2 sqrt 2) / 6 = 1.138: 0.879 and 1.243
    histogram = D2Histogram(bins=3, max_distance=3.0)(square)
    torch.testing.assert_close(histogram, torch.tensor([[4 / 6, 2 / 6, 0.0]]))


def test_d2_counts_pairs_beyond_the_range_in_the_last_bin():
    line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [10, 0, 0]]])
    # distances 1, 10, 9; mean 20/3: 0.15, 1.5, 1.35; bins of 0.4 over [0, 1.2]: 1.5 and 1.35 are past the range
    histogram = D2Histogram(bins=3, max_distance=1.2)(line)
    torch.testing.assert_close(histogram, torch.tensor([[1 / 3, 0.0, 2 / 3]]))


def test_d2_of_all_pairs_ignores_the_point_order_and_the_scale():
    points = torch.randn(1, 50, 3, generator=torch.Generator().manual_seed(1))
    d2 = D2Histogram(bins=16, max_distance=3.0)
    reordered = points[:, torch.randperm(50, generator=torch.Generator().manual_seed(2))]
    torch.testing.assert_close(d2(reordered), d2(points))
    torch.testing.assert_close(d2(4.0 * points), d2(points))
    assert math.isclose(float(d2(points).sum()), 1.0, rel_tol=1e-6)


def test_d2_random_pairs_follow_the_seed_not_the_batch_and_estimate_all_pairs():
    points = fake_batch(METHODS.get("d2-shape-distribution")(), 3, small=True)["points"]
    seed0, again, seed1 = (_built("d2-shape-distribution", seed, pairs=20_000) for seed in (0, 0, 1))
    first = seed0.embed({"points": points}, "points")
    assert torch.equal(first, again.embed({"points": points}, "points"))
    assert not torch.equal(first, seed1.embed({"points": points}, "points"))
    alone = seed0.embed({"points": points[1:2]}, "points")
    assert torch.equal(alone[0], first[1])  # the same pairs whatever the batch
    every_pair = _built("d2-shape-distribution", 0).embed({"points": points}, "points")
    assert float((first - every_pair).abs().sum(dim=1).max()) < 0.1  # L1 of two PDFs of 64 bins


def test_d2_of_all_pairs_is_the_same_for_every_seed():
    points = fake_batch(METHODS.get("d2-shape-distribution")(), 2, small=True)["points"]
    a, b = (_built("d2-shape-distribution", seed).embed({"points": points}, "points") for seed in (0, 1))
    assert a.shape == (2, 64) and torch.equal(a, b)


@pytest.mark.parametrize("name", ["random-voxel-cnn", "random-view-cnn"])
def test_random_networks_are_fixed_by_the_seed_and_differ_between_seeds(name):
    method = METHODS.get(name).from_preset("quick")
    batch = fake_batch(method, 3, small=True, seed=5)
    for modality in sorted(method.embed_modalities):
        a, again, b = (_built(name, seed).embed(batch, modality) for seed in (0, 0, 1))
        assert torch.equal(a, again), modality
        assert not torch.allclose(a, b), modality
        alone = _built(name, 0).embed({k: v[2:] for k, v in batch.items()}, modality)
        torch.testing.assert_close(alone[0], a[2], rtol=1e-5, atol=1e-6)  # no batch statistics


def test_random_voxel_cnn_has_the_documented_layers():
    model = _built("random-voxel-cnn").model
    # conv k3: 1 -> 32 -> 64 -> 128 with biases
    assert _n_params(model) == (27 * 1 * 32 + 32) + (27 * 32 * 64 + 64) + (27 * 64 * 128 + 128) == 277_568
    assert model.out_dim == 1024
    assert _built("random-voxel-cnn").embed({"voxels": torch.zeros(2, 32, 32, 32)}, "voxels").shape == (2, 1024)


def test_random_view_cnn_has_the_documented_layers():
    model = _built("random-view-cnn").model
    convs = (9 * 32 * 64 + 64) + (9 * 64 * 128 + 128)
    assert _n_params(model["views"]) == 9 * 1 * 32 + 32 + convs == 92_672  # grey views
    assert _n_params(model["image"]) == 9 * 4 * 32 + 32 + convs == 93_536  # RGB + mask
    assert model["views"].out_dim == model["image"].out_dim == 512  # 128 channels x 2 x 2 cells


def test_random_view_cnn_mean_pools_one_shared_network_over_evenly_spread_views():
    method = _built("random-view-cnn")  # quick: 6 of ring12's 12 views, every other camera (cmic's)
    views = torch.rand(2, 12, 1, 32, 32)
    net = method.model["views"].eval()
    with torch.no_grad():
        expected = torch.stack([net(views[:, v] * 2 - 1) for v in range(0, 12, 2)]).mean(dim=0)
    torch.testing.assert_close(method.embed({"views": views}, "views"), expected)


@pytest.mark.parametrize("preset", ["paper", "quick", "cpu"])
def test_random_view_cnn_reads_cmics_views_and_photos(preset):
    control, cmic = METHODS.get("random-view-cnn").from_preset(preset), METHODS.get("cmic").from_preset(preset)
    assert control.data_overrides() == cmic.data_overrides()
    assert control.config.n_views == cmic.config.n_views


def test_random_view_cnn_reads_the_switchvae_familys_views_when_told():
    # the --set line docs/methods.md#controls gives for the SwitchVAE family's cpu views
    control = METHODS.get("random-view-cnn").from_preset("cpu", {"n_views": 4, "view_size": 64})
    switchvae = METHODS.get("switchvae").from_preset("cpu")
    view_keys = ("view_rig", "n_views", "view_size")
    assert {k: v for k, v in control.data_overrides().items() if k in view_keys} == {
        k: v for k, v in switchvae.data_overrides().items() if k in view_keys}
    assert control.config.n_views == switchvae.config.n_views


def test_random_view_cnn_refuses_more_views_than_its_rig_has():
    with pytest.raises(ValueError, match="method.n_views=9 exceeds the 8 views of method.view_rig=first8"):
        METHODS.get("random-view-cnn").from_preset("quick", {"view_rig": "first8", "n_views": 9})
    random_rig = METHODS.get("random-view-cnn").from_preset("quick", {"view_rig": "random", "n_views": 20})
    assert random_rig.data_overrides()["n_views"] == 20


def test_descriptor_features_are_kept_by_the_feature_cache(tmp_path):
    synth = DATASETS.get("synth")
    data = synth("train", ("points",), synth.Config(n_classes=3, train_per_class=4, test_per_class=1, n_points=64,
                                                    workers=1), tmp_path, progress=False)
    method = _built("d2-shape-distribution")
    calls = []
    embed = method.embed_batch
    method.embed_batch = lambda batch, modality: calls.append(len(batch["label"])) or embed(batch, modality)
    first = extract_features(method, data, "points", batch_size=5, progress=False)
    again = extract_features(method, data, "points", batch_size=3, progress=False)
    assert sum(calls) == len(data) == 12 and len(list((tmp_path / "features").rglob("*.npz"))) == 1
    np.testing.assert_array_equal(first[0], again[0])
    assert first[0].shape == (12, 64) and np.allclose(first[0].sum(axis=1), 1.0)
