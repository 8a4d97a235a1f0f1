"""The Method base class: one ``pretrain / embed`` interface for every pretext task.

A method subclass declares its ``name``, the modalities its pretext task
consumes and those it can embed, a ``Config`` dataclass (presets ``paper`` and
``quick``), and four small hooks:

* :meth:`Method.build_model` - the networks (an ``nn.Module``);
* :meth:`Method.training_step` - one batch -> a dict with the ``loss``;
* :meth:`Method.embed_batch` - one batch -> global features [B, D];
* :meth:`Method.encoder` - the trainable encoder of a modality, for fine-tuning.

Optional hooks: :meth:`Method.point_features_batch` (segmentation),
:meth:`Method.reconstruct_batch` (reconstruction),
:meth:`Method.ibsr_similarity_batch` (query-conditioned retrieval),
:meth:`Method.pretrain_dataset`, :meth:`Method.data_overrides`,
:meth:`Method.configure_optimizer`, :meth:`Method.lr_factor` and
:meth:`Method.on_epoch_start` (per-epoch state such as a sampler's epoch).

The shared loop in :mod:`ssl3d.methods.trainer` does the rest (optimiser,
schedule, progress, checkpoints, resume, non-finite loss checks), so method
files stay short. Following scikit-learn, ``__init__`` only stores the config;
the networks exist after :meth:`Method.pretrain` or :meth:`Method.load_state_dict`,
and using a method before either raises :class:`NotPretrainedError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from ssl3d.core.config import apply_overrides, build_preset, from_dict, to_dict
from ssl3d.core.registry import Registry
from ssl3d.methods.checkpoint import PublishedCheckpointError, read_published_checkpoint
from ssl3d.methods.config import INIT_CHECKPOINT, MethodConfig
from ssl3d.methods.run_context import RunContext
from ssl3d.methods.trainer import fit

METHODS: Registry[type["Method"]] = Registry("method", "ssl3d.methods", base="ssl3d.methods.base:Method")
register_method = METHODS.register


class NotPretrainedError(RuntimeError):
    """A method used before ``pretrain()`` or ``load_state_dict()``."""


class Method:
    """Base class of self-supervised methods and baselines (see module docstring)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    pretrain_modalities: ClassVar[frozenset[str]] = frozenset()
    embed_modalities: ClassVar[frozenset[str]] = frozenset()
    #: modalities that point_features() accepts (segmentation protocols)
    point_feature_modalities: ClassVar[frozenset[str]] = frozenset()
    #: modalities that reconstruct() decodes from (reconstruction protocol)
    reconstruct_modalities: ClassVar[frozenset[str]] = frozenset()
    #: whether ibsr_similarity_batch() is implemented (query-conditioned shape embedding)
    query_conditioned: ClassVar[bool] = False
    #: a registered method whose untrained network (``train.epochs=0``: the seeded initialisation) is bitwise
    #: this one's, with the same embeddings: an ablation that changes only the pretext loss or augmentation.
    #: Its untrained runs then stand for this method's (``bench.untrained``), so a suite evaluates the network
    #: once; ``methods.testing.check_untrained_twin`` verifies the claim
    untrained_network_of: ClassVar[str] = ""
    #: whether pretraining reads class labels (a sample's ``label``): such a method is not purely
    #: self-supervised; ``methods.testing.check_reads_labels`` verifies the claim against what
    #: ``training_step`` reads, pages mark its rows, and its pretraining never sees the validation
    #: split carved from train (bench/features/splits.py)
    reads_labels: ClassVar[bool] = False
    #: a control, not a pretext task: a fixed representation (a random network or a handcrafted
    #: descriptor) that a pretrained one of the same modality must beat; pages report every method's
    #: gain over the strongest control of its modality (docs/methods.md#controls)
    control: ClassVar[bool] = False
    #: the paper this method implements (for result files and docs)
    paper: ClassVar[str] = ""
    #: part of the pretraining cache key: bump it whenever a code change alters what pretraining
    #: produces, or runs keep reusing weights cached by the old code
    version: ClassVar[str] = "1"

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.model: nn.Module | None = None
        self.pretrain_info: dict[str, Any] = {}

    @property
    def pretrains(self) -> bool:
        """Whether pretraining does anything: the method has a pretext task and ``train.epochs > 0``.

        The one answer to "does this method pretrain?" for the loop, the cache, the runner, the
        suite, curves and ``bench perf`` (``epochs == 0`` is the untrained network).
        """
        return bool(self.pretrain_modalities) and self.config.train.epochs > 0

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str = "paper", overrides: Mapping[str, Any] | None = None) -> "Method":
        """A method configured by a preset plus dotted overrides."""
        config = build_preset(cls.Config, preset)
        if overrides:
            config = apply_overrides(config, overrides, section="method.")
        return cls(config)

    # -- hooks for subclasses -----------------------------------------------------
    def build_model(self) -> nn.Module:
        """Create the networks (called once at the start of pretraining or loading)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Loss of one batch: a dict with key ``loss`` (+ any scalar terms to log)."""
        raise NotImplementedError(f"{self.name} has no pretext task")

    def embed_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        """Global features [B, D] of one batch (called in eval mode, without grad)."""
        raise NotImplementedError

    def point_features_batch(self, points: torch.Tensor) -> torch.Tensor:
        """Per-point features [B, N, D] (called in eval mode, without grad)."""
        raise NotImplementedError(f"{self.name} does not provide per-point features")

    def encoder(self, modality: str) -> nn.Module:
        """The trainable encoder of ``modality`` (shares weights with the method)."""
        raise NotImplementedError(f"{self.name} exposes no encoder for {modality!r}")

    def reconstruct_batch(self, batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        """Occupancy probabilities [B, R, R, R] decoded from ``batch[modality]`` (voxel decoders only)."""
        raise NotImplementedError(f"{self.name} has no voxel decoder")

    def ibsr_similarity_batch(self, query: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Similarity [Q, G] of query embeddings [Q, D] to shapes given by their views [G, V, C, H, W].

        Optional: methods whose shape embedding depends on the query (CMIC's
        attention over views) override this; others are scored by plain
        embeddings (see the ``ibsr`` protocol).
        """
        raise NotImplementedError(f"{self.name} has no query-conditioned shape embedding")

    def pretrain_dataset(self, data: Dataset) -> Dataset:
        """Wrap the pretraining data (pair sampling, augmentation); default: as is."""
        return data

    def data_overrides(self) -> dict[str, Any]:
        """Dataset settings this config needs (e.g. ``{"view_size": 64}``) - applied by the runner."""
        return {}

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimiser described by ``config.train`` (override for parameter groups)."""
        train = self.config.train
        params = [p for p in model.parameters() if p.requires_grad]
        if train.optimizer == "sgd":
            return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov,
                                   weight_decay=train.weight_decay)
        algo = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
        return algo(params, lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay)

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier at the start of ``epoch`` (0-based), from ``config.train``."""
        train = self.config.train
        if train.scheduler == "step":
            return train.gamma ** (max(0, epoch - train.schedule_start) // train.step_size)
        if train.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / max(1, train.epochs)))
        return 1.0

    def schedule_reads_total_epochs(self) -> bool:
        """Whether any epoch's training depends on ``config.train.epochs`` (a cosine schedule does).

        When it does not, the first E epochs of a longer pretraining are an E-epoch pretraining, and the
        cache serves one from the other's snapshot (bench/run/pretrain_cache.py). A method whose ``lr_factor``,
        ``on_epoch_start``, ``training_step`` or ``pretrain_dataset`` reads the total must override this;
        ``check_method`` tests the answer.
        """
        return self.config.train.scheduler == "cosine"

    def on_epoch_start(self, epoch: int, run_seed: int) -> None:
        """Called by the training loop before each epoch (0-based), also for the first epoch of a resumed run.

        For per-epoch state: a sampler's permutation, a loss weight that ramps
        over epochs, random draws seeded by ``(run_seed, epoch)``. Default: nothing.
        """

    # -- the public contract ------------------------------------------------------------
    @property
    def is_pretrained(self) -> bool:
        return self.model is not None

    def _check_pretrained(self) -> nn.Module:
        if self.model is None:
            raise NotPretrainedError(
                f"method {self.name!r} has not been pretrained: call pretrain(data, run) or load_state_dict() first"
            )
        return self.model

    def require_pretrained(self) -> nn.Module:
        """The networks, for code outside the method (protocols); raises :class:`NotPretrainedError` before
        :meth:`pretrain` or :meth:`load_state_dict`."""
        return self._check_pretrained()

    def pretrain(self, data: Dataset, run: RunContext | None = None) -> "Method":
        """Build the networks and run the pretext task on ``data`` (labels unused unless :attr:`reads_labels`:
        the runner then passes the train split without the validation part, bench/run/pretrain_cache.py).

        With ``config.init_checkpoint`` set, the published checkpoint replaces the built networks' weights before
        the first step (``train.epochs=0``: it is evaluated as it is), and ``pretrain_info["init_checkpoint"]``
        records its path and SHA-256.
        """
        run = run or RunContext()
        with self._loading_published_checkpoint() as record:
            fit(self, data, run)
        if record:
            self.pretrain_info[INIT_CHECKPOINT] = record
            if not self.pretrains:
                self.pretrain_info["note"] = "the published checkpoint as it is, no pretraining"
        self.after_pretraining(data)
        return self

    # -- published checkpoints (docs/adding-a-method.md#evaluating-a-published-checkpoint) ---------------------
    def load_official_state(self, state: Mapping[str, Any]) -> None:
        """Load a published checkpoint into the built networks (``self.model``), all or nothing.

        ``state`` is the file as ``torch.load`` gives it, in the official code's key layout. Map its keys onto
        ours, check every name and shape, then load; raise ValueError naming the first key that does not fit,
        before any weight changes. A method that overrides this also declares a ``str | None`` field
        ``init_checkpoint`` in its config (``--set method.init_checkpoint=PATH``).
        """
        raise ValueError(f"method {self.name!r} cannot load a published checkpoint (no load_official_state)")

    @classmethod
    def loads_published_checkpoints(cls) -> bool:
        """Whether ``--set method.init_checkpoint=PATH`` works: the config has the field and the hook is written."""
        declared = any(f.name == INIT_CHECKPOINT for f in dataclasses.fields(cls.Config))
        return declared and cls.load_official_state is not Method.load_official_state

    def load_published_checkpoint(self, path: str) -> dict[str, str]:
        """Read ``path`` and load it into the built networks through :meth:`load_official_state`.

        Returns its record (path, SHA-256). Raises ``PublishedCheckpointError`` (a UserError) naming the file
        and what is wrong with it: unreadable, not a state dict, or the first key or shape that does not fit.
        """
        checkpoint = read_published_checkpoint(path)
        try:
            self.load_official_state(checkpoint.state)
        except ValueError as exc:
            raise PublishedCheckpointError(checkpoint.path, str(exc)) from None
        return checkpoint.record()

    @contextlib.contextmanager
    def _loading_published_checkpoint(self) -> Iterator[dict[str, str]]:
        """While :func:`fit` runs, ``build_model`` also loads ``config.init_checkpoint``; yields its record.

        fit seeds, builds and only then trains, so the file's weights replace the seeded ones before the first
        step, and a resumed ``last.pt`` replaces both; parts the file does not hold keep their seeded
        initialisation. Only this instance's ``build_model`` is wrapped, and only while fit runs: the loop stays
        unaware of checkpoints, and :meth:`load_state_dict` (a cached pretraining) builds without reading the file.
        """
        path, record = getattr(self.config, INIT_CHECKPOINT, None), {}
        if path is None:
            yield record
            return
        build = self.build_model

        def build_and_load() -> nn.Module:
            self.model = build()
            record.update(self.load_published_checkpoint(path))
            return self.model

        self.build_model = build_and_load  # type: ignore[method-assign]
        try:
            yield record
        finally:
            del self.build_model

    def after_pretraining(self, data: Dataset) -> None:
        """Called once the weights are final: after :meth:`pretrain`, and after the pretraining cache served them
        from a longer pretraining's snapshot (bench/run/pretrain_cache.py), so records computed from the trained
        networks (CM-CV's pretext metrics in ``pretrain_info``) exist either way. Default: nothing."""

    def _check_modality(self, modality: str, allowed: frozenset[str], what: str) -> None:
        if modality not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"method {self.name!r} cannot {what} {modality!r}; it accepts: {valid}")

    @torch.no_grad()
    def embed(self, batch: Mapping[str, torch.Tensor], modality: str) -> torch.Tensor:
        """Global features [B, D] of ``batch[modality]`` in eval mode (CPU float tensor)."""
        self._check_modality(modality, self.embed_modalities, "embed")
        model = self._check_pretrained()
        model.eval()
        device = next(model.parameters()).device
        moved = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return self.embed_batch(moved, modality).float().cpu()

    @torch.no_grad()
    def point_features(self, points: torch.Tensor) -> torch.Tensor:
        """Per-point features [B, N, D] of points [B, N, 3] in eval mode."""
        self._check_modality("points", self.point_feature_modalities, "give per-point features for")
        model = self._check_pretrained()
        model.eval()
        device = next(model.parameters()).device
        return self.point_features_batch(points.to(device)).float().cpu()

    @torch.no_grad()
    def reconstruct(self, batch: Mapping[str, torch.Tensor], modality: str) -> torch.Tensor:
        """Occupancy probabilities [B, R, R, R] in eval mode (CPU float tensor)."""
        self._check_modality(modality, self.reconstruct_modalities, "reconstruct voxels from")
        model = self._check_pretrained()
        model.eval()
        device = next(model.parameters()).device
        moved = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return self.reconstruct_batch(moved, modality).float().cpu()

    def state_dict(self) -> dict[str, Any]:
        """Weights + config + pretraining info (loadable with ``weights_only=True``)."""
        model = self._check_pretrained()
        return {
            "method": self.name,
            "version": self.version,
            "config": to_dict(self.config),
            "model": model.state_dict(),
            "pretrain_info": self.pretrain_info,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> "Method":
        """Restore a :meth:`state_dict`; the stored config replaces the current one."""
        if state.get("method") != self.name:
            raise ValueError(f"state dict is for method {state.get('method')!r}, not {self.name!r}")
        self.config = from_dict(self.Config, state["config"])
        self.model = self.build_model()
        self.model.load_state_dict(state["model"])
        self.pretrain_info = dict(state.get("pretrain_info", {}))
        return self

    def to(self, device: torch.device | str) -> "Method":
        self._check_pretrained().to(device)
        return self

    def __repr__(self) -> str:
        state = "pretrained" if self.is_pretrained else "not pretrained"
        return f"{type(self).__name__}(name={self.name!r}, {state})"
