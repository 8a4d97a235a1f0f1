"""``bench reproduce CELL``: rerun the seeds of a committed leaderboard cell here and compare.

A cell is one group of a reference leaderboard (``results/<name>/``): task,
method, modality, preset and ``--set`` settings, over its seeds. Each seed is run
again on this machine (a normal ``bench run``, into the user's results folder;
the reference folder is only read), then, for every metric:

* per seed: committed value, reproduced value, difference;
* the means, the committed mean's 95% CI (Student t over its seeds) and whether
  the reproduced mean lies inside it;
* a paired t-test over the seeds (each seed run on both machines; Welch's t-test
  when the seeds differ, ``core.stats.compare_seeds``): a small p says the two
  machines disagree by more than the seed-to-seed spread of the differences explains.

Seed-level numbers are not bitwise reproducible across CPU models and thread
counts (float reductions are ordered differently), so per-seed differences are
expected; the mean inside the committed CI is the check (docs/protocols.md).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ssl3d.bench.report.leaderboard import resolve_reference
from ssl3d.bench.run.results import ResultStore, text_columns
from ssl3d.bench.run.runner import RunSpec, execute
from ssl3d.core.stats import ci95_halfwidth, compare_seeds
from ssl3d.bench.protocols.tasks import get_task
from ssl3d.core.config import ConfigError
from ssl3d.core.io import atomic_write_text

GROUP = ("task", "method", "modality", "preset", "settings", "pretrain_data", "data_key")


@dataclass
class Comparison:
    """One metric of a cell: committed vs reproduced."""

    metric: str
    committed: dict[int, float]  # seed -> value
    reproduced: dict[int, float]
    ci95: float = field(init=False)  # half-width of the committed mean's 95% CI (nan with one seed)
    inside_ci: bool = field(init=False)
    test: str = field(init=False)  # "paired t", "Welch t", "equal" (the same numbers) or "" (too few seeds)
    p_value: float = field(init=False)  # two-sided

    def __post_init__(self) -> None:
        a, b = np.array(list(self.committed.values())), np.array(list(self.reproduced.values()))
        self.ci95 = ci95_halfwidth(a)
        self.inside_ci = bool(abs(b.mean() - a.mean()) <= self.ci95) if not math.isnan(self.ci95) else False
        if self.committed == self.reproduced:
            self.inside_ci = True
        result = compare_seeds(self.reproduced, self.committed)
        self.test, self.p_value = result.test, result.p_two_sided

    @property
    def committed_mean(self) -> float:
        return float(np.mean(list(self.committed.values())))

    @property
    def reproduced_mean(self) -> float:
        return float(np.mean(list(self.reproduced.values())))


def parse_cell(cell: str) -> tuple[str, str, str | None]:
    """``TASK/METHOD[/MODALITY]`` -> (task, method, modality or None)."""
    parts = cell.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"cell {cell!r}: write TASK/METHOD or TASK/METHOD/MODALITY (e.g. synth-svm/random-pointnet)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def find_cell(reference: str, cell: str, preset: str | None, settings: str) -> tuple[Path, Any]:
    """(reference folder, the cell's rows: the newest run per seed and metric) or a ConfigError naming the choices."""
    folder = resolve_reference(reference)
    task, method, modality = parse_cell(cell)
    frame = text_columns(ResultStore(folder).read_leaderboard(), GROUP)
    rows = frame[(frame.task == task) & (frame.method == method) & (frame.settings == settings)]
    rows = rows[rows.modality == modality] if modality else rows
    rows = rows[rows.preset == preset] if preset else rows
    groups = rows.groupby(list(GROUP)).size()
    if len(groups) != 1:
        found = "; ".join("/".join(str(k) for k in key) for key in groups.index) or "none"
        raise ConfigError(f"{folder / 'leaderboard.csv'}: cell {cell} (preset {preset or 'any'}, settings "
                          f"{settings!r}) matches {len(groups)} groups ({found}); give --preset, --settings or "
                          f"the modality to pick one{_did_you_mean(cell, frame) if groups.empty else ''}")
    rows = rows.sort_values("created_at").drop_duplicates(["seed", "metric"], keep="last")
    return folder, rows


def _did_you_mean(cell: str, frame: Any) -> str:
    """``; did you mean 'synth-svm/random-pointnet'?`` when ``cell`` is not a cell of the leaderboard but close to one."""
    columns = ["task", "method", "modality"][: len(cell.split("/"))]
    cells = {"/".join(key) for key in frame[columns].drop_duplicates().itertuples(index=False)}
    if cell in cells:  # the cell is there: its preset or settings are what did not match
        return ""
    close = difflib.get_close_matches(cell, sorted(cells), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    listed = sorted(cells)
    return f"; its cells: {', '.join(listed[:12])}{f', ... ({len(listed)} in all)' if len(listed) > 12 else ''}"


def reproduce_cell(reference: str, cell: str, preset: str | None = None, settings: str = "", device: str = "auto",
                   data_root: str | None = None, results_dir: str | None = None,
                   progress: bool = False) -> tuple[list[Comparison], dict[str, Any]]:
    """Rerun every seed of the cell; returns a comparison per metric and facts (reference, data keys, runs)."""
    folder, rows = find_cell(reference, cell, preset, settings)
    store = ResultStore(results_dir)
    if store.root.resolve() == folder.resolve():
        raise ConfigError(f"--results-dir {store.root} is the reference folder; reruns never write there")
    first = rows.iloc[0]
    overrides = dict(item.split("=", 1) for item in first.settings.split()) if first.settings else {}
    task = get_task(first.task)
    pretrain = first.pretrain_data if first.pretrain_data and first.pretrain_data != task.dataset else None
    reproduced: dict[int, dict[str, float]] = {}
    keys = set()
    for seed in sorted(int(s) for s in rows.seed.unique()):
        result = execute(RunSpec(method=first.method, task=first.task, preset=first.preset, seed=seed, device=device,
                                 overrides=overrides, modality=first.modality, pretrain_data=pretrain,
                                 data_root=data_root, results_dir=results_dir, progress=progress))
        reproduced[seed] = result["metrics"]
        keys.add(result["data_key"])
    comparisons = []
    for metric in rows.metric.unique():
        committed = {int(r.seed): float(r.value) for r in rows[rows.metric == metric].itertuples()}
        comparisons.append(Comparison(metric, committed, {s: reproduced[s][metric] for s in committed}))
    facts = {"reference": str(folder), "cell": cell, "preset": first.preset, "settings": first.settings,
             "committed_data_key": first.data_key, "reproduced_data_keys": sorted(keys),
             "committed_commit": ", ".join(sorted(set(rows.git_commit))), "runs": len(reproduced)}
    return comparisons, facts


def report_markdown(comparisons: list[Comparison], facts: dict[str, Any]) -> str:
    """The comparison as markdown: one table per metric, then a verdict line each."""
    lines = [f"# bench reproduce {facts['cell']} (reference {facts['reference']}, preset {facts['preset']}, "
             f"settings '{facts['settings']}')", ""]
    if facts["reproduced_data_keys"] != [facts["committed_data_key"]]:
        lines += [f"**Warning**: the data key differs (committed {facts['committed_data_key']}, here "
                  f"{', '.join(facts['reproduced_data_keys'])}): the data settings are not the same.", ""]
    for c in comparisons:
        lines += [f"## {c.metric}", "", "| seed | committed | reproduced | difference |", "|---|---|---|---|"]
        lines += [f"| {s} | {c.committed[s]:.4f} | {c.reproduced[s]:.4f} | {c.reproduced[s] - c.committed[s]:+.4f} |"
                  for s in sorted(c.committed)]
        p = "n/a (fewer than 2 seeds)" if math.isnan(c.p_value) else f"{c.p_value:.3f} ({c.test})"
        lines += [f"| mean | {c.committed_mean:.4f} ± {c.ci95:.4f} | {c.reproduced_mean:.4f} | "
                  f"{c.reproduced_mean - c.committed_mean:+.4f} |", "",
                  f"reproduced mean {'inside' if c.inside_ci else 'OUTSIDE'} the committed 95% CI; "
                  f"two-sided p = {p}", ""]
    return "\n".join(lines)


def write_report(markdown: str, results_dir: str | None, cell: str) -> Path:
    """``<results>/reproduce/<cell>-<UTC time>.md``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = ResultStore(results_dir).root / "reproduce" / f"{cell.replace('/', '_')}-{stamp}.md"
    atomic_write_text(path, markdown)
    return path
