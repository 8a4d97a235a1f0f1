"""Leaderboard plots: horizontal bar charts with 95% CI whiskers per task, t-SNE of a run's test embeddings,
budget curves (metric vs pretraining epochs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ssl3d.core.io import atomic_path
from ssl3d.bench.run.results import text_columns
from ssl3d.core.stats import ci95_halfwidth
from ssl3d.bench.protocols.tasks import TASKS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


MODALITY_COLOURS = {"points": "#4c72b0", "voxels": "#dd8452", "views": "#55a868", "image": "#c44e52"}


# (protocol, metric) pairs reported as fractions, not percentages: CMIC's shape distances d_HAU and d_IoU
FRACTION_METRICS = frozenset({("ibsr", "hau"), ("ibsr", "iou")})


def bar_chart(summary: pd.DataFrame, task: str, path: str | os.PathLike[str]) -> Path:
    """One panel per metric of ``task``: a horizontal bar per row group, whiskers = 95% CI, n in the label.

    Bars are coloured by modality; a label adds the preset, ``--set`` settings or data key only where
    one method's rows differ in them, so the common case stays short.
    """
    plt = _pyplot()
    rows = text_columns(summary[summary["task"] == task], ("preset", "settings", "data_key"))
    rows = rows[~rows["metric"].str.contains(":", regex=False)]  # per-category metrics: one panel each is unreadable
    protocol = TASKS.get(task).protocol if task in TASKS else ""
    metrics = sorted(rows["metric"].unique())
    keys = ["method", "modality", "preset", "settings", "data_key"]
    groups = rows.drop_duplicates(keys).sort_values(keys)[keys].itertuples(index=False)
    groups = [tuple(g) for g in groups]
    # a field goes into the label only where one method/modality has several values of it (methods
    # that set their own data options always differ in data_key: that is no news)
    per_method = rows.groupby(["method", "modality"])
    varies = {k: bool((per_method[k].nunique() > 1).any()) for k in ("preset", "settings", "data_key")}

    def label(method: str, modality: str, preset: str, settings: str, data_key: str) -> str:
        extra = [preset] if varies["preset"] else []
        extra += [settings] if varies["settings"] and settings else []
        extra += [f"data {data_key}"] if varies["data_key"] else []
        n = rows[(rows[keys] == [method, modality, preset, settings, data_key]).all(axis=1)]["n"].max()
        return f"{method} ({modality}{', ' + ', '.join(extra) if extra else ''}) n={n}"

    labels = [label(*g) for g in groups]
    y = np.arange(len(groups))
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.0 + 3.0 * len(metrics) + 0.06 * max(map(len, labels)),
                                                       1.4 + 0.3 * len(groups)), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = rows[rows["metric"] == metric].set_index(keys)
        mean = np.array([part["mean"].get(g, np.nan) for g in groups], dtype=float)
        err = np.nan_to_num(np.array([part["ci95"].get(g, np.nan) for g in groups], dtype=float))
        colours = [MODALITY_COLOURS.get(g[1], "#8c8c8c") for g in groups]
        ax.barh(y, np.nan_to_num(mean), xerr=err, capsize=3, color=colours, edgecolor="black", linewidth=0.4)
        # shape distances (CMIC's d_HAU and d_IoU) are fractions; every other metric is a percentage
        ax.set_xlabel(metric if (protocol, metric) in FRACTION_METRICS else f"{metric} (%)")
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        top = float(np.nanmax(mean + err)) if np.isfinite(mean).any() else 1.0
        ax.set_xlim(0, top * 1.08 if (protocol, metric) in FRACTION_METRICS or top > 100 else min(100.0, top * 1.08))
    axes[0][0].set_yticks(y, labels, fontsize=8)
    axes[0][0].invert_yaxis()
    present = [m for m in MODALITY_COLOURS if m in set(rows["modality"])]
    handles = [plt.Rectangle((0, 0), 1, 1, color=MODALITY_COLOURS[m]) for m in present]
    fig.legend(handles, present, loc="center right", fontsize=8, title="modality", title_fontsize=8)
    fig.suptitle(f"{task}: mean ± 95% CI over seeds (n = seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))  # room for the legend on the right
    return _save(fig, path)


#: PNG text key naming the run a t-SNE plot was drawn from (read back by :func:`plotted_run`)
SOURCE_KEY = "ssl3d-run"


def tsne_plot(embeddings: np.ndarray, labels: np.ndarray, class_names: list[str], title: str,
              path: str | os.PathLike[str], seed: int = 0, source: str = "") -> Path:
    """2-d t-SNE of embeddings coloured by category (legend with category names); ``source`` (a run id) is
    stored in the PNG, so a leaderboard rewrite redraws the plot only when its run changes."""
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
    return _save(fig, path, {SOURCE_KEY: source} if source else None)


def plotted_run(path: str | os.PathLike[str]) -> str:
    """The run id a t-SNE plot was drawn from ('' when absent, unreadable or unmarked)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return str(getattr(image, "text", {}).get(SOURCE_KEY, ""))
    except (OSError, ValueError):
        return ""


