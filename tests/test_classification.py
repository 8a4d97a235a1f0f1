"""The classification protocol: validation carved from train only, the selected epoch, voting, heads, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from ssl3d.bench.protocols import EvalContext
from ssl3d.bench.protocols.classification import ClassificationConfig, ClassificationProtocol, labelled_and_validation
from ssl3d.bench.protocols.cls_train import ClassifierHead, scale_translate, standardisation
from ssl3d.bench.run.runner import RunSpec, execute
from ssl3d.methods import get_method

from conftest import TINY_SYNTH

QUIET = EvalContext(seed=0, progress=False)


class Blobs(Dataset):
    """Tiny labelled point clouds: class c is a Gaussian blob stretched along axis c % 3 (separable, 32 points)."""

    name = "blobs"

    def __init__(self, labels, split: str, seed: int = 0) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        stretch = np.ones((len(self._labels), 1, 3))
        stretch[np.arange(len(self._labels)), 0, self._labels % 3] = 3.0
        self.points = torch.tensor(rng.normal(size=(len(self._labels), 32, 3)) * stretch * 0.3, dtype=torch.float32)
        self.split = split
        self.class_names = tuple(f"c{i}" for i in range(int(self._labels.max()) + 1))

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def shape_name(self, index: int) -> str:
        return f"{self.split}_{index:03d}"

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[index], "label": torch.tensor(self._labels[index]),
                "index": torch.tensor(index)}


def _method(seed: int = 0):
    torch.manual_seed(seed)
    method = get_method("random-pointnet").from_preset("quick", {"global_dim": "16"})
    method.pretrain(Blobs([0, 1], "train"))  # no pretext task: builds the seeded random network
    return method


def _protocol(**kw) -> ClassificationProtocol:
    return ClassificationProtocol(ClassificationConfig(**{"epochs": 4, "batch_size": 8, "votes": 2, **kw}))


TRAIN = Blobs(np.repeat(np.arange(3), 10), "train")
TEST = Blobs(np.repeat(np.arange(3), 4), "test")


@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_test_labels_influence_no_choice(mode):
    """Permuting the test labels changes nothing that was chosen: validation split, curve, selected epoch."""
    method = _method()
    a = _protocol(mode=mode, lr=0.01, votes=0).evaluate(method, TRAIN, TEST, "points", QUIET)
    shuffled = Blobs(np.repeat(np.arange(3), 4), "test")
    shuffled._labels = np.random.default_rng(7).permutation(shuffled._labels)
    assert not np.array_equal(shuffled.labels, TEST.labels)
    b = _protocol(mode=mode, lr=0.01, votes=0).evaluate(method, TRAIN, shuffled, "points", QUIET)
    for key in ("selected_epoch", "val_acc_by_epoch", "train_loss_by_epoch", "val_indices", "val_acc"):
        assert a.details[key] == b.details[key], key
    # the same weights score both: identical logits, so only the accuracy against the labels differs
    np.testing.assert_array_equal(a.artifacts["test_logits"], b.artifacts["test_logits"])
    # the selected epoch is the first best validation epoch
    curve = a.details["val_acc_by_epoch"]
    assert len(set(curve)) > 1  # a flat curve would make the selection trivially the first epoch
    assert a.details["selected_epoch"] == 1 + int(np.argmax(curve)) and a.details["val_acc"] == max(curve)


def test_test_is_scored_with_the_weights_of_the_selected_epoch():
    # constant learning rate: training for `selected_epoch` epochs reproduces the kept weights exactly
    method = _method()
    full = _protocol(epochs=8, lr=0.05, schedule="constant", votes=0).evaluate(method, TRAIN, TEST, "points", QUIET)
    chosen = full.details["selected_epoch"]
    assert chosen < 8, "the data should make an earlier epoch best (else this test checks nothing)"
    short = _protocol(epochs=chosen, lr=0.05, schedule="constant", votes=0).evaluate(method, TRAIN, TEST, "points",
                                                                                     QUIET)
    np.testing.assert_array_equal(full.artifacts["test_logits"], short.artifacts["test_logits"])


def test_every_training_epoch_logs_one_progress_line(caplog):
    # with progress bars off (logs, pipes) a long scratch run still shows where it is
    with caplog.at_level("INFO", logger="ssl3d.classification"):
        out = _protocol(mode="linear", epochs=3, votes=0).evaluate(_method(), TRAIN, TEST, "points", QUIET)
    lines = [r.getMessage() for r in caplog.records if r.name == "ssl3d.classification"]
    assert [line.split(":")[0] for line in lines] == [f"classification (linear) epoch {e}/3" for e in (1, 2, 3)]
    losses = out.details["train_loss_by_epoch"]
    accs = out.details["val_acc_by_epoch"]
    assert all(f"loss {loss:.4f}, val acc {acc:.2f}, " in line for line, loss, acc in zip(lines, losses, accs))


def test_validation_is_carved_from_the_labelled_train_shapes():
    labels = np.repeat(np.arange(4), 25)
    labelled, fit, val = labelled_and_validation(labels, 0.4, 0.2, seed=3)
    assert set(fit) | set(val) == set(labelled) and not set(fit) & set(val)
    assert np.bincount(labels[labelled]).tolist() == [10] * 4 and np.bincount(labels[val]).tolist() == [2] * 4
    again = labelled_and_validation(labels, 0.4, 0.2, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((labelled, fit, val), again))
    assert not np.array_equal(val, labelled_and_validation(labels, 0.4, 0.2, seed=4)[2])


def test_voting_is_reported_beside_the_single_pass():
    method = _method()
    voted = _protocol(votes=3).evaluate(method, TRAIN, TEST, "points", QUIET)
    plain = _protocol(votes=0).evaluate(method, TRAIN, TEST, "points", QUIET)
    assert {"overall_acc", "mean_class_acc", "vote_acc", "vote_mean_class_acc"} == set(voted.metrics)
    assert {"overall_acc", "mean_class_acc"} == set(plain.metrics)
    # the single pass does not depend on voting; the vote is the argmax of the mean logits it stores
    assert voted.metrics["overall_acc"] == plain.metrics["overall_acc"]
    y = voted.artifacts["test_labels"]
    assert voted.metrics["vote_acc"] == pytest.approx(100 * np.mean(voted.artifacts["vote_logits"].argmax(1) == y))
    assert voted.metrics["overall_acc"] == pytest.approx(100 * np.mean(voted.artifacts["test_logits"].argmax(1) == y))
    assert not np.allclose(voted.artifacts["vote_logits"], voted.artifacts["test_logits"])  # copies were augmented
    assert voted.details["votes"] == 3


def test_scale_translate_by_hand():
    points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]).repeat(5, 1, 1)
    out = scale_translate(points, torch.Generator().manual_seed(0))
    shift, scale = out[:, 0], out[:, 1] - out[:, 0]  # p' = p * s + t: the origin gives t, (1,1,1) gives s + t
    assert ((scale >= 2 / 3) & (scale <= 3 / 2)).all() and (shift.abs() <= 0.2).all()
    assert torch.equal(out, scale_translate(points, torch.Generator().manual_seed(0)))
    assert not torch.allclose(scale[0], scale[1])  # per shape


def test_linear_head_is_standardise_then_affine():
    x = torch.randn(20, 5) * 3 + 1
    mean, std = standardisation(x)
    head = ClassifierHead(5, 3, "linear", mean, std)
    expected = ((x - x.mean(0)) / x.std(0, unbiased=False)) @ head.body.weight.T + head.body.bias
    torch.testing.assert_close(head(x), expected)
    assert sum(p.numel() for p in ClassifierHead(5, 3, "mlp").parameters() if p.requires_grad) > 5 * 3 + 3


def test_finetune_leaves_the_callers_method_unchanged_and_scratch_ignores_its_weights():
    method = _method(seed=0)
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    tuned = _protocol(mode="finetune", votes=0, epochs=2).evaluate(method, TRAIN, TEST, "points", QUIET)
    assert all(torch.equal(before[k], v) for k, v in method.model.state_dict().items())
    assert tuned.details["trained_parameter_change"] > 0
    scratch = _protocol(mode="scratch", votes=0, epochs=2).evaluate(method, TRAIN, TEST, "points", QUIET)
    other = _protocol(mode="scratch", votes=0, epochs=2).evaluate(_method(seed=5), TRAIN, TEST, "points", QUIET)
    np.testing.assert_array_equal(scratch.artifacts["test_logits"], other.artifacts["test_logits"])


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="classification.mode"):
        ClassificationConfig(mode="probe")


def test_synth_cls_run_end_to_end(tmp_path):
    overrides = {**TINY_SYNTH, "classification.epochs": "2", "classification.label_fraction": "0.5"}
    result = execute(RunSpec(method="random-pointnet", task="synth-cls", overrides=overrides, progress=False,
                             results_dir=str(tmp_path)))
    assert set(result["metrics"]) == {"overall_acc", "mean_class_acc", "vote_acc", "vote_mean_class_acc"}
    details = result["protocol"]["details"]
    assert details["votes"] == 3 and details["n_labelled"] == 12 and len(details["labelled_indices"]) == 12
    assert set(details["val_indices"]) <= set(details["labelled_indices"])
    assert (tmp_path / "runs" / result["run_id"] / "artifacts.npz").exists()
