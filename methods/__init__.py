"""Methods of ssl3d-bench behind one ``pretrain / embed`` interface.

``get_method(name)`` returns a registered method class, ``list_methods("parae-*")``
lists names with wildcards. Built-in methods register with ``@register_method``;
third-party packages register through the entry-point group ``ssl3d.methods``
(see docs/adding-a-method.md).
"""

from ssl3d.methods.base import METHODS, Method, NotPretrainedError, RunContext, register_method
from ssl3d.methods.config import MethodConfig, TrainConfig
from ssl3d.methods import baselines as _baselines  # noqa: F401  (registers the baselines)

import importlib as _importlib
import importlib.util as _importlib_util

# Built-in method modules register themselves on import. (Transitional: modules
# written in parallel are imported once their file exists.)
for _module in ("switchvae", "parae", "cmcv", "cmic"):
    if _importlib_util.find_spec(f"ssl3d.methods.{_module}") is not None:
        _importlib.import_module(f"ssl3d.methods.{_module}")


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
