"""The protocol base class: frozen (or fine-tuned) features -> metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ssl3d.core.registry import Registry


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
    features), ``"point_features"`` or ``"reconstruct"``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    needs: ClassVar[str] = "embed"

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def dataset_modalities(self, modality: str) -> tuple[str, ...]:
        """Modalities the protocol reads from the evaluation splits."""
        return (modality,)

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        raise NotImplementedError


PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", "ssl3d.protocols", base=Protocol)
register_protocol = PROTOCOLS.register
