"""ssl3d.bench: the benchmark's top layer, in wings that import only downward:

    features/ < protocols/ < run/ < report/ < sweep/ < cli

Modules that moved into the wings stay importable, and runnable with ``python -m``, under their old
flat names (``ssl3d.bench.runner`` is ``ssl3d.bench.run.runner``, the same module object), through
the table ``MOVED``; docs/architecture.md cites the new names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

#: old flat module name -> its home in a wing
MOVED: dict[str, str] = {
    f"ssl3d.bench.{old}": f"ssl3d.bench.{new}" for old, new in {
        "runner": "run.runner", "pretrain_cache": "run.pretrain_cache", "pretrain_lock": "run.pretrain_lock",
        "provenance": "run.provenance", "tracking": "run.tracking", "results": "run.results", "perf": "run.perf",
        "leaderboard": "report.leaderboard", "claims": "report.claims",
        "untrained": "report.untrained", "plots": "report.plots", "cost": "report.cost",
        "scene_table": "report.scene_table", "reproduce": "report.reproduce",
        "suite": "sweep.suite", "launchers": "sweep.launchers", "launch_config": "sweep.launch_config",
        "curve": "sweep.curve", "cli_launch": "sweep.cli_flags",
        "feature_cache": "features.cache", "protocols.splits": "features.splits", "protocols.views": "features.views",
        "tasks": "protocols.tasks",
    }.items()
} | {"ssl3d.bench.stats": "ssl3d.core.stats"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old name to the module at its new home (for imports and for ``python -m``)."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system stamped the alias spec on the real module: give it back its own
        module.__spec__ = self._own_specs[module.__name__]

    def get_code(self, name: str) -> CodeType | None:
        """``python -m OLD`` runs the new module's code (runpy asks the loader for it)."""
        spec = importlib.util.find_spec(MOVED[name])
        return spec.loader.get_code(MOVED[name])


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
