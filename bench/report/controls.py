"""What every method is read against besides its own untrained network: controls, the supervised upper bound, labels.

* **Gains over the strongest control.** A control (``Method.control``: a random network or a handcrafted
  descriptor, no pretext task) is a representation a pretrained one of its modality must beat. For every cell
  (task, modality, preset, settings, evaluation data, metric) of a non-control method, the controls that ran
  the same cell are found through the registry; the strongest is the one with the best mean there (highest;
  lowest where smaller is better), and the method is compared with it: mean difference, 95% CI, p (paired over
  seeds where both sides ran the same ones, Welch's otherwise) and the Benjamini-Hochberg q over the table's
  distinct tests. Choosing the control by its own mean can only shrink a method's difference; no number of
  the method is selected.
* **Supervised upper bound.** The ``classification`` protocol's ``scratch`` mode trains a method's network from
  random initialisation with labels; beside it stands the best frozen-feature accuracy of the same pretrained
  network on the same data and label fraction (``svm``, ``classification`` linear or mlp).
* **Marks.** A method whose pretraining reads class labels (``Method.reads_labels``) carries a dagger on every
  page, a control the word "(control)".

Definitions: docs/protocols.md#gains-over-controls.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.bench.protocols.classification import FROZEN
from ssl3d.bench.protocols.tasks import TASKS, get_task
from ssl3d.bench.report.claims import UNTRAINED
from ssl3d.bench.report.multiplicity import (
    add_qvalues, better_sign, by_seed, compare_oriented, counts_sentence, distinct_tests, format_p,
)
from ssl3d.bench.run.results import text_columns
from ssl3d.core.errors import UserError
from ssl3d.core.stats import ci95_halfwidth
from ssl3d.methods import METHODS

__all__ = ["LABELS_MARK", "controls_markdown", "gains_over_controls", "is_control", "marks_note", "method_label",
           "reads_labels", "coverage_note", "upper_bound", "upper_bound_markdown"]

log = logging.getLogger(__name__)

LABELS_MARK = "†"
CONTROL_MARK = "(control)"
# a leaderboard row group (bench/report/leaderboard.py: GROUP_COLUMNS); a control's cell drops method and
# pretrain_data (a control pretrains on nothing)
_GROUP = ["task", "method", "modality", "preset", "settings", "pretrain_data", "dataset_version", "data_key", "metric"]
_CELL = [c for c in _GROUP if c not in ("method", "pretrain_data")]
_TEXT = ("preset", "settings", "pretrain_data", "dataset_version", "data_key")


def _declares(method: str, flag: str) -> bool:
    """A registered method's class flag; False for a name no longer registered."""
    return method in METHODS and bool(getattr(METHODS.get(method), flag, False))


def is_control(method: str) -> bool:
    """Whether ``method`` is a control (``Method.control``)."""
    return _declares(method, "control")


def reads_labels(method: str) -> bool:
    """Whether ``method``'s pretraining reads class labels (``Method.reads_labels``)."""
    return _declares(method, "reads_labels")


def method_label(method: str) -> str:
    """``method`` as the pages print it: a dagger when it reads labels, "(control)" when it is a control."""
    marks = [LABELS_MARK] if reads_labels(method) else []
    return " ".join([method] + marks + ([CONTROL_MARK] if is_control(method) else []))


def marks_note(methods: Iterable[str]) -> str:
    """The legend of the marks that ``methods`` carry ('' when none does)."""
    names = set(map(str, methods))
    notes = []
    if any(map(reads_labels, names)):
        notes.append(f"{LABELS_MARK} pretraining reads class labels (not self-supervised)")
    if any(map(is_control, names)):
        notes.append(f"{CONTROL_MARK}: a control, a fixed representation (random network or handcrafted descriptor) "
                     "that a pretrained one of its modality must beat")
    return "; ".join(notes) + "." if notes else ""


