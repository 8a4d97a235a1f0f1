"""Leaderboard aggregation: runs -> mean, std, 95% CI and n over seeds.

Rows of ``leaderboard.csv`` are grouped by (task, method, modality, preset, settings,
pretrain_data, dataset_version, data_key, metric), where ``settings`` is the run's
``--set`` overrides and ``data_key`` hashes the evaluation dataset's settings, so
runs of different experiments or on different dataset sizes never mix; the confidence interval is the
two-sided 95% Student-t interval of the mean, ``mean +- t_{0.975, n-1} * std / sqrt(n)``
(std with ``ddof=1``; undefined for n = 1). If a seed was run twice, its
latest row counts once, so a rerun never inflates n. Each row also says whether its method is a control
and whether its pretraining reads class labels (bench/report/controls.py).
"""

from __future__ import annotations

import io
import logging
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ssl3d.bench.report.claims import claim_rows, claims_markdown, claims_verdicts
from ssl3d.bench.report.controls import (
    controls_markdown, coverage_note, gains_over_controls, is_control, marks_note, method_label, reads_labels,
    upper_bound, upper_bound_markdown,
)
from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.core.stats import ci95_halfwidth
from ssl3d.bench.report.eval_sizes import collect_eval_sizes, read_eval_sizes, write_eval_sizes
from ssl3d.bench.report.untrained import gains_markdown, pretraining_gains
from ssl3d.core.io import atomic_write_text, os_error_reason
from ssl3d.bench.run.results import CHECKOUT_RESULTS, LOCAL_RESULTS, LeaderboardFormatError, ResultStore, SkippedLine, text_columns
from ssl3d.core.errors import UserError

log = logging.getLogger(__name__)


GROUP_COLUMNS = ["task", "method", "modality", "preset", "settings", "pretrain_data", "dataset_version", "data_key",
                 "metric"]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, ci95 (half-width) and n per group; one row per (group, metric)."""
    if frame.empty:
        return pd.DataFrame(columns=GROUP_COLUMNS + ["mean", "std", "ci95", "n", "seeds", "control", "reads_labels"])
    frame = text_columns(frame, GROUP_COLUMNS)  # also files written before a column existed
    latest = frame.sort_values("created_at").drop_duplicates(GROUP_COLUMNS + ["seed"], keep="last")
    rows = []
    for key, group in latest.groupby(GROUP_COLUMNS, sort=True):
        values = group["value"].to_numpy(dtype=float)
        rows.append({**dict(zip(GROUP_COLUMNS, key)), "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                     "ci95": ci95_halfwidth(values), "n": int(len(values)),
                     "seeds": " ".join(str(s) for s in sorted(group["seed"].tolist()))})
    summary = pd.DataFrame(rows)
    roles = {m: (is_control(m), reads_labels(m)) for m in summary["method"].unique()}
    summary["control"] = summary["method"].map(lambda m: roles[m][0])
    summary["reads_labels"] = summary["method"].map(lambda m: roles[m][1])
    return summary


def to_markdown(summary: pd.DataFrame) -> str:
    """One markdown table per task: methods as rows, ``mean ± ci95 (n)`` cells per metric."""
    if summary.empty:
        return ("_No results yet: run `bench run --method random-pointnet --task synth-svm` first "
                "(the committed reference: `bench leaderboard --reference synth-quick`)._\n")
    out = []
    for task, group in summary.groupby("task", sort=True):
        # per-category metrics (``top1_acc:chair``) would make one column per category: they stay in summary.csv
        metrics = sorted(m for m in group["metric"].unique() if ":" not in m)
        per_category = group["metric"].str.contains(":", regex=False).any()
        out.append(f"### {task}\n")
        out.append("| method | modality | preset | settings | data | " + " | ".join(metrics) + " |")
        out.append("|---|---|---|---|---|" + "---|" * len(metrics))
        keys = ["method", "modality", "preset", "settings", "data_key"]
        for (method, modality, preset, settings, data_key), rows in group.groupby(keys, sort=True):
            cells = []
            for metric in metrics:
                hit = rows[rows["metric"] == metric]
                cells.append(_cell(hit.iloc[0]) if len(hit) else "")
            label = f"`{settings}`" if settings else ""
            out.append(f"| {method_label(method)} | {modality} | {preset} | {label} | {data_key} | "
                       + " | ".join(cells) + " |")
        if per_category:
            out.append("\nPer-category metrics (`metric:category`) are in `summary.csv`.")
        out.append("")
    note = marks_note(summary["method"])
    out.append("Cells: mean ± 95% CI half-width (Student t) over seeds, (n) = number of seeds; "
               "settings = the run's `--set` overrides (empty: the preset as it is); "
               "data = hash of the evaluation dataset's settings (rows with different data are not comparable)."
               + (" " + note if note else "") + "\n")
    return "\n".join(out)


def _cell(row: pd.Series) -> str:
    ci = "" if np.isnan(row["ci95"]) else f" ± {row['ci95']:.2f}"
    return f"{row['mean']:.2f}{ci} ({row['n']})"


REPORTED_COLUMNS = ["paper", "table", "method", "task", "modality", "setting", "metric", "value"]


def packaged_reported() -> Traversable:
    """The papers' printed numbers as shipped inside the package (``ssl3d/bench/reference/reported.csv``).

    Read through importlib.resources, so a wheel install finds them as well as a source checkout.
    """
    return resources.files("ssl3d.bench").joinpath("reference").joinpath("reported.csv")


def load_reported(results_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The papers' printed numbers: ``<results_dir>/reported.csv`` when there is one, else the packaged copy."""
    own = Path(results_dir) / "reported.csv" if results_dir else None
    if own is not None and own.exists():
        return pd.read_csv(own)
    packaged = packaged_reported()
    if packaged.is_file():
        return pd.read_csv(io.StringIO(packaged.read_text(encoding="utf-8")))
    # a broken install, not a normal state: say so instead of comparing with nothing in silence
    log.warning("the packaged reported.csv is missing (%s); no reproduced-vs-reported comparison", packaged)
    return pd.DataFrame(columns=REPORTED_COLUMNS)


