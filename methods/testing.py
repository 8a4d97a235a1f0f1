"""A testing kit for method authors: fake data shaped like the data contract, and the Method contract checks.

A plugin's test suite needs one line per method::

    from ssl3d.methods.testing import check_method

    def test_rotnet_meets_the_method_contract():
        check_method(RotNet)

:func:`check_method` runs the checks every built-in method passes
(``tests/test_methods_contract.py`` calls it for each registered one), on
random tensors from :func:`fake_batch`, so it needs no dataset on disk:

* the class declares a name, a ``Config`` with ``paper`` and ``quick``
  presets (each of which constructs), a ``version`` and what it embeds;
* before ``pretrain()`` / ``load_state_dict()``, ``embed`` and ``state_dict``
  raise :class:`~ssl3d.methods.base.NotPretrainedError`;
* ``pretrain()`` runs one step of the shared loop on fake data with a finite loss;
* the pretext loss goes down: on one fixed fake batch, with the same random
  draws at every step (the loss is then a fixed function of the weights),
  ``loss_steps`` steps of the method's own optimiser lower it, at the
  configured learning rate or, from the same weights, at one of
  :data:`LR_SCALES` times it (the ``quick`` rates suit real batches of 16-32
  and can overshoot on 4 random items; a loss the weights do not move fails
  at every rate);
* ``embed`` gives finite [B, D] features, identical on a second call (eval
  mode); ``encoder`` returns a module made of the method's own weights;
  ``point_features``, ``reconstruct`` and ``ibsr_similarity_batch`` give
  their documented shapes where the method declares them;
* unless :meth:`Method.schedule_reads_total_epochs` says an epoch reads the total, the epoch-2
  snapshot of a 3-epoch pretraining equals a 2-epoch pretraining bitwise (the pretraining cache
  serves one for the other: bench/run/pretrain_cache.py);
* the state dict survives ``torch.save`` / ``torch.load(weights_only=True)``
  into a fresh instance that embeds identically;
* ``reads_labels`` is whether the loss moves when a fake batch is relabelled (:func:`check_reads_labels`);
* a method declaring ``untrained_network_of`` (:func:`check_untrained_twin`)
  reads the same data settings and builds, from the same seed, the same
  tensors as that method under every preset, and both untrained networks
  answer every protocol hook (embed, reconstruct, point features, ibsr
  similarity) identically on a fake batch.

A failed check raises ``AssertionError`` naming the method and the check.
"""

from __future__ import annotations

import copy
import io
import math
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from ssl3d.core.config import apply_overrides
from ssl3d.core.seeding import seed_everything
from ssl3d.datasets import DataConfig
from ssl3d.datasets.modalities.cameras import rig_size
from ssl3d.methods.backbones.pretrained import local_weights_only
from ssl3d.methods.base import METHODS, Method, NotPretrainedError
from ssl3d.methods.checkpoint import load_checkpoint
from ssl3d.methods.config import MethodConfig
from ssl3d.methods.run_context import RunContext
from ssl3d.methods.trainer import snapshot_path

__all__ = ["FakeShapes", "SMALL_DATA", "check_method", "check_reads_labels", "check_untrained_twin", "fake_batch"]

#: data settings that keep fake batches small (tests); a method's own data settings still win
SMALL_DATA = {"n_points": 128, "view_size": 32, "image_size": 32}
#: learning-rate multipliers the loss-lowering check tries in turn (see _check_loss_decreases)
LR_SCALES = (1.0, 0.1, 0.01, 0.001)


