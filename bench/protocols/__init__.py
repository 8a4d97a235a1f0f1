"""Evaluation protocols; each registers itself in ``PROTOCOLS``."""

from ssl3d.bench.protocols.base import (
    NEEDS, PROTOCOLS, EvalContext, Protocol, ProtocolResult, offered_modalities, register_protocol, usable_modalities,
)
from ssl3d.bench.protocols import classification as _classification  # noqa: F401
from ssl3d.bench.protocols import fewshot as _fewshot  # noqa: F401
from ssl3d.bench.protocols import ibsr as _ibsr  # noqa: F401
from ssl3d.bench.protocols import ibsr_seen as _ibsr_seen  # noqa: F401
from ssl3d.bench.protocols import reconstruction as _reconstruction  # noqa: F401
from ssl3d.bench.protocols import retrieval as _retrieval  # noqa: F401
from ssl3d.bench.protocols import segmentation as _segmentation  # noqa: F401
from ssl3d.bench.protocols import semseg as _semseg  # noqa: F401  (semseg, semseg-areas)
from ssl3d.bench.protocols import svm as _svm  # noqa: F401

__all__ = ["NEEDS", "PROTOCOLS", "EvalContext", "Protocol", "ProtocolResult", "offered_modalities", "register_protocol",
           "usable_modalities"]
