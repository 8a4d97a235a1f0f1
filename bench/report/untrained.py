"""Does pretraining help? Every pretrained cell beside the same network untrained.

The benchmark's first question for any method is whether its pretext task beats
its own network at random initialisation (``--set train.epochs=0``: same
architecture, same data, same protocol, no pretraining). The papers' claims
(:mod:`ssl3d.bench.report.claims`) ask it for a few hand-picked cells; this table asks
it for every cell of a leaderboard that has both runs, with the difference of
the means, its 95% Welch confidence interval and the two-sided Welch p-value.
It is the benchmark's answer, not a target: a negative difference is reported
as plainly as a positive one.

An ablation that changes only its loss or augmentation declares the method whose
untrained network is bitwise its own (``Method.untrained_network_of``, checked
by ``ssl3d.methods.testing.check_untrained_twin``): when it has no untrained
runs of a cell, that method's stand for them, and ``untrained_method`` says so; one with
its own untrained runs of a cell (even a single seed) uses only those. An ablation and
the method it borrows from then share one untrained sample: their rows are not
independent evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ssl3d.bench.report.claims import UNTRAINED
from ssl3d.bench.run.results import text_columns
from ssl3d.methods import METHODS

__all__ = ["pretraining_gains", "gains_markdown"]

# the leaderboard's row group (bench/report/leaderboard.py: GROUP_COLUMNS) without ``settings``, which tells the two apart
_CELL = ["task", "method", "modality", "preset", "pretrain_data", "dataset_version", "data_key", "metric"]


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(95% CI half-width of mean(a) - mean(b), two-sided p) by Welch's t; nan when undefined."""
    if len(a) < 2 or len(b) < 2 or np.ptp(np.concatenate([a, b])) == 0:
        return float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return 0.0, float("nan")
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return float(stats.t.ppf(0.975, dof) * se), p


def pretraining_gains(runs: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per cell run both pretrained (no ``--set``) and untrained (``train.epochs=0``).

    Args:
        runs: ``leaderboard.csv`` rows (one per run and metric; a seed run twice counts once, latest).
        metrics: metrics to compare (default: all).

    Columns: the cell, ``pretrained``/``untrained`` means and n, ``untrained_method`` (whose untrained runs:
    the method's own, else its ``untrained_network_of``), ``difference`` (pretrained - untrained), ``ci95``
    (Welch half-width of the difference) and ``p_value`` (two-sided Welch).
    """
    columns = _CELL + ["pretrained", "n_pretrained", "untrained", "n_untrained", "untrained_method", "difference",
                       "ci95", "p_value"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = text_columns(runs, ("preset", "settings", "pretrain_data", "dataset_version", "data_key"))
    runs = runs[runs["settings"].isin(["", UNTRAINED])]
    if metrics is not None:
        runs = runs[runs["metric"].isin(metrics)]
    latest = runs.sort_values("created_at").drop_duplicates(_CELL + ["settings", "seed"], keep="last")
    untrained = {key: group["value"].to_numpy(dtype=float)
                  for key, group in latest[latest["settings"] == UNTRAINED].groupby(_CELL, sort=True)}
    method_at = _CELL.index("method")
    rows = []
    for key, group in latest[latest["settings"] == ""].groupby(_CELL, sort=True):
        a = group["value"].to_numpy(dtype=float)
        source = key[method_at] if key in untrained else (_twin(key[method_at]) or key[method_at])
        b = untrained.get(key[:method_at] + (source,) + key[method_at + 1:])
        if b is None:
            continue
        ci, p = _welch(a, b)
        rows.append({**dict(zip(_CELL, key)), "pretrained": a.mean(), "n_pretrained": len(a), "untrained": b.mean(),
                     "n_untrained": len(b), "untrained_method": source, "difference": a.mean() - b.mean(),
                     "ci95": ci, "p_value": p})
    return pd.DataFrame(rows, columns=columns)


def _twin(method: str) -> str:
    """The method whose untrained network is ``method``'s (``""``: none declared, or no longer registered)."""
    return METHODS.get(method).untrained_network_of if method in METHODS else ""


def gains_markdown(gains: pd.DataFrame) -> str:
    """The table as markdown, with how many cells pretraining helps, hurts or leaves undecided (alpha 0.05)."""
    if gains.empty:
        return ""
    lines = ["### Pretrained vs the same network untrained\n",
             "Untrained = `--set train.epochs=0` (same architecture, data and protocol; \"X's\": the runs of X, whose "
             "untrained network is bitwise this method's). Difference = pretrained - untrained, ± Welch 95% CI; "
             "p = two-sided Welch t-test over seeds.\n",
             "| task | method | modality | metric | pretrained (n) | untrained (n) | difference | p |",
             "|---|---|---|---|---|---|---|---|"]
    for r in gains.itertuples():
        ci = "" if np.isnan(r.ci95) else f" ± {r.ci95:.2f}"
        p = "" if np.isnan(r.p_value) else f"{r.p_value:.3f}"
        source = "" if r.untrained_method == r.method else f", {r.untrained_method}'s"
        lines.append(f"| {r.task} | {r.method} | {r.modality} | {r.metric} | {r.pretrained:.2f} ({r.n_pretrained}) | "
                     f"{r.untrained:.2f} ({r.n_untrained}{source}) | {r.difference:+.2f}{ci} | {p} |")
    significant = gains["p_value"] < 0.05
    helps = int((significant & (gains["difference"] > 0)).sum())
    hurts = int((significant & (gains["difference"] < 0)).sum())
    lines.append(f"\npretraining helps in {helps}, hurts in {hurts}, undecided (p >= 0.05 or n < 2) in "
                 f"{len(gains) - helps - hurts} of {len(gains)} cells\n")
    return "\n".join(lines)
