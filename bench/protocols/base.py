"""The protocol base class: frozen (or fine-tuned) features -> metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ssl3d.core.config import apply_overrides
from ssl3d.core.registry import Registry

if TYPE_CHECKING:  # annotations only: the protocols never import a method or a task at run time
    from ssl3d.bench.protocols.tasks import Task
    from ssl3d.methods import Method

#: what a protocol can need from a method -> (the Method attribute listing the modalities it offers, the verb for messages)
NEEDS: dict[str, tuple[str, str]] = {
    "embed": ("embed_modalities", "embeds"),
    "point_features": ("point_feature_modalities", "gives per-point features for"),
    "reconstruct": ("reconstruct_modalities", "reconstructs voxels from"),
}


def offered_modalities(method_cls: type[Method], needs: str) -> frozenset[str]:
    """The modalities ``method_cls`` declares for what a protocol ``needs`` (a key of :data:`NEEDS`)."""
    return getattr(method_cls, NEEDS[needs][0])


def usable_modalities(method_cls: type[Method], task: Task, needs: str) -> tuple[str, ...]:
    """The task's modalities the method offers for ``needs``, in the task's order of preference."""
    offered = offered_modalities(method_cls, needs)
    return tuple(m for m in task.modalities if m in offered)


@dataclass
class EvalContext:
    """What a protocol needs from the run besides data and method.

    Args:
        seed: seeds every random choice of the protocol (CV folds, label subsets, heads).
        device: where networks run.
        batch_size: feature-extraction batch size.
        progress: show progress bars.
    """

    seed: int = 0
    device: str = "cpu"
    batch_size: int = 32
    progress: bool = True


@dataclass
class ProtocolResult:
    """Metrics (percentages unless the name says otherwise) and protocol details for the result file."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    #: arrays worth keeping with the run (e.g. test embeddings for t-SNE), saved as artifacts.npz
    artifacts: dict[str, Any] = field(default_factory=dict)


class Protocol:
    """Base class: subclasses set ``name``, ``Config`` and implement :meth:`evaluate`.

    ``needs`` names the method capability the protocol uses: ``"embed"`` (global
    features), ``"point_features"`` or ``"reconstruct"``. :meth:`supports` is the
    one answer to "can this method run this task?" (``bench run``, ``bench suite``
    and ``bench list`` all ask it); a protocol with further requirements
    overrides it and calls ``super()`` first.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    needs: ClassVar[str] = "embed"

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def for_task(cls, task: Task, overrides: Mapping[str, Any] | None = None) -> "Protocol":
        """The protocol configured as ``task`` fixes it, then by ``--set <protocol>.KEY=VALUE`` ``overrides``."""
        section = f"{cls.name}."
        config = apply_overrides(cls.Config(), task.protocol_options, section=section)
        return cls(apply_overrides(config, dict(overrides or {}), section=section))

    def supports(self, method_cls: type[Method], task: Task, modality: str | None = None) -> str | None:
        """None when this protocol can evaluate ``method_cls`` on ``task``, else why not.

        Args:
            method_cls: the method class (nothing is built or pretrained).
            task: a task of this protocol.
            modality: the evaluated modality; None asks whether any of the task's modalities works.

        Returns:
            None, or the reason as a phrase whose subject is the method
            (``"embeds views; synth-seg needs one of points"``), so callers put the method's name in front.
        """
        offered = offered_modalities(method_cls, self.needs)
        what = f"{NEEDS[self.needs][1]} {', '.join(sorted(offered)) or 'nothing'}"
        if modality is None:
            if not usable_modalities(method_cls, task, self.needs):
                return f"{what}; {task.name} needs one of {', '.join(task.modalities)}"
        elif modality not in task.modalities:
            return f"cannot be evaluated on {modality!r}: {task.name} evaluates {', '.join(task.modalities)}"
        elif modality not in offered:
            return f"{what}, not {modality}"
        return None

    def check_run(self, method: Method, data_config: Any) -> None:
        """Checks that need the resolved method and data settings (``--set`` included); raise ``ConfigError``.

        Called by ``bench run``'s validation before anything is written, cached or pretrained; ``supports``
        answers for the class and the task alone (what ``bench list`` and ``bench suite`` plan with).
        """

    def check_data(self, train_data: Any, test_data: Any) -> None:
        """Checks that need the indexed splits (built with ``prepare=False``: no cache yet); raise ``ConfigError``.

        Called at the end of ``bench run``'s validation, so that a setting the data cannot serve (a few-shot
        setting with too few classes, a missing gallery dataset) fails before the pretraining, not after it.
        """

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        """Modalities the protocol reads from the evaluation splits: the embedded one (a photo with its mask)."""
        return (modality, "mask") if modality == "image" else (modality,)  # image encoders read RGB + mask

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        raise NotImplementedError


PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", "ssl3d.protocols", base=Protocol)
register_protocol = PROTOCOLS.register
