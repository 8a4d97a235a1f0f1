"""Leaderboard plots: bar charts with 95% CI whiskers per task, t-SNE of a run's test embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ssl3d.bench.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def bar_chart(summary: pd.DataFrame, task: str, path: str | os.PathLike[str]) -> Path:
    """One panel per metric of ``task``: a bar per (method, modality), whiskers = 95% CI, n in the label."""
    plt = _pyplot()
    rows = summary[summary["task"] == task]
    metrics = sorted(rows["metric"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.5, 1.0 + 0.55 * rows.groupby(["method", "modality"]).ngroups) * len(metrics) ** 0.5 * 1.6, 4.2),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = rows[rows["metric"] == metric].sort_values(["method", "modality", "preset"])
        several = part["data_key"].nunique() > 1 if "data_key" in part else False
        names = [f"{r.method}" + (f" [{getattr(r, 'settings', '')}]" if getattr(r, "settings", "") else "")
                 + f"\n({r.modality}, n={r.n}" + (f", data {r.data_key})" if several else ")")
                 for r in part.itertuples()]
        err = np.nan_to_num(part["ci95"].to_numpy(dtype=float))
        x = np.arange(len(part))
        ax.bar(x, part["mean"], yerr=err, capsize=4, color="#4c72b0", edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
        top = float(np.nanmax(part["mean"] + err)) if len(part) else 1.0
        ax.set_ylim(0, min(100.0, top * 1.1) if top <= 100 else top * 1.1)
    fig.suptitle(f"{task}: mean ± 95% CI over seeds")
    fig.tight_layout()
    return _save(fig, path)


def tsne_plot(embeddings: np.ndarray, labels: np.ndarray, class_names: list[str], title: str,
              path: str | os.PathLike[str], seed: int = 0) -> Path:
    """2-d t-SNE of embeddings coloured by category (legend with category names)."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    perplexity = float(min(30, max(5, (len(embeddings) - 1) // 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab20")
    for c in np.unique(labels):
        sel = labels == c
        name = class_names[c] if c < len(class_names) else str(c)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(int(c) % 20), label=name)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike[str]) -> Path:
    plt = _pyplot()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return target


def write_plots(results_dir: str | os.PathLike[str], summary: pd.DataFrame, runs: pd.DataFrame) -> list[Path]:
    """Bar charts for every task and a t-SNE for the newest run of each (task, method, modality) with embeddings."""
    out_dir = Path(results_dir) / "plots"
    paths = [bar_chart(summary, task, out_dir / f"{task}.png") for task in sorted(summary["task"].unique())]
    if runs.empty:
        return paths
    newest = runs.sort_values("created_at").drop_duplicates(["task", "method", "modality"], keep="last")
    for r in newest.itertuples():
        artifacts = Path(results_dir) / "runs" / r.run_id / "artifacts.npz"
        if not artifacts.exists():
            continue
        with np.load(artifacts) as data:
            if "test_embeddings" not in data.files:
                continue
            emb, lab = data["test_embeddings"], data["test_labels"]
            names = [str(n) for n in data["class_names"]] if "class_names" in data.files else []
        title = f"{r.method} on {r.task} ({r.modality}), seed {r.seed}: test embeddings"
        paths.append(tsne_plot(emb, lab, names, title, out_dir / f"tsne-{r.task}-{r.method}-{r.modality}.png"))
    return paths
