"""Every ``bench ...`` command the documentation shows is a valid command line.

Commands are read from the code blocks (``` fences and 4-space indented blocks)
of README.md and docs/*.md: every line, split at ``&&`` / ``||`` / ``;``, whose
segment starts with ``bench`` (trailing ``# comments`` and ``\\`` continuations
handled). Nothing is run. Each command is checked through the code the CLI and
the runner use:

* the real argparse parser (:func:`ssl3d.bench.cli.build_parser`);
* names: methods in ``METHODS`` (or a plugin shipped under docs/examples and
  registered by its ``pyproject.toml`` entry point), tasks in ``TASKS``,
  datasets in ``DATASETS``, presets in the method's ``PRESETS``, wildcard
  patterns that match something;
* ``bench run``: :func:`split_overrides`, ``Method.from_preset``, the protocol
  ``Config`` with the task's options, :func:`build_data_config` for the
  evaluation and the pretraining dataset, :func:`resolve_modality`, and that
  both datasets can provide the modalities the run will ask them for;
* ``bench suite``: the same for every (method, task, modality) it plans;
* ``bench prepare``: the dataset's ``Config`` overrides, modalities and splits,
  as ``cmd_prepare`` applies them.

Placeholders (``M``, ``T``, ``NAME``, ``KEY=VALUE``, ``<...>``) are skipped
explicitly; the rest of such a command is still checked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from ssl3d.bench.cli import build_parser
from ssl3d.core.config import ConfigError, apply_overrides, parse_set_args
from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.bench.run.runner import build_data_config, resolve_modality, split_overrides
from ssl3d.bench.sweep.suite import plan_suite
from ssl3d.bench.protocols.tasks import TASKS
from ssl3d.datasets import DATASETS, DataConfig
from ssl3d.datasets.real import RealShapeDataset
from ssl3d.methods import METHODS, MethodConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXAMPLES = REPO_ROOT / "docs" / "examples"

# Words the docs use as stand-ins for a real name or value (never checked as names).
PLACEHOLDERS = frozenset({"M", "T", "NAME", "KEY", "VALUE", "KEY=VALUE", "PATTERN", "PATH", "DIR", "S", "N"})

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
_SHELL_FENCES = frozenset({"", "bash", "sh", "shell", "console", "zsh", "text"})  # other languages hold no commands
_INDENTED = re.compile(r"^( {4,}|\t)\S")
_SEPARATORS = frozenset({"&&", "||", ";"})


class DocCommandError(AssertionError):
    """A documented command that the CLI would refuse; the message says why."""


def is_placeholder(token: str | None) -> bool:
    """``M``, ``KEY=VALUE``, ``<archive>``, ``method.<key>=1``... (anything in angle brackets)."""
    return token is not None and (token in PLACEHOLDERS or bool(re.search(r"<[^>]*>", token)))


# -- extraction ---------------------------------------------------------------------------------
def extract_commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, argv after "bench")`` of every bench command in the code blocks of ``text``."""
    commands: list[tuple[int, list[str]]] = []
    in_fence, shell, marker = False, False, ""
    pending, start = "", 0
    for lineno, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if fence and not pending:
            if not in_fence:
                in_fence, marker, shell = True, fence.group(1), fence.group(2).lower() in _SHELL_FENCES
            elif fence.group(1) == marker:
                in_fence = False
            continue
        if in_fence and not shell:
            continue
        if not (in_fence or pending or _INDENTED.match(line)):
            continue
        code = line.strip()
        if code.startswith("$ "):  # a shell prompt
            code = code[2:]
        if not pending:
            start = lineno
        if code.endswith("\\"):  # continued on the next line
            pending += code[:-1] + " "
            continue
        code, pending = pending + code, ""
        if "bench" not in code:
            continue
        try:
            tokens = shlex.split(code, comments=True)
        except ValueError as exc:  # unbalanced quotes: report it as a broken command
            raise DocCommandError(f"line {start}: cannot split {code!r}: {exc}") from None
        segment: list[str] = []
        for token in [*tokens, "&&"]:
            if token in _SEPARATORS:
                if segment and segment[0] == "bench":
                    commands.append((start, segment[1:]))
                segment = []
            else:
                segment.append(token)
    return commands