def fake_batch(method: Method, batch_size: int, *, small: bool = False, seed: int = 0,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Random tensors with the data contract's keys and shapes under ``method``'s data settings.

    Args:
        method: its ``data_overrides()`` size the tensors (views, points, images).
        batch_size: items in the batch.
        small: apply :data:`SMALL_DATA` first (tests), before the method's own settings.
        seed: the tensors are a function of it.
        device: where the tensors go.
    """
    cfg = apply_overrides(DataConfig(), {**(SMALL_DATA if small else {}), **method.data_overrides()})
    g = torch.Generator().manual_seed(seed)
    n_views = rig_size(cfg.view_rig, cfg.n_views)
    res = cfg.voxel_resolution
    points = torch.randn(batch_size, cfg.n_points, 3, generator=g)
    batch = {
        "points": points / points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True),
        "normals": torch.nn.functional.normalize(torch.randn(batch_size, cfg.n_points, 3, generator=g), dim=-1),
        "voxels": (torch.rand(batch_size, res, res, res, generator=g) > 0.7).float(),
        "views": torch.rand(batch_size, n_views, 1, cfg.view_size, cfg.view_size, generator=g),
        "image": torch.rand(batch_size, 3, cfg.image_size, cfg.image_size, generator=g),
        "mask": (torch.rand(batch_size, cfg.image_size, cfg.image_size, generator=g) > 0.5).float(),
        "point_labels": torch.randint(0, 4, (batch_size, cfg.n_points), generator=g),
        "label": torch.arange(batch_size) % 2,
        "index": torch.arange(batch_size),
    }
    return {k: v.to(device) for k, v in batch.items()}


class FakeShapes(Dataset):
    """The items of one batch as a dataset, so that ``pretrain()`` can run on a :func:`fake_batch`."""

    def __init__(self, batch: Mapping[str, torch.Tensor]) -> None:
        self.batch = dict(batch)
        self.n = len(next(iter(self.batch.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[i] for key, value in self.batch.items()}


def check_method(cls: type[Method], *, preset: str = "quick", overrides: Mapping[str, Any] | None = None,
                 batch_size: int = 4, loss_steps: int = 1, seed: int = 0) -> None:
    """Run the Method contract checks (module docstring) on ``cls``; raise ``AssertionError`` on the first failure.

    Args:
        cls: the method class (registered or not).
        preset: the preset the behavioural checks use (``quick``: minutes on a CPU).
        overrides: dotted config overrides on top of ``preset`` (e.g. a smaller width).
        batch_size: items of the fake batches (at least 2: contrastive methods need negatives).
        loss_steps: optimiser steps of the loss-lowering check (a first-order check: one step at a
            small enough rate must lower a loss that depends on the weights); 0 skips it.
        seed: seeds the weights, the fake data and the random draws.
    """
    _check_declaration(cls)
    settings = {**(overrides or {}), "train.epochs": 1, "train.max_steps_per_epoch": 1,
                "train.batch_size": batch_size, "train.num_workers": 0}
    method = cls.from_preset(preset, settings)
    batch = fake_batch(method, batch_size, small=True, seed=seed)
    _check_refuses_before_pretraining(method, batch)

    seed_everything(seed)
    method.pretrain(FakeShapes(batch), RunContext(seed=seed, progress=False))
    _expect(method.is_pretrained, cls, "pretrain() must build the networks (method.model)")
    if method.pretrain_modalities:  # random-initialisation baselines have no pretext loss
        info = method.pretrain_info
        _expect(info.get("steps") == 1 and math.isfinite(info.get("final_loss", math.nan)), cls,
                f"pretrain() on fake data must run one step with a finite loss; pretrain_info: {info}")
        if loss_steps > 0:
            _check_loss_decreases(method, batch, loss_steps, seed)
    check_reads_labels(method, batch_size=batch_size, seed=seed)
    _check_outputs(method, batch)
    _check_state_round_trip(method, batch)
    if method.pretrain_modalities:
        _check_trajectory(cls, preset, overrides, batch, seed)
    check_untrained_twin(cls, preset=preset, overrides=overrides, seed=seed)


def check_reads_labels(method: type[Method] | Method, *, preset: str = "quick",
                       overrides: Mapping[str, Any] | None = None, batch_size: int = 4, seed: int = 0) -> None:
    """Raise ``AssertionError`` when ``reads_labels`` is False yet ``training_step``'s loss changes with the labels,
    or True yet it never does (a class is built from ``preset``; an instance is checked on a copy). Behavioural:
    one fake batch's loss under the same draws, with its labels and relabelled (shifted, all equal, all distinct:
    a loss reading only which items share a class moves under the last two); copying the key is no use."""
    probe = copy.deepcopy(method) if isinstance(method, Method) else method.from_preset(preset, overrides)
    cls, declared = type(probe), bool(type(probe).reads_labels)
    if not probe.pretrain_modalities:  # no pretext task: pretraining reads nothing
        _expect(not declared, cls, "reads_labels is True but the method has no pretext task (training_step)")
        return
    if probe.model is None:
        seed_everything(seed)
        probe.model = probe.build_model()
    device = next(probe.model.parameters(), torch.empty(0)).device
    batch = fake_batch(probe, batch_size, small=True, seed=seed, device=device)
    start, labels = copy.deepcopy(probe.model.state_dict()), batch["label"]

    def loss(new_labels: torch.Tensor) -> torch.Tensor:
        probe.model.load_state_dict(start)  # BatchNorm's running statistics move with every step
        probe.model.train()
        seed_everything(seed)
        with torch.no_grad():
            return probe.training_step({**batch, "label": new_labels}, 0)["loss"].detach()

    reference = loss(labels)
    _expect(torch.equal(reference, loss(labels)), cls, "its loss varies under fixed seeds: reads_labels unchecked")
    relabelled = ((labels + 1) % (int(labels.max()) + 1), 0 * labels, torch.arange(len(labels), device=device))
    moved = [not torch.equal(reference, loss(y)) for y in relabelled if not torch.equal(y, labels)]
    _expect(any(moved) == declared, cls, f"reads_labels is {declared} but training_step's loss "
            f"{'does not change when' if declared else 'changes with'} batch['label']; set reads_labels = "
            f"{not declared} (a label reader's pretraining withholds the validation split)")


def check_untrained_twin(cls: type[Method], *, preset: str = "quick", overrides: Mapping[str, Any] | None = None,
                         seed: int = 0) -> None:
    """Check ``cls.untrained_network_of``: under every preset, the named method's data settings and seeded
    initialisation are bitwise ``cls``'s; under ``preset`` (+ ``overrides``), the two untrained networks give
    identical embeddings, reconstructions, per-point features and query-conditioned similarities on a fake
    batch. Nothing to check when it is unset.

    The leaderboard then lets that method's untrained runs stand for ``cls``'s on every task
    (``ssl3d.bench.report.untrained``), so every hook a protocol may call is compared.
    """
    twin_name = getattr(cls, "untrained_network_of", "")
    if not twin_name:
        return
    _expect(twin_name != cls.name and twin_name in METHODS, cls,
            f"untrained_network_of={twin_name!r} must name another registered method")
    twin_cls = METHODS.get(twin_name)
    for what in ("embed_modalities", "reconstruct_modalities", "point_feature_modalities", "query_conditioned"):
        _expect(getattr(cls, what) == getattr(twin_cls, what), cls,
                f"untrained_network_of={twin_name!r}: `{what}` differs from {twin_name}'s")
    _expect(set(cls.Config.PRESETS) == set(twin_cls.Config.PRESETS), cls,
            f"untrained_network_of={twin_name!r}: the presets differ from {twin_name}'s")
    chosen = None  # the chosen preset's pair, kept for the hook comparison below (the others are dropped)
    for name in sorted(cls.Config.PRESETS):
        methods = _untrained_pair(cls, twin_cls, name, overrides if name == preset else None, seed)
        if name == preset:
            chosen = methods
        _expect(methods[0].data_overrides() == methods[1].data_overrides(), cls,
                f"untrained_network_of={twin_name!r}: preset {name!r} reads other data settings than {twin_name}'s")
        ours, theirs = (m.model.state_dict() for m in methods)
        _expect(list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours), cls,
                f"untrained_network_of={twin_name!r}: preset {name!r} seeded with {seed}, the networks' tensors differ")
    methods = chosen or _untrained_pair(cls, twin_cls, preset, overrides, seed)
    batch = fake_batch(methods[0], 2, small=True, seed=seed)
    calls = [(f"embed(batch, {m!r})", lambda method, m=m: method.embed(batch, m)) for m in sorted(cls.embed_modalities)]
    calls += [(f"reconstruct(batch, {m!r})", lambda method, m=m: method.reconstruct(batch, m))
              for m in sorted(cls.reconstruct_modalities)]
    if "points" in cls.point_feature_modalities:
        calls.append(("point_features(points)", lambda method: method.point_features(batch["points"])))
    if cls.query_conditioned:
        query_modality = "image" if "image" in cls.embed_modalities else sorted(cls.embed_modalities)[0]

        def similarity(method: Method) -> torch.Tensor:
            query = method.embed(batch, query_modality)
            method.model.eval()
            with torch.no_grad():
                return method.ibsr_similarity_batch(query, batch["views"])

        calls.append(("ibsr_similarity_batch(query, views)", similarity))
    for what, call in calls:
        _expect(torch.equal(call(methods[0]), call(methods[1])), cls,
                f"untrained_network_of={twin_name!r}: untrained, {what} differs from {twin_name}'s")


def _untrained_pair(cls: type[Method], twin_cls: type[Method], preset: str, overrides: Mapping[str, Any] | None,
                    seed: int) -> list[Method]:
    """Both methods under one preset, each with its networks built from ``seed`` (what ``train.epochs=0`` gives)."""
    methods = [c(local_weights_only(c.from_preset(preset, overrides).config)) for c in (cls, twin_cls)]  # no file: random
    for method in methods:
        seed_everything(seed)
        method.model = method.build_model()
    return methods


def _expect(condition: bool, cls: type[Method], message: str) -> None:
    # an explicit raise, not `assert`: the checks must also run under `python -O`
    if not condition:
        raise AssertionError(f"{getattr(cls, '__name__', cls)} ({getattr(cls, 'name', '')!r}): {message}")


def _check_declaration(cls: type[Method]) -> None:
    _expect(isinstance(cls, type) and issubclass(cls, Method), cls, "must be a subclass of ssl3d.methods.Method")
    _expect(isinstance(cls.name, str) and bool(cls.name), cls, "must set a non-empty `name`")
    _expect(isinstance(cls.version, str) and bool(cls.version), cls,
            "must have a string `version` (part of the pretraining cache key)")
    _expect(issubclass(cls.Config, MethodConfig), cls, "`Config` must derive from MethodConfig")
    _expect({"paper", "quick"} <= set(cls.Config.PRESETS), cls, "`Config.PRESETS` must define 'paper' and 'quick'")
    _expect(bool(cls.embed_modalities), cls, "must declare the modalities it embeds (`embed_modalities`)")
    for name in cls.Config.PRESETS:
        method = cls.from_preset(name)
        _expect(isinstance(method.config, cls.Config), cls, f"preset {name!r} must build a {cls.Config.__name__}")


def _check_refuses_before_pretraining(method: Method, batch: dict[str, torch.Tensor]) -> None:
    cls = type(method)
    for what, call in (("embed()", lambda: method.embed(batch, sorted(method.embed_modalities)[0])),
                       ("state_dict()", method.state_dict)):
        try:
            call()
        except NotPretrainedError:
            continue
        _expect(False, cls, f"{what} before pretrain() must raise NotPretrainedError")


def _check_loss_decreases(method: Method, batch: dict[str, torch.Tensor], steps: int, seed: int) -> None:
    model = method.require_pretrained()
    start = copy.deepcopy(model.state_dict())
    tried = []
    # The quick presets' learning rates are tuned for real batches of 16-32; on 4 random items with BatchNorm
    # they can overshoot, so smaller rates are tried from the same weights. A broken gradient path (a detached
    # or constant loss, frozen weights) lowers the loss at none of them.
    for lr_scale in LR_SCALES:
        model.load_state_dict(start)
        losses = _fixed_batch_losses(method, batch, steps, seed, lr_scale)
        if losses[-1] < losses[0]:
            return
        tried.append(f"lr x{lr_scale}: {[round(x, 5) for x in losses]}")
    _expect(False, type(method), f"{steps} optimiser steps on one fixed batch must lower the loss; {'; '.join(tried)}")


def _fixed_batch_losses(method: Method, batch: dict[str, torch.Tensor], steps: int, seed: int,
                        lr_scale: float) -> list[float]:
    """The loss before each of ``steps`` steps of the method's optimiser (rates scaled) and after the last."""
    model = method.require_pretrained()
    model.train()
    optimizer = method.configure_optimizer(model)
    for group in optimizer.param_groups:
        group["lr"] *= lr_scale
    losses = []
    for step in range(steps + 1):
        torch.manual_seed(seed)  # the same draws every step: the loss is a fixed function of the weights
        with torch.set_grad_enabled(step < steps):
            loss = method.training_step(batch, 0)["loss"]  # step 0 throughout: step-keyed draws stay fixed too
        losses.append(float(loss.detach()))
        if step < steps:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return losses


