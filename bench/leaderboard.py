"""Leaderboard aggregation: runs -> mean, std, 95% CI and n over seeds.

Rows of ``leaderboard.csv`` are grouped by (task, method, modality, preset,
pretrain_data, dataset_version, metric); the confidence interval is the
two-sided 95% Student-t interval of the mean, ``mean +- t_{0.975, n-1} * std / sqrt(n)``
(std with ``ddof=1``; undefined for n = 1). If a seed was run twice, its
latest row counts once, so a rerun never inflates n.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ssl3d.bench.io import atomic_write_text
from ssl3d.bench.results import ResultStore

GROUP_COLUMNS = ["task", "method", "modality", "preset", "pretrain_data", "dataset_version", "metric"]


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (nan for n < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, ci95 (half-width) and n per group; one row per (group, metric)."""
    if frame.empty:
        return pd.DataFrame(columns=GROUP_COLUMNS + ["mean", "std", "ci95", "n", "seeds"])
    frame = frame.copy()
    for col in GROUP_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    latest = frame.sort_values("created_at").drop_duplicates(GROUP_COLUMNS + ["seed"], keep="last")
    rows = []
    for key, group in latest.groupby(GROUP_COLUMNS, sort=True):
        values = group["value"].to_numpy(dtype=float)
        rows.append({**dict(zip(GROUP_COLUMNS, key)), "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                     "ci95": ci95_halfwidth(values), "n": int(len(values)),
                     "seeds": " ".join(str(s) for s in sorted(group["seed"].tolist()))})
    return pd.DataFrame(rows)


def to_markdown(summary: pd.DataFrame) -> str:
    """One markdown table per task: methods as rows, ``mean ± ci95 (n)`` cells per metric."""
    if summary.empty:
        return "_No results yet: run `bench run --method random-pointnet --task synth-svm` first._\n"
    out = []
    for task, group in summary.groupby("task", sort=True):
        metrics = sorted(group["metric"].unique())
        out.append(f"### {task}\n")
        out.append("| method | modality | preset | " + " | ".join(metrics) + " |")
        out.append("|---|---|---|" + "---|" * len(metrics))
        for (method, modality, preset), rows in group.groupby(["method", "modality", "preset"], sort=True):
            cells = []
            for metric in metrics:
                hit = rows[rows["metric"] == metric]
                cells.append(_cell(hit.iloc[0]) if len(hit) else "")
            out.append(f"| {method} | {modality} | {preset} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("Cells: mean ± 95% CI half-width (Student t) over seeds, (n) = number of seeds.\n")
    return "\n".join(out)


def _cell(row: pd.Series) -> str:
    ci = "" if np.isnan(row["ci95"]) else f" ± {row['ci95']:.2f}"
    return f"{row['mean']:.2f}{ci} ({row['n']})"


def write_leaderboard(results_dir: str | os.PathLike[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Aggregate ``leaderboard.csv`` into ``summary.csv`` and ``leaderboard.md``; returns both."""
    store = ResultStore(results_dir)
    summary = summarize(store.read_leaderboard())
    markdown = to_markdown(summary)
    root = Path(store.root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(root / "leaderboard.md", "# ssl3d-bench leaderboard\n\n" + markdown)
    return summary, markdown
