"""The part-segmentation protocol and its ShapeNetPart metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score
from torch import nn

from ssl3d.bench.protocols import EvalContext
from ssl3d.bench.protocols.seg_metrics import segmentation_metrics, shape_miou
from ssl3d.bench.protocols.segmentation import (
    PartSegHead, _PointFeatures,
    SegConfig,
    SegmentationProtocol,
    select_training_shapes,
)
from ssl3d.datasets.synth import SynthConfig, SynthDataset
from ssl3d.methods import get_method
from ssl3d.methods.base import Method

QUIET = EvalContext(seed=0, progress=False)


# -- metrics -----------------------------------------------------------------------------
def test_shape_miou_by_hand():
    # part 0: inter 1, union 2; part 1: inter 2, union 3
    assert shape_miou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), (0, 1)) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_part_absent_from_both_counts_as_one():
    target = np.array([4, 4, 5, 5, 5])
    pred = np.array([4, 5, 5, 5, 5])
    # part 4: 1/2, part 5: 3/4, part 6 absent from prediction and ground truth: 1
    assert shape_miou(pred, target, (4, 5, 6)) == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    # predicted but absent from the ground truth: IoU 0, not 1
    pred_extra = np.array([4, 6, 5, 5, 5])
    assert shape_miou(pred_extra, target, (4, 5, 6)) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_instance_vs_class_miou_with_unequal_categories():
    parts = {"a": (0, 1), "b": (2, 3)}
    targets = [np.array([0, 0, 1, 1]), np.array([0, 1]), np.array([0, 0, 1, 1]), np.array([2, 2, 3])]
    preds = [np.array([0, 0, 1, 1]), np.array([0, 1]), np.array([0, 0, 0, 0]), np.array([3, 3, 2])]
    m = segmentation_metrics(preds, targets, ["a", "a", "a", "b"], parts)
    # shape mIoUs: 1, 1, (2/4 + 0)/2 = 0.25, 0
    assert m["instance_miou"] == pytest.approx(100 * (1 + 1 + 0.25 + 0) / 4)
    assert m["class_miou"] == pytest.approx(100 * ((2.25 / 3) + 0) / 2)
    assert m["point_acc"] == pytest.approx(100 * 8 / 13)
    assert m["per_category"] == pytest.approx({"a": 75.0, "b": 0.0})


def test_metrics_match_sklearn_jaccard():
    rng = np.random.default_rng(0)
    parts = {"x": (0, 1, 2), "y": (3, 4, 5, 6)}
    preds, targets, cats, expected = [], [], [], []
    for s in range(12):
        cat = "x" if s % 3 else "y"
        ids = np.array(parts[cat])
        # only some parts occur, so the empty-part rule is exercised
        target = rng.choice(ids[: rng.integers(1, len(ids) + 1)], size=40)
        pred = rng.choice(ids, size=40)
        preds.append(pred), targets.append(target), cats.append(cat)
        expected.append(jaccard_score(target, pred, labels=list(ids), average=None, zero_division=1.0).mean())
    m = segmentation_metrics(preds, targets, cats, parts)
    assert m["instance_miou"] == pytest.approx(100 * np.mean(expected))
    exp = np.array(expected)
    is_x = np.array(cats) == "x"
    assert m["class_miou"] == pytest.approx(100 * (exp[is_x].mean() + exp[~is_x].mean()) / 2)
    assert m["point_acc"] == pytest.approx(100 * np.mean(np.concatenate(preds) == np.concatenate(targets)))


def test_metric_argument_errors():
    with pytest.raises(ValueError, match="equal length"):
        shape_miou(np.array([0, 1]), np.array([0]), (0, 1))
    with pytest.raises(ValueError, match="unknown category"):
        segmentation_metrics([np.array([0])], [np.array([0])], ["z"], {"a": (0,)})
    with pytest.raises(ValueError, match="one entry per shape"):
        segmentation_metrics([np.array([0])], [], ["a"], {"a": (0,)})


# -- pieces of the protocol -----------------------------------------------------------------
def test_label_fraction_sampling_per_category():
    labels = np.repeat([0, 1, 2], [50, 10, 3])
    keep = select_training_shapes(labels, 0.2, seed=5)
    assert np.array_equal(np.bincount(labels[keep]), [10, 2, 1])  # round(0.6) = 1, and at least one anyway
    assert np.array_equal(keep, np.unique(keep))  # sorted, no repeats
    assert np.array_equal(keep, select_training_shapes(labels, 0.2, seed=5))
    assert not np.array_equal(keep, select_training_shapes(labels, 0.2, seed=6))
    assert np.bincount(labels[select_training_shapes(labels, 0.02, seed=0)]).tolist() == [1, 1, 1]
    assert np.array_equal(select_training_shapes(labels, 1.0, seed=0), np.arange(len(labels)))
    with pytest.raises(ValueError, match="label_fraction"):
        select_training_shapes(labels, 0.0, seed=0)


def test_head_equals_explicit_concatenation():
    torch.manual_seed(0)
    head = PartSegHead(feature_dim=5, num_categories=3, num_parts=7, hidden=(8,), dropout=0.0).eval()
    feats, cat = torch.randn(2, 6, 5), torch.tensor([2, 0])
    # the reference: one Linear on [f_i, max_j f_j, onehot(c)], then the rest of the head
    g = feats.max(dim=1).values
    x = torch.cat([feats, g[:, None].expand(-1, 6, -1), nn.functional.one_hot(cat, 3)[:, None].expand(-1, 6, -1).float()], -1)
    w = torch.cat([head.point_in.weight, head.shape_in.weight], dim=1)
    ref = head.body((x @ w.T).reshape(12, -1)).reshape(2, 6, 7)
    assert torch.allclose(head(feats, cat), ref, atol=1e-5)


def test_prediction_restricted_to_category_parts():
    head = PartSegHead(feature_dim=3, num_categories=2, num_parts=4, hidden=(4,), dropout=0.0)
    last = head.body[-1]
    with torch.no_grad():  # constant logits that favour part 0 for every point
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, 0.0, 5.0, 1.0]))
    part_mask = torch.tensor([[True, True, False, False], [False, False, True, True]])
    batch = {"features": torch.randn(2, 5, 3), "label": torch.tensor([0, 1]),
             "point_labels": torch.zeros(2, 5, dtype=torch.long)}
    source = _PointFeatures.__new__(_PointFeatures)  # only its cached-feature path is used here
    source.device = torch.device("cpu")
    preds, _, labels = SegmentationProtocol._predict(head, source, [batch], part_mask, torch.device("cpu"))
    assert labels == [0, 1]
    assert (preds[0] == 0).all() and (preds[1] == 2).all()  # category 1 may not use part 0


def test_config_validation():
    for bad in ({"mode": "linear"}, {"label_fraction": 0.0}, {"label_fraction": 1.5}, {"epochs": 0},
                {"lr": 0.0}, {"lr_gamma": 0.0}, {"weight_decay": -1.0}, {"feature_cache_mb": -1}):
        with pytest.raises(ValueError):
            SegConfig(**bad)


# -- end to end on a tiny synth ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    cfg = SynthConfig(n_classes=3, train_per_class=4, test_per_class=2, n_points=128, workers=1)
    root = tmp_path_factory.mktemp("seg-synth")
    mods = SegmentationProtocol().dataset_modalities("points")
    return (SynthDataset("train", mods, cfg, root, progress=False),
            SynthDataset("test", mods, cfg, root, progress=False))


@pytest.fixture(scope="module")
def random_pointnet(tiny_synth):
    torch.manual_seed(0)
    return get_method("random-pointnet").from_preset("quick", {"global_dim": 64}).pretrain(tiny_synth[0])


def _state(method) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.model.state_dict().items()}


@pytest.mark.parametrize("mode", ["frozen", "finetune", "scratch"])
def test_end_to_end_modes(tiny_synth, random_pointnet, mode):
    torch.set_num_threads(1)
    train, test = tiny_synth
    before = _state(random_pointnet)
    result = SegmentationProtocol(SegConfig(mode=mode, epochs=2)).evaluate(random_pointnet, train, test, "points", QUIET)
    assert set(result.metrics) == {"instance_miou", "class_miou", "point_acc"}
    assert all(0.0 <= v <= 100.0 for v in result.metrics.values())
    d = result.details
    assert d["mode"] == mode and d["n_train_shapes"] == 12 and d["n_test_shapes"] == 6 and d["epochs"] == 2
    assert np.isfinite(d["final_train_loss"]) and len(d["train_loss_by_epoch"]) == 2
    assert set(d["per_category_miou"]) == set(train.class_names)
    # class mIoU is the mean of the per-category values
    assert result.metrics["class_miou"] == pytest.approx(np.mean(list(d["per_category_miou"].values())), abs=1e-3)
    # frozen trains no encoder; the others train their own copy; the caller's method never changes
    assert (d["encoder_param_change"] > 0) == (mode != "frozen")
    assert d["features_cached"] == (mode == "frozen")
    after = _state(random_pointnet)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_frozen_feature_cache_gives_the_same_numbers_as_recomputing(tiny_synth, random_pointnet):
    torch.set_num_threads(1)
    runs = {mb: SegmentationProtocol(SegConfig(epochs=2, batch_size=5, feature_cache_mb=mb)).evaluate(
        random_pointnet, *tiny_synth, "points", EvalContext(seed=1, progress=False)) for mb in (0, 64)}
    assert runs[64].details["features_cached"] and not runs[0].details["features_cached"]
    # the encoder is fixed and in eval mode, so a feature computed once equals one computed per batch
    assert runs[64].details["train_loss_by_epoch"] == pytest.approx(runs[0].details["train_loss_by_epoch"], rel=1e-5)
    assert runs[64].metrics == pytest.approx(runs[0].metrics, abs=1e-6)
    # a table larger than the budget is not built
    tiny_budget = SegmentationProtocol(SegConfig(epochs=1, feature_cache_mb=0)).evaluate(
        random_pointnet, *tiny_synth, "points", QUIET)
    assert not tiny_budget.details["features_cached"]


def test_label_fraction_in_protocol(tiny_synth, random_pointnet):
    torch.set_num_threads(1)
    result = SegmentationProtocol(SegConfig(label_fraction=0.5, epochs=1)).evaluate(
        random_pointnet, *tiny_synth, "points", QUIET)
    assert result.details["n_train_shapes"] == 6 and result.details["label_fraction"] == 0.5


def test_same_seed_same_metrics(tiny_synth, random_pointnet):
    torch.set_num_threads(1)
    proto = SegmentationProtocol(SegConfig(mode="finetune", epochs=2, batch_size=5))
    runs = [proto.evaluate(random_pointnet, *tiny_synth, "points", EvalContext(seed=s, progress=False)) for s in (3, 3, 4)]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].details["train_loss_by_epoch"] == runs[1].details["train_loss_by_epoch"]
    assert runs[0].details["train_loss_by_epoch"] != runs[2].details["train_loss_by_epoch"]


def test_wrong_dataset_or_modality(tiny_synth, random_pointnet):
    train, test = tiny_synth

    class NoParts:
        name = "noparts"
        num_parts = 0

    with pytest.raises(ValueError, match="noparts"):
        SegmentationProtocol().evaluate(random_pointnet, NoParts(), NoParts(), "points", QUIET)
    with pytest.raises(ValueError, match="points"):
        SegmentationProtocol().evaluate(random_pointnet, train, test, "voxels", QUIET)


# -- a trivially separable case: the head must learn it ---------------------------------------------
class _XYZFeatures(Method):
    """Per-point features = the coordinates themselves."""

    name = "xyz-features"
    point_feature_modalities = frozenset({"points"})

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1)  # only so that the method has a device

    def point_features_batch(self, points: torch.Tensor) -> torch.Tensor:
        return points


class _HalfSpaces(torch.utils.data.Dataset):
    """Category 'a' split by the sign of x into parts 0/1, 'b' by the sign of y into parts 2/3."""

    name = "halfspaces"
    class_names = ("a", "b")
    num_parts = 4
    category_parts = {"a": (0, 1), "b": (2, 3)}

    def __init__(self, per_class: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.points = torch.from_numpy(rng.uniform(-1, 1, size=(2 * per_class, 64, 3)).astype(np.float32))
        self.labels = np.repeat([0, 1], per_class)
        axis = torch.from_numpy(self.labels)[:, None]  # x for 'a', y for 'b'
        coord = torch.gather(self.points, 2, axis[:, :, None].expand(-1, 64, 1))[..., 0]
        self.point_labels = (coord > 0).long() + 2 * axis

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[i], "point_labels": self.point_labels[i],
                "label": torch.tensor(self.labels[i]), "index": torch.tensor(i)}


def test_frozen_head_beats_chance_on_separable_parts():
    torch.set_num_threads(1)
    train, test = _HalfSpaces(16, seed=0), _HalfSpaces(8, seed=1)
    method = _XYZFeatures()
    method.model = method.build_model()
    result = SegmentationProtocol(SegConfig(epochs=25, batch_size=8, lr=0.01)).evaluate(
        method, train, test, "points", QUIET)
    # chance: uniform guesses among the category's two parts
    rng = np.random.default_rng(0)
    targets = [t.numpy() for t in test.point_labels]
    guesses = [rng.choice(test.category_parts[test.class_names[c]], size=64) for c in test.labels]
    chance = segmentation_metrics(guesses, targets, [test.class_names[c] for c in test.labels], test.category_parts)
    assert chance["instance_miou"] < 40
    assert result.metrics["instance_miou"] > 90 and result.metrics["point_acc"] > 95
