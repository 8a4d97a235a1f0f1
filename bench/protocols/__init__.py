"""Evaluation protocols; each registers itself in ``PROTOCOLS``."""

from ssl3d.bench.protocols.base import PROTOCOLS, EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols import ibsr as _ibsr  # noqa: F401
from ssl3d.bench.protocols import reconstruction as _reconstruction  # noqa: F401
from ssl3d.bench.protocols import retrieval as _retrieval  # noqa: F401
from ssl3d.bench.protocols import segmentation as _segmentation  # noqa: F401
from ssl3d.bench.protocols import svm as _svm  # noqa: F401

__all__ = ["PROTOCOLS", "EvalContext", "Protocol", "ProtocolResult", "register_protocol"]
