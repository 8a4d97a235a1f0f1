"""The README's verdict table: headline cells of a leaderboard, pretrained against the same network untrained.

``python -m ssl3d.bench.report.verdicts RESULTS_DIR`` prints it (``--readme README.md`` rewrites it in place);
README.md holds exactly that output for ``results/modelnet10-cpu`` (a test checks it). Each cell's CI counts the seeds and the test set's
sampling (``core.stats.ci95_seeds_and_test``); the differences, p and q are the leaderboard page's
(paired over seeds, Benjamini-Hochberg over the page's gains table, and over its table of gains over the
strongest control for the last three columns). A method whose pretraining reads labels carries a dagger.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ssl3d.bench.report.claims import UNTRAINED
from ssl3d.bench.report.controls import LABELS_MARK, gains_over_controls, marks_note, reads_labels
from ssl3d.bench.report.eval_sizes import read_eval_sizes
from ssl3d.bench.report.multiplicity import distinct_tests, format_p
from ssl3d.bench.report.untrained import pretraining_gains
from ssl3d.bench.run.results import ResultStore, text_columns
from ssl3d.core.io import atomic_write_text
from ssl3d.core.stats import ci95_seeds_and_test

__all__ = ["HEADLINE", "verdict_table"]

#: (method, modality) of the headline cells: each paper's main method on each modality it embeds
HEADLINE = (("parae-pointnet", "points"), ("parae-dgcnn", "points"), ("voxel-vae", "voxels"),
            ("switchvae", "voxels"), ("switchvae", "views"), ("cmcv", "points"), ("cmcv", "views"),
            ("cmic", "views"), ("cmic", "image"), ("point-mae", "points"), ("crosspoint", "points"))
MODALITY_NAMES = {"image": "image (photo-like)"}


def _cell(values: np.ndarray, n_test: int | None) -> str:
    ci = ci95_seeds_and_test(values, n_test) if n_test else float("nan")
    return f"{values.mean():.2f}" + ("" if np.isnan(ci) else f" ± {ci:.2f}")


def _values(runs: pd.DataFrame, method: str, modality: str, settings: str) -> np.ndarray:
    sel = runs[(runs["method"] == method) & (runs["modality"] == modality) & (runs["settings"] == settings)]
    return sel.sort_values("created_at").drop_duplicates("seed", keep="last")["value"].to_numpy(dtype=float)


def verdict_table(root: str | Path, task: str = "modelnet10-svm", metric: str = "overall_acc", preset: str = "cpu",
                  cells: tuple[tuple[str, str], ...] = HEADLINE) -> str:
    """The markdown table (with a one-line legend) of ``cells`` on ``task`` / ``metric`` / ``preset``."""
    root = Path(root)
    all_runs, _ = ResultStore(root).read_leaderboard_checked()
    page_gains = pretraining_gains(all_runs)  # the page's family: q-values as on leaderboard.md
    gains = page_gains[(page_gains["task"] == task) & (page_gains["metric"] == metric)
                       & (page_gains["preset"] == preset)].set_index(["method", "modality"])
    page_controls = gains_over_controls(all_runs)  # the page's second family
    controls = page_controls[(page_controls["task"] == task) & (page_controls["metric"] == metric)
                             & (page_controls["preset"] == preset) & (page_controls["settings"] == "")]
    controls = controls.drop_duplicates(["method", "modality"]).set_index(["method", "modality"])
    runs = text_columns(all_runs, ("preset", "settings"))
    runs = runs[(runs["task"] == task) & (runs["metric"] == metric) & (runs["preset"] == preset)]
    n_test = read_eval_sizes(root).get(task)
    lines = ["| method | modality | pretrained | untrained | paired difference | p | q | strongest control | "
             "difference | q |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, modality in cells:
        if (method, modality) not in gains.index:  # not run yet (or being re-run): said, never left out silently
            lines.append(f"| `{method}` | {MODALITY_NAMES.get(modality, modality)} | not run | not run | "
                         "— | — | — | — | — | — |")
            continue
        g = gains.loc[(method, modality)]
        untrained = _values(runs, str(g["untrained_method"]), modality, UNTRAINED)
        mark = f" {LABELS_MARK}" if reads_labels(method) else ""
        lines.append(f"| `{method}`{mark} | {MODALITY_NAMES.get(modality, modality)} | "
                     f"{_cell(_values(runs, method, modality, ''), n_test)} | {_cell(untrained, n_test)} | "
                     f"{g['difference']:+.2f} ± {g['ci95']:.2f} | {format_p(g['p_value'])} | "
                     f"{format_p(g['q_value'])} | {_control_cells(controls, runs, method, modality, n_test)} |")
    size = f"the {n_test} test shapes" if n_test else "the test set (size unknown: seeds only)"
    legend = (f"Cells: mean over seeds ± 95% CI counting the seeds and the sampling of {size}; difference: "
              "pretrained − untrained, paired over seeds, ± its 95% CI; p: paired t-test; q: Benjamini-Hochberg "
              f"over the {distinct_tests(page_gains)} distinct pretrained-vs-untrained tests of the leaderboard page. "
              "Strongest control: the best of the controls of the modality (random networks, handcrafted "
              "descriptors) on the same data; its difference: pretrained − control, paired over shared seeds, ± its "
              f"95% CI, q over the page's {distinct_tests(page_controls)} distinct tests against controls; —: no "
              "control ran that cell; not run: this leaderboard has no pretrained and untrained runs of that cell "
              "(yet). " + marks_note(m for m, _ in cells if reads_labels(m)))
    return "\n".join(lines) + "\n\n" + textwrap.fill(legend.strip(), width=100) + "\n"


def _control_cells(controls: pd.DataFrame, runs: pd.DataFrame, method: str, modality: str,
                   n_test: int | None) -> str:
    """The strongest control's cell, the difference to it and its q ("— | — | —" when no control ran the cell)."""
    if (method, modality) not in controls.index:
        return "— | — | —"
    c = controls.loc[(method, modality)]
    name, _, own = str(c["control"]).partition(" [")  # "random-dgcnn [data.n_points=256 ...]": its own settings
    values = _values(runs, name, modality, own.rstrip("]"))
    return (f"`{c['control']}` {_cell(values, n_test)} | "
            f"{c['difference']:+.2f} ± {c['ci95']:.2f} | {format_p(c['q_value'])}")


START, END = "<!-- verdicts:start", "<!-- verdicts:end -->"


def replace_block(readme: str, table: str, name: str = "README.md") -> str:
    """``readme`` with the text between its verdict markers (the start marker's line kept) replaced by ``table``."""
    head, sep, rest = readme.partition(START)
    marker_line, newline, body = rest.partition("\n")
    if not sep or not newline or END not in body:
        raise ValueError(f"{name}: no '{START} ...' line followed by a '{END}' line to replace")
    return head + START + marker_line + "\n" + table + END + body.split(END, 1)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssl3d.bench.report.verdicts", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    parser.add_argument("--readme", metavar="PATH", help="rewrite the table between PATH's verdict markers in place "
                        "(atomically) instead of printing it")
    args = parser.parse_args(argv)
    table = verdict_table(args.results_dir)
    if args.readme is None:
        print(table, end="")
        return
    path = Path(args.readme)
    atomic_write_text(path, replace_block(path.read_text(encoding="utf-8"), table, str(path)))


if __name__ == "__main__":
    main()