def _own_parameters(module: nn.Module, model: nn.Module) -> bool:
    owned = {id(p) for p in model.parameters()}
    params = list(module.parameters())
    return bool(params) and all(id(p) in owned for p in params)


def _check_outputs(method: Method, batch: dict[str, torch.Tensor]) -> None:
    cls, b = type(method), len(batch["index"])
    model = method.require_pretrained()
    for modality in sorted(method.embed_modalities):
        first, second = method.embed(batch, modality), method.embed(batch, modality)
        _expect(first.ndim == 2 and first.shape[0] == b, cls,
                f"embed(batch, {modality!r}) must be [B={b}, D]; got {tuple(first.shape)}")
        _expect(bool(torch.isfinite(first).all()), cls, f"embed(batch, {modality!r}) has non-finite values")
        _expect(torch.equal(first, second), cls, f"embed(batch, {modality!r}) differs between two calls in eval mode")
        encoder = method.encoder(modality)
        _expect(isinstance(encoder, nn.Module) and _own_parameters(encoder, model), cls,
                f"encoder({modality!r}) must be an nn.Module made of the method's own weights (not a copy)")
    if "points" in method.point_feature_modalities:
        features = method.point_features(batch["points"])
        n = batch["points"].shape[1]
        _expect(features.ndim == 3 and features.shape[:2] == (b, n) and bool(torch.isfinite(features).all()), cls,
                f"point_features(points) must be finite [B={b}, N={n}, D]; got {tuple(features.shape)}")
    for modality in sorted(method.reconstruct_modalities):
        occupancy = method.reconstruct(batch, modality)
        _expect(occupancy.ndim == 4 and occupancy.shape[0] == b and occupancy.shape[1:] == (occupancy.shape[1],) * 3,
                cls, f"reconstruct(batch, {modality!r}) must be [B={b}, R, R, R]; got {tuple(occupancy.shape)}")
        _expect(bool(((occupancy >= 0) & (occupancy <= 1)).all()), cls,
                f"reconstruct(batch, {modality!r}) must be occupancy probabilities in [0, 1]")
    if method.query_conditioned:  # the ibsr protocol's query is a photo when the method embeds one
        query_modality = "image" if "image" in method.embed_modalities else sorted(method.embed_modalities)[0]
        query = method.embed(batch, query_modality)
        model.eval()
        with torch.no_grad():
            similarity = method.ibsr_similarity_batch(query[:2], batch["views"])
        _expect(tuple(similarity.shape) == (2, b) and bool(torch.isfinite(similarity).all()), cls,
                f"ibsr_similarity_batch(query [2, D], views [B={b}, ...]) must be finite [2, {b}]; "
                f"got {tuple(similarity.shape)}")


