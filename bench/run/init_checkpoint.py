"""Published checkpoints under the suite's protocols: the check before a run, and how a run is told apart.

``--set method.init_checkpoint=PATH`` starts a method from a paper's released weights: ``Method.pretrain``
builds the networks, loads the file through the method's ``load_official_state`` hook, then pretrains for
``train.epochs`` (0: the checkpoint is evaluated as it is). This module is the runner's side:

* :func:`method_from_preset` builds the run's method and, before anything is written, refuses a method that
  cannot read a checkpoint and reads the file once into a scratch copy of the networks, so a missing,
  damaged or foreign file, or the first key or shape that does not fit, stops the run in ``validate_run``;
* the file's SHA-256, not its path, is the checkpoint's identity: in the pretraining cache key (through
  ``methods/config.py: weights_config``), in ``result.json`` (``pretraining.init_checkpoint``: path and
  digest, :func:`record_checkpoint`) and in the leaderboard's ``settings`` column, where
  :func:`checkpoint_label` shows it as ``sha256:<16 hex digits>``. Two files at one path are then two
  cells, one file under two paths (or on two machines) one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch

from ssl3d.core.config import ConfigError
from ssl3d.methods import METHODS, Method
from ssl3d.methods.checkpoint import PublishedCheckpointError, published_sha256
from ssl3d.methods.config import INIT_CHECKPOINT

__all__ = ["LABEL_DIGITS", "checkpoint_identity", "checkpoint_label", "method_from_preset", "record_checkpoint"]

LABEL_DIGITS = 16  # hex digits of the SHA-256 shown in the leaderboard's settings (64 bits)


def method_from_preset(method_cls: type[Method], preset: str, overrides: Mapping[str, Any]) -> Method:
    """``method_cls.from_preset(preset, overrides)``, its ``init_checkpoint`` (if any) checked against its networks.

    Raises:
        ConfigError: ``init_checkpoint`` set for a method that cannot load a published checkpoint.
        PublishedCheckpointError: the file is missing, unreadable or not a state dict, or a key or shape of it
            does not fit (the first one named); nothing has been written.
    """
    if INIT_CHECKPOINT in overrides and not method_cls.loads_published_checkpoints():
        able = [n for n in METHODS.names() if METHODS.get(n).loads_published_checkpoints()]
        raise ConfigError(f"--set method.{INIT_CHECKPOINT}: method {method_cls.name!r} cannot start from a published "
                          f"checkpoint (methods that can: {', '.join(able) or 'none'}; to wrap another, see "
                          "docs/adding-a-method.md#evaluating-a-published-checkpoint)")
    method = method_cls.from_preset(preset, overrides)
    path = getattr(method.config, INIT_CHECKPOINT, None)
    if path is not None:
        scratch = method_cls(method.config)
        with torch.random.fork_rng(devices=[]):  # building draws random weights: the run's stream stays as it was
            scratch.model = scratch.build_model()
        scratch.load_published_checkpoint(path)
    return method


def checkpoint_identity(method: Method) -> tuple[str, str] | None:
    """``method``'s published checkpoint as this run names it: (the path as set, the file's SHA-256); None without."""
    path = getattr(method.config, INIT_CHECKPOINT, None)
    return None if path is None else (path, published_sha256(path))


def record_checkpoint(method: Method, identity: tuple[str, str] | None) -> None:
    """Make ``method`` name this run's checkpoint file once its weights are final.

    A cached pretraining holds the config and record of the run that trained it, whose path may be another
    (the key holds the digest only): its config and ``pretrain_info["init_checkpoint"]`` get this run's. Weights
    loaded from other bytes than the key's digest (the file changed meanwhile) are refused.
    """
    if identity is None:
        return
    path, digest = identity
    loaded = (method.pretrain_info.get(INIT_CHECKPOINT) or {}).get("sha256", digest)
    if loaded != digest:
        raise PublishedCheckpointError(path, f"changed while this run read it (SHA-256 {digest[:LABEL_DIGITS]} "
                                             f"when checked, {loaded[:LABEL_DIGITS]} when loaded); run it again")
    method.config = dataclasses.replace(method.config, **{INIT_CHECKPOINT: path})
    method.pretrain_info[INIT_CHECKPOINT] = {"path": os.path.abspath(path), "sha256": digest}


def checkpoint_label(value: str, pretrain_info: Mapping[str, Any] | None = None) -> str:
    """How the settings column shows ``--set method.init_checkpoint=value``: ``sha256:<16 hex digits>``.

    The digest is the one the run recorded in ``pretrain_info``; without it (``bench suite`` matching what is
    done), the file's; ``value`` itself when the file cannot be read (the run will refuse it).
    """
    recorded = ((pretrain_info or {}).get(INIT_CHECKPOINT) or {}).get("sha256")
    if recorded is None:
        try:
            recorded = published_sha256(value)
        except PublishedCheckpointError:
            return value
    return f"sha256:{recorded[:LABEL_DIGITS]}"
