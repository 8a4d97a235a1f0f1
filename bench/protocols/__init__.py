"""Evaluation protocols; each registers itself in ``PROTOCOLS``."""

from ssl3d.bench.protocols.base import PROTOCOLS, EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols import svm as _svm  # noqa: F401  (registers "svm")

__all__ = ["PROTOCOLS", "EvalContext", "Protocol", "ProtocolResult", "register_protocol"]
