"""No label or selection leak: ``Method.reads_labels`` is checked against what ``training_step`` does, and a
label reader's pretraining never sees the validation part that its seed's budget is chosen on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from ssl3d.bench.features.splits import SELECTION_VAL_FRACTION, WithoutValidation, carve_validation
from ssl3d.bench.run.pretrain_cache import pretrain_key, pretrain_or_load, pretraining_data, trajectory_key
from ssl3d.bench.run.runner import RunSpec, execute, validate_run
from ssl3d.bench.sweep import curve as curve_mod
from ssl3d.datasets import default_root
from ssl3d.methods import METHODS, Method, MethodConfig, TrainConfig
from ssl3d.methods.testing import check_method, check_reads_labels
from tests.conftest import TINY_SYNTH
from test_real_datasets import link_raw, make_modelnet40


@dataclass(frozen=True)
class _Config(MethodConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=4, lr=1e-2))
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "quick": {}}


def _fingerprint(points: torch.Tensor) -> str:
    return hashlib.sha256(points.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class _Recorder(Method):
    """Classifies mean-pooled points into 4 classes (it reads labels) and records every item it trains on."""

    name = "label-recorder"
    Config = _Config
    pretrain_modalities = frozenset({"points"})
    embed_modalities = frozenset({"points"})
    reads_labels = True
    seen: ClassVar[list[tuple[str, int]]] = []  # (fingerprint of the item's points, its label)

    def build_model(self) -> nn.Module:
        return nn.ModuleDict({"encoder": nn.Sequential(nn.Linear(3, 8), nn.ReLU()), "head": nn.Linear(8, 4)})

    def _features(self, points: torch.Tensor) -> torch.Tensor:
        return self.model["encoder"](points).mean(dim=1)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        type(self).seen.extend((_fingerprint(p), int(y)) for p, y in zip(batch["points"], batch["label"]))
        logits = self.model["head"](self._features(batch["points"]))
        return {"loss": nn.functional.cross_entropy(logits, batch["label"] % 4)}

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        return self._features(batch["points"])

    def encoder(self, modality: str) -> nn.Module:
        return self.require_pretrained()["encoder"]


class _LeakyRecorder(_Recorder):
    """The same loss with a false declaration: the negative control of the withholding tests."""

    name = "leaky-recorder"
    reads_labels = False


class _LabelFree(_Recorder):
    """Copies every key (labels included) but its loss uses only the points."""

    name = "label-free"
    reads_labels = False

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        copied = {key: value.clone() for key, value in batch.items()}  # a read, not a use
        return {"loss": self._features(copied["points"]).pow(2).mean()}


class _ClaimsLabels(_LabelFree):
    name = "claims-labels"
    reads_labels = True


class _SameClassPull(_LabelFree):
    """Reads only which items share a class (as CMIC's category loss): shifting every label leaves it unchanged."""

    name = "same-class-pull"
    reads_labels = True

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        features, labels = self._features(batch["points"]), batch["label"]
        same = (labels[:, None] == labels[None, :]).float()
        return {"loss": (torch.cdist(features, features) * same).sum() / same.sum()}


# -- the declaration is checked ---------------------------------------------------------------------

@pytest.mark.parametrize("cls", [_Recorder, _LabelFree, _SameClassPull])
def test_a_true_declaration_passes(cls):
    check_reads_labels(cls)


@pytest.mark.parametrize("cls, declared", [(_LeakyRecorder, "False"), (_ClaimsLabels, "True")])
def test_a_false_declaration_is_named_with_the_attribute(cls, declared):
    with pytest.raises(AssertionError, match=rf"{cls.__name__} \('{cls.name}'\): reads_labels is {declared}"):
        check_reads_labels(cls)


def test_check_method_runs_the_label_check():
    check_method(_Recorder)
    with pytest.raises(AssertionError, match="reads_labels is False but training_step's loss changes"):
        check_method(_LeakyRecorder)


def test_an_instance_is_checked_on_a_copy():
    method = _Recorder.from_preset("quick")
    torch.manual_seed(0)
    method.model = method.build_model()
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    check_reads_labels(method)
    assert all(torch.equal(before[k], v) for k, v in method.model.state_dict().items())


def test_a_method_without_a_pretext_task_reads_no_labels():
    random_init = METHODS.get("random-pointnet")
    check_reads_labels(random_init)
    liar = type("RandomClaims", (random_init,), {"reads_labels": True})
    with pytest.raises(AssertionError, match="reads_labels is True but the method has no pretext task"):
        check_reads_labels(liar)


@pytest.mark.parametrize("name, lie", [("cmic", False), ("cmic-noncat", True)])
def test_cmic_lying_either_way_is_caught(name, lie):
    honest = METHODS.get(name)
    assert honest.reads_labels is (not lie)
    check_reads_labels(honest)
    liar = type(f"{honest.__name__}Liar", (honest,), {"reads_labels": lie})
    with pytest.raises(AssertionError, match=f"reads_labels is {lie}"):
        check_reads_labels(liar)


# -- a label reader's pretraining withholds the validation part ------------------------------------

@pytest.fixture
def recorders(monkeypatch):
    for cls in (_Recorder, _LeakyRecorder):
        monkeypatch.setitem(METHODS._items, cls.name, cls)  # registered for this test only
        monkeypatch.setattr(cls, "seen", [])
    return _Recorder, _LeakyRecorder


def _spec(method: str, seed: int = 0, **overrides: str) -> RunSpec:
    return RunSpec(method=method, task="synth-svm", seed=seed, device="cpu", overrides={**TINY_SYNTH, **overrides},
                   progress=False)


def _validation_fingerprints(spec: RunSpec) -> tuple[set[str], set[str], list[int]]:
    """(fit, validation) fingerprints and validation positions of the carve ``bench curve --split val`` scores on."""
    train = validate_run(spec).train_data
    train.prepare()
    fit, val = carve_validation(train.labels, curve_mod.VAL_FRACTION, spec.seed)
    prints = [_fingerprint(train[int(i)]["points"]) for i in range(len(train))]
    return {prints[i] for i in fit}, {prints[i] for i in val}, val.tolist()


@pytest.mark.parametrize("seed", [0, 3])
def test_a_label_readers_bench_run_never_trains_on_a_validation_shape(recorders, seed):
    reader, leaky = recorders
    fit, val, positions = _validation_fingerprints(_spec(reader.name, seed))
    assert len(val) == 4 and len(fit) == 20  # 1 of each class's 6 shapes (round(0.2 * 6))
    result = execute(_spec(reader.name, seed))
    seen = {fingerprint for fingerprint, _ in reader.seen}
    assert seen.isdisjoint(val) and seen == fit  # every other shape, each epoch
    withheld = result["pretraining"]["withheld_validation"]
    assert (withheld["positions"], withheld["seed"], withheld["fraction"]) == (positions, seed, 0.2)
    # the negative control: the same loss declared label-free trains on the validation shapes too
    control = execute(_spec(leaky.name, seed))
    assert {fingerprint for fingerprint, _ in leaky.seen} == fit | val
    assert "withheld_validation" not in control["pretraining"]


def test_a_budget_curves_validation_shapes_never_reach_the_label_readers_pretraining(recorders, tmp_path):
    reader, _ = recorders
    run = dataclasses.replace(_spec(reader.name), results_dir=str(tmp_path))
    spec = curve_mod.CurveSpec(run=run, epochs=(1, 2), seeds=(0,), split="val")
    out = curve_mod.run_curve(spec)
    meta = json.loads(out["csv"].with_suffix(".json").read_text())["splits"]["0"]
    train = validate_run(spec.run).train_data
    train.prepare()
    scored = {_fingerprint(train[i]["points"]) for i in meta["val_indices"]}
    seen = {fingerprint for fingerprint, _ in reader.seen}
    assert len(scored) == 4 and seen and seen.isdisjoint(scored)


def test_the_withheld_positions_enter_the_key_and_a_leaky_cache_is_not_reused(recorders, tmp_path):
    reader, _ = recorders
    plan = validate_run(_spec(reader.name))
    wrapped, whole = plan.pre_data, plan.pre_data.parent
    assert isinstance(wrapped, WithoutValidation)
    before = {g: wrapped.settings(g) for g in wrapped.groups()}  # unprepared: the index is carved, nothing built
    assert not any(default_root().glob("synth/processed/*.h5"))
    wrapped.prepare()
    after = {g: wrapped.settings(g) for g in wrapped.groups()}
    assert before == after  # synth skips no shape: planning and training agree on the key
    for g in whole.groups():
        extra = {k: v for k, v in after[g].items() if k not in whole.settings(g)}
        assert list(extra) == ["withheld_validation"] and extra["withheld_validation"]["n"] == 4
    leaky = pretrain_or_load(plan.method, whole, 0, torch.device("cpu"), tmp_path, progress=False)
    method = reader.from_preset("quick")
    served = pretrain_or_load(method, wrapped, 0, torch.device("cpu"), tmp_path, progress=False)
    assert not served["cached"] and served["key"] != leaky["key"] and "from_snapshot" not in method.pretrain_info
    assert served["withheld_validation"]["positions"] == wrapped.withheld.tolist()
    other_seed = WithoutValidation(whole, 1)
    assert not np.array_equal(other_seed.withheld, wrapped.withheld)
    assert other_seed.settings("points") != wrapped.settings("points")


def test_where_preparing_skips_a_shape_the_key_planned_from_existing_caches_is_the_trained_ones(recorders, tmp_path):
    root = tmp_path / "data"
    shutil.move(make_modelnet40(tmp_path / "src"), link_raw(root, "modelnet10") / "ModelNet10")  # a corrupt toilet
    spec = RunSpec(method=_Recorder.name, task="modelnet10-svm", device="cpu", data_root=str(root), progress=False,
                   overrides={"data.categories": "chair,toilet", "data.n_points": "64", "data.workers": "1"})
    trained = validate_run(spec).pre_data
    trained.prepare()
    assert (len(trained.parent.shapes), len(trained.parent), len(trained.withheld)) == (5, 4, 2)
    planned = validate_run(spec).pre_data  # its caches exist now; planning opens none for good
    assert {g: planned.settings(g) for g in planned.groups()} == {g: trained.settings(g) for g in trained.groups()}
    assert planned.parent._valid is None
    train = validate_run(spec).train_data  # the split `bench curve --split val` carves
    train.prepare()
    scored = {train.shape_name(int(i)) for i in carve_validation(train.labels, curve_mod.VAL_FRACTION, 0)[1]}
    assert scored == {trained.parent.shape_name(int(i)) for i in trained.withheld}


def test_every_other_methods_pretraining_data_and_key_are_untouched():
    for name in METHODS.names():
        cls = METHODS.get(name)
        if not cls.pretrain_modalities or cls.reads_labels:
            continue
        plan = validate_run(RunSpec(method=name, task="synth-svm" if cls.embed_modalities else "synth-recon",
                                    device="cpu", overrides=TINY_SYNTH, progress=False))
        assert not isinstance(plan.pre_data, WithoutValidation), name
        assert pretraining_data(plan.method, plan.pre_data, 0, "synth") is plan.pre_data, name
    plan = validate_run(_spec("parae-pointnet"))
    data = plan.pre_data
    fresh = type(data)("train", data.modalities, data.config, data.root, progress=False, prepare=False)
    settings = {g: fresh.settings(g) for g in fresh.groups()}
    assert {g: data.settings(g) for g in data.groups()} == settings
    # recorded before label readers withheld anything (a version bump or a new config key changes them: update)
    assert pretrain_key(plan.method, "synth", settings, 0) == "0a95237c51f36533"
    assert trajectory_key(plan.method, "synth", settings, 0) == "45e246dc1ca21cfc"


def test_a_label_reader_pretraining_on_another_dataset_withholds_nothing(recorders):
    reader, _ = recorders
    plan = validate_run(_spec(reader.name))
    assert pretraining_data(plan.method, plan.pre_data.parent, 0, "modelnet10") is plan.pre_data.parent


def test_the_withheld_fraction_is_the_budget_curves():
    assert curve_mod.VAL_FRACTION == SELECTION_VAL_FRACTION


def test_a_curve_point_scored_before_the_validation_part_was_withheld_is_not_reused(recorders, monkeypatch):
    """A label reader's curve points from a pretraining that saw the validation labels (before the carve existed)
    share every setting with today's: their identity must still differ, or a resumed curve would reuse them."""
    reader, control = recorders
    today = curve_mod.evaluation_identity(validate_run(_spec(reader.name)), "val")
    monkeypatch.setattr(reader, "reads_labels", False)
    assert curve_mod.evaluation_identity(validate_run(_spec(reader.name)), "val") != today
    other = curve_mod.evaluation_identity(validate_run(_spec(control.name)), "val")
    monkeypatch.setattr(control, "reads_labels", True)
    assert curve_mod.evaluation_identity(validate_run(_spec(control.name)), "val") != other