def compare_with_reported(summary: pd.DataFrame, reported: pd.DataFrame) -> pd.DataFrame:
    """Our mean beside each reported number of the same (task, method, metric[, modality])."""
    if summary.empty or reported.empty:
        return pd.DataFrame(columns=["task", "method", "modality", "settings", "metric", "ours", "ci95", "n",
                                     "reported", "difference", "source", "setting_differences"])
    rep = reported.copy()
    rep["modality"] = rep["modality"].fillna("")
    rep["setting"] = ["" if pd.isna(v) else str(v) for v in rep["setting"]]  # an all-empty column reads as float
    rows = []
    for r in summary.itertuples():
        settings = str(getattr(r, "settings", ""))
        hits = rep[(rep["task"] == r.task) & (rep["method"] == r.method) & (rep["metric"] == r.metric)
                   & ((rep["modality"] == r.modality) | (rep["modality"] == ""))]
        hits = hits[[settings_agree(h.setting, settings, getattr(h, "protocol", "")) for h in hits.itertuples()]]
        for h in hits.itertuples():
            setting = f", {h.setting}" if h.setting else ""
            rows.append({"task": r.task, "method": r.method, "modality": r.modality,
                         "settings": getattr(r, "settings", ""), "metric": r.metric,
                         "ours": r.mean, "ci95": r.ci95, "n": r.n, "reported": float(h.value),
                         "difference": r.mean - float(h.value), "source": f"{h.paper} {h.table}{setting}",
                         "setting_differences": _setting_differences(r, h.setting)})
    return pd.DataFrame(rows)


_REPORTED_MODES = {"finetune": "finetune", "from scratch": "scratch", "frozen": "frozen"}


def _our_setting(settings: str, suffix: str) -> str | None:
    """The value of the first ``<section>.<suffix>=VALUE`` among our ``--set`` overrides, if any."""
    for token in settings.split():
        key, _, value = token.partition("=")
        if key.endswith("." + suffix):
            return value
    return None


def settings_agree(reported_setting: str, settings: str, protocol: str = "") -> bool:
    """Whether a reported cell and one of ours were made under the same protocol settings.

    Compared where both sides say it: the SVM kernel (``svm=rbf`` vs ``svm.kernel=rbf``), the label
    fraction (``label_fraction=0.5``; 1 when unsaid), an unseen-shape gallery (``unseen shapes`` vs
    ``ibsr.gallery_dataset=...``) and the training mode (``finetune`` / ``from scratch`` / ``frozen`` vs
    ``<protocol>.mode``, or the protocol's default mode when we did not set one). Anything else printed in
    the setting (pretraining data, views) is a known difference shown beside the numbers, not a filter.
    """
    reported_setting = reported_setting or ""
    tokens = [t.strip() for t in reported_setting.split(";")]
    if ("svm=rbf" in tokens) != (_our_setting(settings, "kernel") == "rbf"):
        return False
    fraction = next((t.split("=", 1)[1] for t in tokens if t.startswith("label_fraction=")), "1")
    if float(fraction) != float(_our_setting(settings, "label_fraction") or 1):
        return False
    if ("unseen shapes" in reported_setting) != (_our_setting(settings, "gallery_dataset") is not None):
        return False
    mode = next((_REPORTED_MODES[t] for t in tokens if t in _REPORTED_MODES), None)
    if mode is not None:
        ours = _our_setting(settings, "mode")
        if ours is None and protocol in PROTOCOLS:
            ours = getattr(PROTOCOLS.get(protocol).Config(), "mode", None)
        if ours != mode:
            return False
    return True


