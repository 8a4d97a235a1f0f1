"""Does pretraining help? Every pretrained cell beside the same network untrained.

The benchmark's first question for any method is whether its pretext task beats its own network
at random initialisation (``--set train.epochs=0``: same architecture, data and protocol). This
table asks it for every cell of a leaderboard that has both runs: the difference of the means,
its 95% CI, the p-value of a paired t-test over seeds where both sides ran the same seeds (Welch's
otherwise; the ``test`` column says which) and the Benjamini-Hochberg q-value over the table's
distinct tests. A negative difference is reported as plainly as a positive one; for a metric where
smaller is better (hau) the difference is untrained - pretrained, so positive always means pretraining helps.

An ablation that changes only its loss or augmentation borrows the untrained runs of the method
whose untrained network is bitwise its own (``Method.untrained_network_of``); its row and that
method's then share one untrained sample. Definitions: docs/protocols.md#statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ssl3d.bench.report.claims import UNTRAINED
from ssl3d.bench.report.controls import marks_note, method_label, reads_labels
from ssl3d.bench.report.multiplicity import (
    add_qvalues, by_seed, compare_oriented, counts_sentence, distinct_tests, format_p,
)
from ssl3d.bench.run.results import text_columns
from ssl3d.methods import METHODS

__all__ = ["pretraining_gains", "gains_markdown"]

# the leaderboard's row group (bench/report/leaderboard.py: GROUP_COLUMNS) without ``settings``, which tells the two apart
_CELL = ["task", "method", "modality", "preset", "pretrain_data", "dataset_version", "data_key", "metric"]


def pretraining_gains(runs: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per cell run both pretrained (no ``--set``) and untrained (``train.epochs=0``).

    Args:
        runs: ``leaderboard.csv`` rows (one per run and metric; a seed run twice counts once, latest).
        metrics: metrics to compare (default: all).

    Columns: the cell, ``pretrained``/``untrained`` means and n, ``untrained_method`` (whose untrained runs:
    the method's own, else its ``untrained_network_of``), ``test`` (paired t, Welch t, equal), ``difference``
    (pretrained - untrained; untrained - pretrained where smaller is better), ``ci95`` (half-width), ``p_value``
    (two-sided), ``q_value`` (Benjamini-Hochberg over the table's distinct tests), ``same_test_as`` (the first
    row with the same per-seed values on both sides, such as a balanced test set's equal overall and mean-class
    accuracies: counted once) and ``reads_labels`` (the method's pretraining reads class labels).
    """
    columns = _CELL + ["pretrained", "n_pretrained", "untrained", "n_untrained", "untrained_method", "test",
                       "difference", "ci95", "p_value", "q_value", "same_test_as", "reads_labels"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = text_columns(runs, ("preset", "settings", "pretrain_data", "dataset_version", "data_key"))
    runs = runs[runs["settings"].isin(["", UNTRAINED])]
    if metrics is not None:
        runs = runs[runs["metric"].isin(metrics)]
    latest = runs.sort_values("created_at").drop_duplicates(_CELL + ["settings", "seed"], keep="last")
    untrained = {key: by_seed(group) for key, group in latest[latest["settings"] == UNTRAINED].groupby(_CELL, sort=True)}
    method_at = _CELL.index("method")
    rows, values = [], []
    for key, group in latest[latest["settings"] == ""].groupby(_CELL, sort=True):
        a = by_seed(group)
        source = key[method_at] if key in untrained else (_twin(key[method_at]) or key[method_at])
        b = untrained.get(key[:method_at] + (source,) + key[method_at + 1:])
        if b is None:
            continue
        c = compare_oriented(a, b, key[_CELL.index("metric")])
        rows.append({**dict(zip(_CELL, key)), "pretrained": np.mean(list(a.values())), "n_pretrained": len(a),
                     "untrained": np.mean(list(b.values())), "n_untrained": len(b), "untrained_method": source,
                     "test": c.test, "difference": c.difference, "ci95": c.ci95, "p_value": c.p_two_sided,
                     "reads_labels": reads_labels(key[method_at])})
        values.append((a, b))
    table = pd.DataFrame(rows, columns=columns)
    return add_qvalues(table, values, "p_value", "q_value")


def _twin(method: str) -> str:
    """The method whose untrained network is ``method``'s (``""``: none declared, or no longer registered)."""
    return METHODS.get(method).untrained_network_of if method in METHODS else ""


def gains_markdown(gains: pd.DataFrame) -> str:
    """The table as markdown, with how many cells pretraining helps, hurts or leaves undecided (alpha 0.05)."""
    if gains.empty:
        return ""
    lines = ["### Pretrained vs the same network untrained\n",
             "Untrained = `--set train.epochs=0` (same architecture, data and protocol; \"X's\": the runs of X, whose "
             "untrained network is bitwise this method's). Difference = pretrained - untrained (untrained - pretrained "
             "for hau, where smaller is better: positive always means pretraining helps), ± 95% CI; p = two-sided "
             "t-test over seeds, paired where both sides ran the same seeds (test column); q = Benjamini-Hochberg over "
             f"this table's {distinct_tests(gains)} distinct tests (a row marked \"= N\" repeats row N's test).\n",
             "| # | task | method | modality | metric | pretrained (n) | untrained (n) | test | difference | p | q |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(gains.itertuples(), start=1):
        ci = "" if np.isnan(r.ci95) else f" ± {r.ci95:.2f}"
        source = "" if r.untrained_method == r.method else f", {r.untrained_method}'s"
        test = f"= {int(r.same_test_as) + 1}" if r.same_test_as >= 0 else r.test
        lines.append(f"| {i} | {r.task} | {method_label(r.method)} | {r.modality} | {r.metric} | "
                     f"{r.pretrained:.2f} ({r.n_pretrained}) | {r.untrained:.2f} ({r.n_untrained}{source}) | {test} | "
                     f"{r.difference:+.2f}{ci} | {format_p(r.p_value)} | {format_p(r.q_value)} |")
    note = marks_note(gains["method"])
    lines.append("\n" + counts_sentence(gains, "pretraining", "helps", "hurts") + (" " + note if note else "") + "\n")
    return "\n".join(lines)