def _latest(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per group and seed: a seed run twice counts once, its latest row."""
    runs = text_columns(runs, _TEXT)
    return runs.sort_values("created_at").drop_duplicates(_GROUP + ["seed"], keep="last")


def _untrained(settings: str) -> bool:
    tokens = settings.split()  # a published checkpoint evaluated as is (train.epochs=0) is trained weights
    return UNTRAINED in tokens and not any(t.startswith("method.init_checkpoint=") for t in tokens)


# a row's own settings: its variant, its training and the data it reads (the data is in data_key); a cell is
# then the protocol's settings on the same data
_OWN = ("method.", "data.", "train.")


def _control_cell(cell: dict[str, str]) -> tuple[tuple, str]:
    """A row's cell without its own ``method.*``, ``train.*`` and ``data.*`` settings, and those settings.

    They choose a variant (``random-view-cnn``'s camera rig, a published checkpoint) and the data read (a
    family's data settings copied so a control reads exactly that family's data: scripts/modelnet10_controls.sh);
    the data read is in ``data_key``, so a method and a control are matched on it and on the protocol's settings.
    """
    tokens = cell["settings"].split()
    own = " ".join(t for t in tokens if t.startswith(_OWN))
    cell = {**cell, "settings": " ".join(t for t in tokens if not t.startswith(_OWN))}
    return tuple(cell[c] for c in _CELL), own


CONTROL_COLUMNS = _GROUP + ["mean", "n", "control", "control_mean", "n_control", "controls", "test", "difference",
                            "ci95", "p_value", "q_value", "same_test_as", "reads_labels"]


def gains_over_controls(runs: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per cell of a pretrained non-control method that a control of its modality ran too.

    Args:
        runs: ``leaderboard.csv`` rows (one per run and metric; a seed run twice counts once, latest).
        metrics: metrics to compare (default: all).

    Columns: the method's row group, its ``mean`` and ``n``, the strongest ``control`` with its ``control_mean``
    and ``n_control``, ``controls`` (every control of the cell with its mean), ``test``, ``difference`` (method -
    control; control - method where smaller is better, so positive always means the method is better), ``ci95``,
    ``p_value`` (two-sided), ``q_value`` (Benjamini-Hochberg over the table's distinct tests), ``same_test_as``
    (bench/report/multiplicity.py) and ``reads_labels``. A method's untrained runs (``train.epochs=0``) are
    networks at random initialisation themselves: they are not compared.
    """
    if runs.empty:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    if metrics is not None:
        runs = runs[runs["metric"].isin(metrics)]
    latest = _latest(runs)
    control = latest["method"].map({m: is_control(m) for m in latest["method"].unique()})
    found: dict[tuple, list[tuple[str, dict[int, float]]]] = {}
    for key, group in latest[control].groupby(_CELL + ["method"], sort=True):
        cell, own = _control_cell(dict(zip(_CELL, key[:-1])))
        found.setdefault(cell, []).append((key[-1] + (f" [{own}]" if own else ""), by_seed(group)))
    rows, sides = [], []
    methods = latest[~control & ~latest["settings"].map(_untrained)]
    for key, group in methods.groupby(_GROUP, sort=True):
        row = dict(zip(_GROUP, key))
        candidates = found.get(_control_cell(row)[0])
        if not candidates:
            continue
        sign = better_sign(row["metric"])
        name, b = max(candidates, key=lambda c: sign * np.mean(list(c[1].values())))  # ties: the first by name
        a = by_seed(group)
        c = compare_oriented(a, b, row["metric"])
        listed = "; ".join(f"{m} {np.mean(list(v.values())):.2f}" for m, v in candidates)
        rows.append({**row, "mean": np.mean(list(a.values())), "n": len(a), "control": name,
                     "control_mean": np.mean(list(b.values())), "n_control": len(b), "controls": listed,
                     "test": c.test, "difference": c.difference, "ci95": c.ci95, "p_value": c.p_two_sided,
                     "reads_labels": reads_labels(row["method"])})
        sides.append((a, b))
    return add_qvalues(pd.DataFrame(rows, columns=CONTROL_COLUMNS), sides, "p_value", "q_value")


def coverage_note(runs: pd.DataFrame, gains: pd.DataFrame) -> str:
    """Which pretrained methods the table leaves out, and why: no control of their modality, or not on their data."""
    if runs.empty:
        return ""
    runs = text_columns(runs, ("settings",))
    control = runs["method"].map({m: is_control(m) for m in runs["method"].unique()})
    controlled = set(runs.loc[control, "modality"].astype(str))
    pretrained = runs[~control & ~runs["settings"].map(_untrained)]
    bare = sorted(set(pretrained["modality"].astype(str)) - controlled)
    notes = [f"No control was run on {', '.join(bare)}."] if bare else []
    shown = set(zip(gains["method"], gains["modality"]))
    for modality in sorted(controlled):
        missed = sorted(set(pretrained.loc[pretrained["modality"] == modality, "method"]) - {
            m for m, mod in shown if mod == modality})
        if missed:
            notes.append(f"On {modality}, {', '.join(missed)} share no cell with a control (other evaluation data or "
                         "settings).")
    return " ".join(notes)


def controls_markdown(gains: pd.DataFrame, coverage: str = "") -> str:
    """The table as markdown, with how many cells beat, fall below or tie the strongest control (alpha 0.05)."""
    if gains.empty:
        return ""
    lines = ["### Gains over the strongest control\n",
             "Controls: fixed representations of the same modality run on the same cell (task, preset, settings, "
             "evaluation data, metric); the strongest has the best mean there (lowest for a smaller-is-better "
             "metric, hau), which can only shrink a method's difference. Difference = method - strongest control "
             "(control - method for hau: positive always means the method is better), ± 95% CI; p = two-sided "
             "t-test over seeds, paired where both sides ran the same seeds (test column); q = Benjamini-Hochberg "
             f"over this table's {distinct_tests(gains)} distinct tests (a row marked \"= N\" repeats row N's test).\n",
             "| # | task | method | modality | settings | metric | method (n) | strongest control (n) | test | "
             "difference | p | q |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(gains.itertuples(), start=1):
        ci = "" if np.isnan(r.ci95) else f" ± {r.ci95:.2f}"
        test = f"= {int(r.same_test_as) + 1}" if r.same_test_as >= 0 else r.test
        settings = f"`{r.settings}`" if r.settings else ""
        lines.append(f"| {i} | {r.task} | {method_label(r.method)} | {r.modality} | {settings} | {r.metric} | "
                     f"{r.mean:.2f} ({r.n}) | {r.control} {r.control_mean:.2f} ({r.n_control}) | {test} | "
                     f"{r.difference:+.2f}{ci} | {format_p(r.p_value)} | {format_p(r.q_value)} |")
    notes = [counts_sentence(gains, "the method", "beats its strongest control", "falls below it")]
    notes.append(coverage)
    notes.append(marks_note(gains["method"]))
    return "\n".join(lines) + "\n\n" + " ".join(n for n in notes if n) + "\n"


UPPER_COLUMNS = ["task", "method", "modality", "preset", "settings", "dataset_version", "data_key", "epochs",
                 "label_fraction", "scratch", "ci95", "n", "frozen_task", "frozen_settings", "frozen", "frozen_ci95",
                 "n_frozen", "test", "difference", "difference_ci95", "reads_labels"]
UPPER_METRIC = "overall_acc"


def _protocol_config(task: str, settings: str) -> tuple[str, Any] | None:
    """(protocol name, resolved config) of a row: the protocol's defaults, the task's options, the row's ``--set``."""
    if task not in TASKS:
        return None
    spec = get_task(task)
    section = spec.protocol + "."
    tokens = (t.partition("=") for t in settings.split())
    overrides = {k[len(section):]: v for k, _, v in tokens if k.startswith(section)}
    try:
        return spec.protocol, PROTOCOLS.get(spec.protocol).for_task(spec, overrides).config
    except (UserError, ValueError) as exc:  # a row written by older code: the page still shows the rest
        log.warning("leaderboard row of %s with settings %r: %s; left out of the supervised upper bound", task,
                    settings, exc)
        return None


def _roles(latest: pd.DataFrame) -> tuple[list, list]:
    """The groups of ``UPPER_METRIC``: scratch as (row group, label fraction, seed values, epochs), frozen features
    of the pretrained network as its preset makes it (no method / train / data override) as the first three."""
    scratch, frozen = [], []
    configs: dict[tuple[str, str], tuple[str, Any] | None] = {}
    for key, group in latest[latest["metric"] == UPPER_METRIC].groupby(_GROUP, sort=True):
        row = dict(zip(_GROUP, key))
        where = (row["task"], row["settings"])
        if where not in configs:
            configs[where] = _protocol_config(*where)
        if configs[where] is None:
            continue
        protocol, config = configs[where]
        mode, fraction = getattr(config, "mode", None), float(getattr(config, "label_fraction", 1.0))
        pretrained = not any(t.split(".")[0] in ("method", "train", "data") for t in row["settings"].split())
        if protocol == "classification" and mode == "scratch":
            scratch.append((row, fraction, by_seed(group), int(config.epochs)))
        elif pretrained and (protocol == "svm" or (protocol == "classification" and mode in FROZEN)):
            frozen.append((row, fraction, by_seed(group)))
    return scratch, frozen


def _best_frozen(row: dict, fraction: float, frozen: list) -> tuple[dict | None, dict[int, float]]:
    """The frozen group of ``row``'s network, dataset, data and label fraction with the highest mean (None, {})."""
    dataset = get_task(row["task"]).dataset
    same = ("method", "modality", "preset", "dataset_version", "data_key")
    candidates = [(f, b) for f, frac, b in frozen
                  if frac == fraction and all(f[c] == row[c] for c in same) and get_task(f["task"]).dataset == dataset]
    return max(candidates, key=lambda c: np.mean(list(c[1].values())), default=(None, {}))


def upper_bound(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per scratch-trained network (``classification.mode=scratch``) beside its best frozen features.

    Frozen candidates: the same method, modality and preset on the same dataset (``Task.dataset``), evaluation
    data and label fraction, by ``svm`` or a frozen ``classification`` head, without method / train / data
    overrides. The best is the highest mean (chosen on the test split: it favours the features, so the gap is if
    anything understated). ``difference`` = scratch - frozen with its 95% CI (paired over shared seeds, else
    Welch's); a reference line, not a family of tests (no q).
    """
    if runs.empty:
        return pd.DataFrame(columns=UPPER_COLUMNS)
    scratch, frozen = _roles(_latest(runs))
    rows = []
    for row, fraction, a, epochs in scratch:
        best, b = _best_frozen(row, fraction, frozen)
        c = compare_oriented(a, b, UPPER_METRIC) if b else None
        rows.append({**{k: row[k] for k in UPPER_COLUMNS[:7]}, "epochs": epochs, "label_fraction": fraction,
                     "scratch": np.mean(list(a.values())), "ci95": ci95_halfwidth(list(a.values())), "n": len(a),
                     "frozen_task": best["task"] if best else "", "frozen_settings": best["settings"] if best else "",
                     "frozen": np.mean(list(b.values())) if b else np.nan,
                     "frozen_ci95": ci95_halfwidth(list(b.values())), "n_frozen": len(b),
                     "test": c.test if c else "", "difference": c.difference if c else np.nan,
                     "difference_ci95": c.ci95 if c else np.nan, "reads_labels": reads_labels(row["method"])})
    return pd.DataFrame(rows, columns=UPPER_COLUMNS)


def _mean_ci(mean: float, ci: float, n: int) -> str:
    return f"{mean:.2f}" + ("" if np.isnan(ci) else f" ± {ci:.2f}") + f" ({n})"


def upper_bound_markdown(table: pd.DataFrame) -> str:
    """The supervised upper bound as markdown ('' without scratch runs, like the other optional tables)."""
    if table.empty:
        return ""
    lines = ["### Supervised upper bound (scratch)\n",
             "Scratch: `--set classification.mode=scratch`, the method's network from random initialisation trained "
             f"with labels for the epochs shown; frozen: the best {UPPER_METRIC} of the same pretrained network's "
             "frozen features on the same data and label fraction (svm, or a linear / mlp classification head), "
             "chosen on the test split, which favours the features. Difference = scratch - frozen, ± 95% CI "
             "(paired over shared seeds, else Welch's; no q: a reference, not a family of tests).\n",
             "| task | method | modality | preset | settings | epochs | labels | scratch (n) | "
             "frozen: task, settings | frozen (n) | scratch - frozen |", "|---" * 11 + "|"]
    for r in table.itertuples():
        source = "no frozen run on the same data"
        if r.n_frozen:
            source = r.frozen_task + (f" `{r.frozen_settings}`" if r.frozen_settings else "")
        frozen = _mean_ci(r.frozen, r.frozen_ci95, r.n_frozen) if r.n_frozen else ""
        ci = "" if np.isnan(r.difference_ci95) else f" ± {r.difference_ci95:.2f}"
        difference = f"{r.difference:+.2f}{ci}" if r.n_frozen else ""
        lines.append(f"| {r.task} | {method_label(r.method)} | {r.modality} | {r.preset} | `{r.settings}` | "
                     f"{r.epochs} | {r.label_fraction:g} | {_mean_ci(r.scratch, r.ci95, r.n)} | {source} | {frozen} | "
                     f"{difference} |")
    note = marks_note(table["method"])
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"