def curve_plot(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """One panel per metric: mean ± 95% CI over seeds against pretraining epochs (:mod:`ssl3d.bench.sweep.curve` rows).

    Reference lines: the curve's epoch 0 (the untrained network) and each baseline series' mean.
    """
    return _save(curve_figure(frame), path)


def curve_figure(frame: pd.DataFrame):
    """The figure :func:`curve_plot` saves (a matplotlib ``Figure``; the caller closes it)."""
    from matplotlib.ticker import NullLocator

    plt = _pyplot()
    metrics = sorted(frame["metric"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.0 + 4.0 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = frame[frame["metric"] == metric]
        curve = rows[rows["series"] == "curve"]
        for method, part in curve.groupby("method"):
            stats = part.groupby("epoch")["value"].agg(["mean", ci95_halfwidth])
            x, mean, ci = stats.index.to_numpy(), stats["mean"].to_numpy(), np.nan_to_num(stats["ci95_halfwidth"].to_numpy())
            ax.plot(x, mean, marker="o", label=f"{method} (n={part['seed'].nunique()})")
            ax.fill_between(x, mean - ci, mean + ci, alpha=0.25)
            ax.axhline(mean[x == 0][0], color="grey", linestyle=":", label=f"{method} untrained (epoch 0)")
        for method, part in rows[rows["series"] == "baseline"].groupby("method"):
            ax.axhline(part["value"].mean(), color="black", linestyle="--", label=f"{method} (baseline)")
        ax.set_xscale("symlog", linthresh=1)  # budgets are usually doubling, and 0 must show
        budgets = sorted(int(e) for e in curve["epoch"].unique())
        ax.set_xticks(budgets, [str(e) for e in budgets])  # the measured budgets, not the scale's powers of ten
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("pretraining epochs")
        ax.set_ylabel(f"{metric} ({rows['split'].iloc[0]} split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mean ± 95% CI over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def _save(fig, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    plt = _pyplot()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=120, format="png", metadata=metadata)
    plt.close(fig)
    return target


def write_plots(results_dir: str | os.PathLike[str], summary: pd.DataFrame, runs: pd.DataFrame) -> list[Path]:
    """Bar charts for every task and a t-SNE for the newest run of each (task, method, modality) with embeddings.

    The t-SNE shows a run without ``--set`` overrides (the method as its preset defines it: never its untrained
    network or another variant, which the file name would not tell), and is redrawn only when that run changes.
    """
    out_dir = Path(results_dir) / "plots"
    paths = [bar_chart(summary, task, out_dir / f"{task}.png") for task in sorted(summary["task"].unique())]
    if runs.empty:
        return paths
    plain = runs[text_columns(runs, ("settings",))["settings"] == ""]
    newest = plain.sort_values("created_at").drop_duplicates(["task", "method", "modality"], keep="last")
    for r in newest.itertuples():
        artifacts = Path(results_dir) / "runs" / r.run_id / "artifacts.npz"
        target = out_dir / f"tsne-{r.task}-{r.method}-{r.modality}.png"
        if not artifacts.exists():
            continue
        if target.exists() and plotted_run(target) == r.run_id:  # t-SNE takes seconds to minutes per plot
            paths.append(target)
            continue
        with np.load(artifacts) as data:
            if "test_embeddings" not in data.files:
                continue
            emb, lab = data["test_embeddings"], data["test_labels"]
            names = [str(n) for n in data["class_names"]] if "class_names" in data.files else []
        title = f"{r.method} on {r.task} ({r.modality}), seed {r.seed}: test embeddings"
        paths.append(tsne_plot(emb, lab, names, title, target, source=str(r.run_id)))
    return paths
