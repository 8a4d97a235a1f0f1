"""The leaderboard's ``settings`` column: the ``--set`` overrides that make a run another experiment, as text.

Runs with different overrides (an RBF instead of a linear SVM, fine-tuned instead of frozen segmentation,
more epochs) are different experiments: the label keeps them in separate rows. A published checkpoint
(``method.init_checkpoint``) is shown by its file's digest, not its path (bench/run/init_checkpoint.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from ssl3d.bench.run.init_checkpoint import checkpoint_label

__all__ = ["RESULT_NEUTRAL_KEYS", "settings_label"]

# ``--set`` keys that change how fast a run goes, never its numbers: they do not split leaderboard groups
RESULT_NEUTRAL_KEYS = frozenset({"train.num_workers", "train.log_every", "train.snapshot_epochs", "data.workers",
                                 "segmentation.feature_cache_mb"})

_CHECKPOINT_KEY = "method.init_checkpoint"


def settings_label(overrides: Mapping[str, str] | None, pretrain_info: Mapping[str, Any] | None = None) -> str:
    """The run's ``--set`` overrides as one sorted ``key=value`` string ('' for the preset as it is).

    ``pretrain_info`` (the method's, after pretraining) gives the digest of the checkpoint the run loaded;
    without it the file named by the override is hashed.
    """
    shown = {k: v for k, v in (overrides or {}).items() if k not in RESULT_NEUTRAL_KEYS}
    if _CHECKPOINT_KEY in shown:
        shown[_CHECKPOINT_KEY] = checkpoint_label(shown[_CHECKPOINT_KEY], pretrain_info)
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