def _check_trajectory(cls: type[Method], preset: str, overrides: Mapping[str, Any] | None,
                      batch: dict[str, torch.Tensor], seed: int) -> None:
    """Unless the method declares that an epoch reads the total, epoch 2 of 3 must be a 2-epoch pretraining."""
    def method(epochs: int) -> Method:
        return cls.from_preset(preset, {**(overrides or {}), "train.epochs": epochs, "train.max_steps_per_epoch": 1,
                                        "train.batch_size": len(batch["label"]), "train.num_workers": 0,
                                        "train.snapshot_epochs": (2,)})

    def pretrained(epochs: int, folder: str | None) -> Method:
        trained = method(epochs)
        trained.pretrain(FakeShapes(batch), RunContext(seed=seed, checkpoint_dir=Path(folder) if folder else None,
                                                       progress=False))
        return trained

    if method(3).schedule_reads_total_epochs():
        return  # declared: the pretraining cache never shares its snapshots
    with tempfile.TemporaryDirectory() as folder:
        pretrained(3, folder)
        snapshot = load_checkpoint(snapshot_path(folder, 2))["model"]
    short = pretrained(2, None).model.state_dict()
    differ = [k for k in short if not torch.equal(short[k], snapshot[k])]
    _expect(not differ, cls,
            f"schedule_reads_total_epochs() is False, yet epoch 2 of a 3-epoch pretraining differs from a 2-epoch "
            f"pretraining ({', '.join(differ[:3])}): the cache would serve one for the other; return True if an "
            "epoch's training reads config.train.epochs")


def _check_state_round_trip(method: Method, batch: dict[str, torch.Tensor]) -> None:
    cls = type(method)
    state = method.state_dict()
    _expect(state.get("version") == cls.version, cls, "state_dict() must record the class's `version`")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    clone = cls().load_state_dict(torch.load(buffer, weights_only=True))
    for modality in sorted(method.embed_modalities):
        _expect(torch.allclose(clone.embed(batch, modality), method.embed(batch, modality), atol=1e-6), cls,
                f"a state-dict round trip changes embed(batch, {modality!r})")
