"""The layering rules of docs/architecture.md, checked by parsing every import of the package.

* ``ssl3d.core`` (framework pieces: config, registry, io, errors, seeding, distributed)
  imports nothing from the other layers;
* ``ssl3d.methods`` and ``ssl3d.datasets`` import framework code from ``ssl3d.core`` only,
  never from ``ssl3d.bench`` (the CLI, runner, protocols and result store sit on top);
* no two modules import each other, directly or through others: imports inside
  functions count (a deferred import hides a cycle, it does not remove it); imports
  under ``TYPE_CHECKING`` (annotations only) do not; importing ``pkg.sub`` from outside
  ``pkg`` runs ``pkg/__init__.py`` first, so it is an edge to ``pkg`` as well;
* ``ssl3d.bench`` is in wings that import only downward (``WINGS``), with no flat modules
  but the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"core": "ssl3d.core", "bench": "ssl3d.bench", "methods": "ssl3d.methods", "datasets": "ssl3d.datasets"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _parents_run_first(importer: str, target: str) -> set[str]:
    """The packages whose ``__init__`` runs when ``importer`` imports ``target``.

    Every enclosing package of ``target`` that is not ``importer`` and does not enclose it: those are
    already being imported when ``importer`` runs.
    """
    parents, name = set(), target.rpartition(".")[0]
    while name in MODULES and not (importer == name or importer.startswith(name + ".")):
        parents.add(name)
        name = name.rpartition(".")[0]
    return parents


def _imports(module: str, path: Path, with_type_checking: bool) -> set[str]:
    """Modules of the package that ``module`` imports anywhere (and under ``TYPE_CHECKING`` if asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()

    def visit(nodes, typing_only: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.body, True)
                visit(node.orelse, typing_only)
                continue
            if with_type_checking or not typing_only:
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    target = _resolve(module, path, node)
                    names = [target] + [f"{target}.{alias.name}" for alias in node.names]
                for name in names:
                    while name and name not in MODULES:  # ``from pkg import submodule`` or an attribute
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        found.add(name)
                        found.update(_parents_run_first(module, name))
            visit(ast.iter_child_nodes(node), typing_only)

    visit(tree.body, False)
    return found


@pytest.mark.parametrize("layer", ["core", "methods", "datasets"])
def test_lower_layers_never_import_the_bench_layer(layer):
    allowed = {"core": ("ssl3d.core",), "methods": ("ssl3d.core", "ssl3d.methods", "ssl3d.datasets"),
               "datasets": ("ssl3d.core", "ssl3d.datasets")}[layer]
    wrong = {f"{m} imports {target}"
             for m, path in MODULES.items() if m.startswith(LAYERS[layer])
             for target in _imports(m, path, with_type_checking=True) if not target.startswith(allowed)}
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = {m: _imports(m, p, with_type_checking=False) for m, p in MODULES.items()}
    # a package imports its own __init__ first: edges into a parent package are not cycles of concern
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, stack + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    assert not cycles, "\n".join(cycles)


def test_an_import_of_a_submodule_runs_its_package_first():
    """The edge that hid a real cycle (feature cache -> protocols.splits -> protocols/__init__ -> ...)."""
    assert _parents_run_first("ssl3d.bench.run.runner", "ssl3d.bench.protocols.svm") == {"ssl3d.bench.protocols"}
    assert _parents_run_first("ssl3d.bench.protocols.svm", "ssl3d.bench.protocols.base") == set()
    assert _parents_run_first("ssl3d.bench.protocols.svm", "ssl3d.bench.features.cache") == {"ssl3d.bench.features"}


#: the wings of ssl3d.bench, bottom first: a module imports only from its own wing or lower ones
WINGS = ["features", "protocols", "run", "report", "sweep", "cli"]


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["ssl3d", "bench"] else None


def test_bench_wings_import_only_downward():
    upward = set()
    for module, path in MODULES.items():
        if (wing := _wing(module)) is None:
            continue
        for target in _imports(module, path, with_type_checking=True):
            if (other := _wing(target)) is not None and WINGS.index(other) > WINGS.index(wing):
                upward.add(f"{module} ({wing}) imports {target} ({other})")
    assert not upward, "\n".join(sorted(upward))


def test_bench_has_no_flat_modules_but_the_cli():
    flat = {p.name for p in (ROOT / "bench").glob("*.py")} - {"__init__.py", "cli.py"}
    folders = {p.name for p in (ROOT / "bench").iterdir() if (p / "__init__.py").exists()}
    assert flat == set() and folders == set(WINGS) - {"cli"}


def test_moved_modules_keep_their_old_names():
    """Old flat paths (docs, plugins, ``python -m``) resolve to the same module object at the new home."""
    import importlib

    from ssl3d.bench import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
        assert importlib.import_module(new).__spec__.name == new


def test_every_source_file_stays_under_the_line_budget():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_every_package_folder_is_installed():
    """A sub-package missing from pyproject's ``packages`` works in a checkout and breaks every wheel install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {f"{LAYERS[p.relative_to(ROOT).parts[0]]}{''.join('.' + q for q in p.parent.relative_to(ROOT).parts[1:])}"
               for folder in LAYERS for p in (ROOT / folder).rglob("__init__.py")}
    assert sorted(folders - set(config["packages"])) == []


def test_an_old_python_m_name_still_runs():
    """``python -m ssl3d.bench.cost`` (docs and scripts of earlier versions) runs the moved module."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "ssl3d.bench.cost", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "cost" in run.stdout, run.stderr