def documented_commands() -> list[tuple[str, list[str]]]:
    """``("docs/x.md:12", argv)`` for every documented bench command."""
    found = []
    for path in DOC_FILES:
        for lineno, argv in extract_commands(path.read_text(encoding="utf-8")):
            found.append((f"{path.relative_to(REPO_ROOT)}:{lineno}", argv))
    return found


# -- names --------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def doc_plugin_methods() -> dict[str, type]:
    """Methods of the plugin examples under docs/examples, loaded from their entry points (not registered)."""
    methods: dict[str, type] = {}
    for project in sorted(EXAMPLES.glob("*/pyproject.toml")):
        meta = tomllib.loads(project.read_text(encoding="utf-8"))
        entry_points = meta.get("project", {}).get("entry-points", {}).get("ssl3d.methods", {})
        for name, target in entry_points.items():
            module_name, _, attr = target.partition(":")
            path = project.parent / f"{module_name}.py"
            unique = f"_docs_plugin_{module_name}"
            if unique not in sys.modules:
                spec = importlib.util.spec_from_file_location(unique, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module  # dataclasses and type hints resolve through sys.modules
                spec.loader.exec_module(module)
            methods[name] = getattr(sys.modules[unique], attr)
    return methods


def get_method_cls(name: str) -> type:
    if name in METHODS:
        return METHODS.get(name)
    plugins = doc_plugin_methods()
    if name in plugins:
        return plugins[name]
    return METHODS.get(name)  # raises UnknownNameError listing the valid names


def check_device(name: str) -> None:
    if name == "auto" or is_placeholder(name):
        return
    try:
        torch.device(name)
    except RuntimeError as exc:
        raise DocCommandError(f"--device {name!r} is not a device (auto, cpu, cuda[:i]): {exc}") from None


def _overrides(items: list[str]) -> dict[str, str]:
    """``--set`` items as the CLI parses them, placeholders left out."""
    kept = [item for item in items if not is_placeholder(item)]
    return {k: v for k, v in parse_set_args(kept).items() if not (is_placeholder(k) or is_placeholder(v))}


# -- bench run ----------------------------------------------------------------------------------
def check_run(method_name: str | None, task_name: str | None, preset: str, overrides: dict[str, str],
              modality: str | None = None, pretrain_data: str | None = None) -> None:
    """What ``runner.execute`` resolves before touching any data, for one (method, task)."""
    method_cls = None if is_placeholder(method_name) else get_method_cls(method_name)
    task = None if is_placeholder(task_name) else TASKS.get(task_name)
    pre_cls = None if pretrain_data is None or is_placeholder(pretrain_data) else DATASETS.get(pretrain_data)
    if method_cls is None or task is None:
        check_overrides_partially(method_cls, task, preset, overrides)
        return
    protocol_cls = PROTOCOLS.get(task.protocol)
    method_o, data_o, proto_o = split_overrides(overrides, protocol_cls.name)
    method = method_cls.from_preset(preset, method_o)
    section = f"{protocol_cls.name}."
    protocol_config = apply_overrides(protocol_cls.Config(), task.protocol_options, section=section)
    protocol = protocol_cls(apply_overrides(protocol_config, proto_o, section=section))
    release = task.candidates()[0]
    if not is_placeholder(modality):
        modality = resolve_modality(task.name, method_cls, modality, protocol_cls.needs)
        needed = {modality} | (set(method.pretrain_modalities) if method.pretrains and pre_cls is None else set())
        # the runner's choose_release, as if every release were prepared: the first that gives what the run needs
        release = next((r for r in task.candidates() if needed <= DATASETS.get(r.dataset).available_modalities),
                       release)
        _check_provides(DATASETS.get(release.dataset), protocol.dataset_modalities(modality), "evaluation")
    dataset_cls = DATASETS.get(release.dataset)
    build_data_config(dataset_cls, release.data_options, method, data_o)
    pre_cls = pre_cls or dataset_cls
    build_data_config(pre_cls, release.data_options if pre_cls is dataset_cls else {}, method, data_o)
    if method.pretrain_modalities and method.config.train.epochs > 0:
        _check_provides(pre_cls, sorted(method.pretrain_modalities), "pretraining")


def _check_provides(dataset_cls: type, modalities, role: str) -> None:
    if isinstance(dataset_cls, type) and issubclass(dataset_cls, RealShapeDataset):
        dataset_cls.check_modalities(modalities)  # the message real datasets give
    missing = sorted(set(modalities) - set(dataset_cls.available_modalities))
    if missing:
        raise DocCommandError(f"{role} dataset {dataset_cls.name!r} cannot provide {', '.join(missing)}")


def check_overrides_partially(method_cls: type | None, task, preset: str, overrides: dict[str, str]) -> None:
    """Key-by-key checks when the method or the task is a placeholder."""
    protocol_cls = PROTOCOLS.get(task.protocol) if task is not None else None
    dataset_config = DATASETS.get(task.dataset).Config() if task is not None else DataConfig()
    if method_cls is not None:
        method_cls.from_preset(preset)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "method" and rest:
            if method_cls is not None:
                method_cls.from_preset(preset, {rest: value})
        elif head == "train" and rest:
            base = method_cls.from_preset(preset).config if method_cls is not None else MethodConfig()
            apply_overrides(base, {key: value}, section="method.")
        elif head == "data" and rest:
            apply_overrides(dataset_config, {rest: value}, section="data.")
        elif rest and head in PROTOCOLS and (protocol_cls is None or protocol_cls.name == head):
            apply_overrides(PROTOCOLS.get(head).Config(), {rest: value}, section=f"{head}.")
        else:
            allowed = f"{protocol_cls.name}." if protocol_cls else "<protocol>."
            raise DocCommandError(f"--set {key}: keys start with method., train., data. or {allowed}")


# -- the other subcommands --------------------------------------------------------------------
def check_prepare(ns) -> None:
    if is_placeholder(ns.name):
        return
    cls = DATASETS.get(ns.name)
    data_o = {k.split(".", 1)[1] if k.startswith("data.") else k: v for k, v in _overrides(ns.overrides).items()}
    apply_overrides(cls.Config(), data_o, section="data.")
    modalities = ns.modalities or list(getattr(cls, "prepare_modalities", ("points",)))
    _check_provides(cls, modalities, "prepared")
    real = issubclass(cls, RealShapeDataset)
    if ns.from_paths and not real:
        raise DocCommandError(f"{ns.name} is generated, not downloaded: --from does not apply")
    bad = [s for s in ns.split or () if s not in cls.splits]
    if bad:
        raise DocCommandError(f"{ns.name} has no split {', '.join(bad)}; splits: {', '.join(cls.splits)}")


def _matching(registry, pattern: str, kind: str) -> list[str]:
    names = registry.names(pattern)
    if not names:
        raise DocCommandError(f"--{kind} {pattern!r} matches nothing; valid: {', '.join(registry.names())}")
    return names


def check_perf(ns) -> None:
    check_device(ns.device)
    for name in _matching(METHODS, ns.methods, "methods"):
        for preset in ns.presets:
            METHODS.get(name).from_preset(preset)
    if ns.batch_size is not None and ns.batch_size < 1:
        raise DocCommandError("--batch-size must be >= 1")


def check_suite(ns) -> None:
    check_device(ns.device)
    overrides = _overrides(ns.overrides)
    _matching(METHODS, ns.methods, "methods")
    _matching(TASKS, ns.tasks, "tasks")
    planned, _ = plan_suite(ns.methods, ns.tasks)
    for run in planned:
        check_run(run.method, run.task, ns.preset, overrides, modality=run.modality)


def check_command(argv: list[str]) -> None:
    """Raise (DocCommandError, ConfigError, UnknownNameError, ValueError) when ``bench argv`` is invalid."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            ns = build_parser().parse_args(argv)
        except SystemExit:
            raise DocCommandError(f"the parser refuses it: {stderr.getvalue().strip()}") from None
    if ns.command == "run":
        check_device(ns.device)
        if ns.nproc < 1:
            raise DocCommandError("--nproc must be >= 1")
        check_run(ns.method, ns.task, ns.preset, _overrides(ns.overrides), ns.modality, ns.pretrain_data)
    elif ns.command == "prepare":
        check_prepare(ns)
    elif ns.command == "perf":
        check_perf(ns)
    elif ns.command == "suite":
        check_suite(ns)
    elif ns.command is None:
        raise DocCommandError("no subcommand")
    # list and leaderboard: parsing is the whole check


# -- tests --------------------------------------------------------------------------------------
COMMANDS = documented_commands()


def test_the_documents_are_read():
    """The extraction finds the commands (an empty list would make every check below vacuous)."""
    where = {loc.split(":")[0] for loc, _ in COMMANDS}
    assert {"README.md", "docs/reproducing.md", "docs/datasets.md"} <= where
    assert sum(loc.startswith("docs/reproducing.md") for loc, _ in COMMANDS) >= 40
    subcommands = {argv[0] for _, argv in COMMANDS if argv}
    assert {"run", "prepare", "leaderboard", "list", "perf", "suite"} <= subcommands


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[loc for loc, _ in COMMANDS])
def test_documented_command_is_valid(argv):
    check_command(argv)


# The checker itself: it must refuse what the CLI would refuse, and skip only placeholders.
def test_extraction_handles_chains_comments_continuations_and_fences():
    text = "\n".join([
        "prose: bench run --method nope   (not in a code block)",
        "```bash",
        "pip install -e . && bench run --method a --task b && bench leaderboard   # comment && bench x",
        "$ bench list --json",
        "bench run --method a \\",
        "    --task 'c d'",
        "echo bench",
        "```",
        "",
        "    bench prepare synth   # an indented block",
        "```toml",
        "bench = 1",
        "```",
    ])
    assert extract_commands(text) == [
        (3, ["run", "--method", "a", "--task", "b"]), (3, ["leaderboard"]), (4, ["list", "--json"]),
        (5, ["run", "--method", "a", "--task", "c d"]), (10, ["prepare", "synth"]),
    ]


def test_a_typo_in_a_documented_command_fails():
    text = "```bash\nbench run --method parae-pointnet --task modelnet40-svm --set svm.kernal=rbf  # typo\n```\n"
    ((_, argv),) = extract_commands(text)
    with pytest.raises(ConfigError, match="svm.kernal"):
        check_command(argv)


@pytest.mark.parametrize("argv", [
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--sed", "0"],  # unknown flag
    ["run", "--method", "no-such-method", "--task", "synth-svm"],
    ["run", "--method", "random-pointnet", "--task", "no-such-task"],
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "svm.C=3"],  # unknown key
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "svm.kernel=poly"],  # bad value
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "segmentation.mode=frozen"],
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "method.no_such_field=1"],
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--set", "data.no_such_field=1"],
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--preset", "huge"],
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--modality", "views"],  # cannot embed views
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--pretrain-data", "nowhere"],
    ["run", "--method", "cmcv", "--task", "modelnet40-fewshot"],  # pretraining on modelnet40-h5 has no views
    ["run", "--method", "random-pointnet", "--task", "synth-svm", "--device", "gpu"],
    ["run", "--method", "cmcv", "--task", "shapenetpart-seg", "--set", "segmentation.label_fraction=2"],
    ["run", "--method", "M", "--task", "synth-svm", "--set", "train.no_such_field=1"],  # placeholders check the rest
    ["run", "--method", "M", "--task", "T", "--set", "svm.kernel=poly"],
    ["prepare", "no-such-dataset"],
    ["prepare", "modelnet40-h5", "--modalities", "views"],
    ["prepare", "synth", "--from", "x.zip"],
    ["prepare", "modelnet40", "--split", "validation"],
    ["prepare", "modelnet40", "--set", "data.no_such_field=1"],
    ["perf", "--methods", "zzz-*"],
    ["perf", "--methods", "parae-*", "--presets", "huge"],
    ["suite", "--tasks", "synth-*", "--set", "svm.kernel=rbf"],  # synth-seg's protocol has no svm section
    ["suite", "--tasks", "nothing-*"],
])
def test_checker_refuses_invalid_commands(argv):
    with pytest.raises((DocCommandError, ConfigError, KeyError, ValueError)):
        check_command(argv)


@pytest.mark.parametrize("argv", [
    ["run", "--method", "M", "--task", "T", "--set", "KEY=VALUE"],
    ["run", "--method", "M", "--task", "T", "--set", "train.epochs=50", "--set", "data.n_points=2048"],
    ["run", "--method", "random-pointnet", "--task", "T", "--set", "method.<key>=<value>"],
    ["prepare", "NAME", "--from", "<archive>"],
    ["run", "--method", "rotnet", "--task", "synth-svm", "--set", "method.global_dim=32"],  # the docs' plugin
])
def test_checker_accepts_placeholders_and_the_docs_plugin(argv):
    check_command(argv)
