"""Methods of ssl3d-bench behind one ``pretrain / embed`` interface.

``get_method(name)`` returns a registered method class, ``list_methods("parae-*")``
lists names with wildcards. Built-in methods register with ``@register_method``;
third-party packages register through the entry-point group ``ssl3d.methods``
(see docs/adding-a-method.md) and test themselves with
``ssl3d.methods.testing.check_method``.
"""

from ssl3d.methods.base import METHODS, Method, NotPretrainedError, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods.run_context import RunContext

# Built-in methods register themselves on import (plugins come in through entry points).
from ssl3d.methods import baselines as _baselines  # noqa: F401,E402
from ssl3d.methods import cmcv as _cmcv  # noqa: F401,E402
from ssl3d.methods import cmic as _cmic  # noqa: F401,E402
from ssl3d.methods import controls as _controls  # noqa: F401,E402
from ssl3d.methods import crosspoint as _crosspoint  # noqa: F401,E402
from ssl3d.methods import parae as _parae  # noqa: F401,E402
from ssl3d.methods import point_mae as _point_mae  # noqa: F401,E402
from ssl3d.methods import switchvae as _switchvae  # noqa: F401,E402


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (unknown names list the valid ones)."""
    return METHODS.get(name)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style wildcard."""
    return METHODS.names(pattern)


__all__ = [
    "METHODS", "Method", "MethodConfig", "NotPretrainedError", "RunContext", "TrainConfig",
    "get_method", "list_methods", "register_method",
]