def _setting_differences(ours, reported_setting: str) -> str:
    """What is known to differ between our cell and the paper's: pretraining data and budget."""
    pretrain = getattr(ours, "pretrain_data", "") or str(ours.task).split("-", 1)[0]
    notes = [f"ours: pretrained on {pretrain} train, preset {ours.preset}"]
    if "pretrained on" in reported_setting:
        notes.append("paper: " + reported_setting.split(";")[0].strip())
    return "; ".join(notes)


def comparison_markdown(comparison: pd.DataFrame) -> str:
    if comparison.empty:
        return ("### Reproduced vs reported\n\nNo run matches a cell printed by the papers under the same settings "
                "(task, method, metric, modality, SVM kernel, label fraction, gallery, training mode; the papers do not "
                "use synth); their numbers are in `bench/reference/reported.csv`.\n")
    lines = ["### Reproduced vs reported\n",
             "| task | method | modality | our settings | metric | ours | reported | difference | source | "
             "known differences |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in comparison.itertuples():
        ci = "" if np.isnan(r.ci95) else f" ± {r.ci95:.2f}"
        settings = f"`{r.settings}`" if r.settings else ""
        lines.append(f"| {r.task} | {method_label(r.method)} | {r.modality} | {settings} | {r.metric} | "
                     f"{r.ours:.2f}{ci} ({r.n}) | {r.reported:.2f} | {r.difference:+.2f} | {r.source} | "
                     f"{r.setting_differences} |")
    note = marks_note(comparison["method"])
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def write_leaderboard(results_dir: str | os.PathLike[str] | None = None, plot: bool = False, sync: bool = False,
                      page: Callable[[Path], Path] | None = None) -> tuple[pd.DataFrame, str]:
    """Aggregate ``leaderboard.csv`` into ``summary.csv``, the tables' CSVs and ``leaderboard.md``.

    The tables: ``comparison.csv`` (reproduced vs reported), ``pretraining_gains.csv``, ``control_gains.csv`` and
    ``claims.csv``, each written only when it has rows; the supervised upper bound is on the page only.

    With ``plot``, also bar charts and t-SNE plots under ``plots/``; with ``page``, ``page(folder)`` writes
    the HTML page last. Malformed lines are skipped (each logged with file and line) and counted in the
    markdown; a file whose header is not a leaderboard header is backed up and rebuilt from the result files.
    With ``sync``, the rows of result files not yet in ``leaderboard.csv`` (sweep jobs) are added first.
    A file that cannot be written (a read-only folder, a full disk) is one warning naming it: the markdown
    is returned all the same, for the user who asked to see it. Returns (summary, markdown).
    """
    store = ResultStore(results_dir)
    if sync and (store.root / "runs").is_dir():
        try:
            store.sync_leaderboard(only_if_missing=True)
        except OSError as exc:
            if isinstance(exc, UserError):  # leaderboard.csv is a folder
                raise
            log.warning("could not add the rows of %s to %s (%s)", store.root / "runs", store.root / "leaderboard.csv",
                        os_error_reason(exc))
    try:
        runs, skipped = store.read_leaderboard_checked()
    except LeaderboardFormatError as exc:
        log.warning("%s", exc)
        store.rebuild_leaderboard()
        runs, skipped = store.read_leaderboard_checked()
    summary = summarize(runs)
    comparison = compare_with_reported(summary, load_reported(store.root))
    claims = claims_table(runs)
    gains = pretraining_gains(runs)
    controls = gains_over_controls(runs)
    markdown = (skipped_note(store.leaderboard_path, skipped) + to_markdown(summary) + "\n"
                + comparison_markdown(comparison))
    for table in (gains_markdown(gains), controls_markdown(controls, coverage_note(runs, controls)),
                  upper_bound_markdown(upper_bound(runs))):
        markdown += "\n" + table if table else ""
    if not claims.empty:
        markdown += "\n" + claims_markdown(claims)
    markdown += curves_markdown(Path(store.root))
    root = Path(store.root)
    target = root
    try:  # a read-only folder or a full disk: the table is still shown (the user asked to see it), and why not saved
        root.mkdir(parents=True, exist_ok=True)
        target = root / "summary.csv"
        atomic_write_text(target, summary.to_csv(index=False))
        for name, table in (("comparison.csv", comparison), ("claims.csv", claims), ("pretraining_gains.csv", gains),
                            ("control_gains.csv", controls)):
            target = root / name
            if table.empty:  # no such rows: no file (an old one would describe runs that are gone)
                target.unlink(missing_ok=True)
            else:
                atomic_write_text(target, table.to_csv(index=False))
        target = root / "eval_sizes.csv"
        write_eval_sizes(root, read_eval_sizes(root) | collect_eval_sizes(root))
        target = root / "leaderboard.md"
        atomic_write_text(target, "# ssl3d-bench leaderboard\n\n" + markdown)
        if plot and not summary.empty:
            from ssl3d.bench.report.plots import write_plots

            target = root / "plots"
            for path in write_plots(root, summary, runs):
                markdown += f"\nplot: {path}"
        if page is not None:
            target = root / "leaderboard.html"
            markdown += f"\npage: {page(root)}"
    except OSError as exc:
        log.warning("could not write %s (%s): the leaderboard is shown but not saved in %s", target,
                    os_error_reason(exc), root)
    return summary, markdown


def claims_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The papers' claims on each preset of ``runs``, one family of tests; claims not run (under two seeds a side)
    left out before the q-values."""
    presets = sorted(runs["preset"].astype(str).unique()) if not runs.empty else []
    rows, sides = [], []
    for preset in presets:
        table, pairs = claim_rows(runs, preset=preset)
        for record, pair in zip(table.to_dict("records"), pairs):
            if record["n_better"] >= 2 and record["n_worse"] >= 2:
                rows.append(record)
                sides.append(pair)
    return claims_verdicts(pd.DataFrame(rows), sides) if rows else pd.DataFrame()


def curves_markdown(root: Path) -> str:
    """Links to the budget curves kept beside a leaderboard (``<root>/curves/*.png``, from ``bench curve``)."""
    pngs = sorted((root / "curves").glob("*.png"))
    if not pngs:
        return ""
    lines = ["\n### Budget curves\n", "Metric vs pretraining epochs (mean ± 95% CI over seeds); the split each was "
             "scored on is in its file name (`val`: a validation part carved from train, used to choose budgets).\n"]
    lines += [f"![{p.stem}](curves/{p.name})" for p in pngs]
    return "\n".join(lines) + "\n"


def skipped_note(path: Path, skipped: list[SkippedLine]) -> str:
    """One line saying how many lines of ``path`` were left out ('' when none were)."""
    if not skipped:
        return ""
    lines = ", ".join(str(s.line) for s in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
    return (f"**Warning: skipped {len(skipped)} malformed line{'s' if len(skipped) != 1 else ''} of {path}** "
            f"(line {lines}; the warnings say why).\n\n")


class ReferenceNotFoundError(UserError, FileNotFoundError):
    """``--reference`` names no folder with a ``leaderboard.csv``."""


def resolve_reference(name_or_path: str | os.PathLike[str]) -> Path:
    """A reference leaderboard folder: a path, or a name under ``./results/`` or a source checkout's.

    ``results/local`` (the user's own runs) is never a reference.
    """
    candidates = [Path(name_or_path)]
    if str(name_or_path) != LOCAL_RESULTS:
        candidates += [Path("results") / name_or_path, CHECKOUT_RESULTS / name_or_path]
    for folder in candidates:
        if (folder / "leaderboard.csv").is_file():
            return folder
    known = sorted({p.parent.name for d in (Path("results"), CHECKOUT_RESULTS)
                    for p in d.glob("*/leaderboard.csv")} - {LOCAL_RESULTS})
    raise ReferenceNotFoundError(f"no reference leaderboard {str(name_or_path)!r}: no leaderboard.csv in "
                            f"{', '.join(str(c) for c in candidates)}; known names: {', '.join(known) or 'none'}")


def reference_markdown(name_or_path: str | os.PathLike[str]) -> str:
    """The reference leaderboard's summary as markdown, read only: nothing in its folder is written."""
    folder = resolve_reference(name_or_path)
    store = ResultStore(folder)
    runs, skipped = store.read_leaderboard_checked()
    return (f"## Reference: {folder} ({runs['run_id'].nunique()} runs; committed, not your runs)\n\n"
            + skipped_note(store.leaderboard_path, skipped) + to_markdown(summarize(runs)))
