"""A results folder as one static HTML page: sortable, filterable tables with CI bars, and the folder's plots."""

from __future__ import annotations

import html
import math
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ssl3d.bench.report.controls import gains_over_controls, marks_note, method_label, upper_bound
from ssl3d.bench.report.html_assets import CSS, JS
from ssl3d.bench.report.leaderboard import claims_table, summarize
from ssl3d.bench.report.untrained import pretraining_gains
from ssl3d.bench.run.results import ResultStore, SkippedLine, text_columns
from ssl3d.core.io import atomic_write_text

__all__ = ["FILTERS", "IMAGE_FOLDERS", "PAGE_NAME", "build_page", "write_page"]

PAGE_NAME = "leaderboard.html"
FILTERS = ("task", "modality", "preset", "method")  # the select boxes (and the rows' data-* attributes)
# embedded in this order, each folder's PNGs sorted by file name
IMAGE_FOLDERS = {
    "plots": "Bar charts per task (mean ± 95% CI over seeds) and t-SNE maps of frozen features "
             "(<code>bench leaderboard --plot</code>).",
    "curves": "Budget curves: the metric against pretraining epochs, mean ± 95% CI over seeds, scored on the "
              "split in the file name (<code>val</code>: carved from train, used to choose budgets; "
              "<code>bench curve</code>).",
    "knee-curves": "One-seed curves to larger budgets, from which each method's pretraining budget was chosen.",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAR_WIDTH = 200
Column = tuple[str, str, str]  # (key, header label, type: "text" | "num" | "none" = not sortable)

def esc(value: object) -> str:
    """``value`` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def _td(text: str, sort: str | None = None, cls: str = "", title: str = "") -> str:
    attrs = (f' data-v="{esc(sort)}"' if sort is not None else "") + (f' class="{cls}"' if cls else "")
    attrs += f' title="{esc(title)}"' if title else ""
    return f"<td{attrs}>{esc(text)}</td>"


def _num(value: float, spec: str = ".2f") -> tuple[str, str]:
    """(shown text, sort key) of a number; both empty for NaN. The key has 12 digits: a library's last-bit change
    leaves the committed pages as they are."""
    value = float(value)
    return ("", "") if math.isnan(value) else (format(value, spec), format(value, ".12g"))


def _num_td(value: float, spec: str = ".2f", title: str = "") -> str:
    text, key = _num(value, spec)
    return _td(text, key, "num", title)


def _method_td(method: str, rest: str = "") -> str:
    """A method's cell: its name with the page's marks (a dagger: reads labels; "(control)"), sorted by name."""
    return _td(method_label(method) + rest, method + rest, title=marks_note([method]))


def _bar(value: float, ci: float, lo: float, hi: float) -> str:
    """An inline SVG bar from 0 to ``value`` with a ``± ci`` whisker, on the axis [lo, hi]."""
    def x(v: float) -> float:
        return min(max((v - lo) / (hi - lo) * BAR_WIDTH, 0.0), float(BAR_WIDTH))

    zero, end = x(0.0), x(value)
    left, width, cls = min(zero, end), abs(end - zero), ' class="neg"' if value < 0 else ""
    parts = [f'<rect{cls} x="{left:.1f}" y="3" width="{width:.1f}" height="6"/>']
    if not math.isnan(ci):
        a, b = x(value - ci), x(value + ci)
        parts.append(f'<path d="M{a:.1f} 6H{b:.1f}M{a:.1f} 2V10M{b:.1f} 2V10"/>')
    if lo < 0 < hi:
        parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="12"/>')
    return (f'<td><svg class="bar" width="{BAR_WIDTH}" height="12" viewBox="0 0 {BAR_WIDTH} 12" aria-hidden="true">'
            + "".join(parts) + "</svg></td>")


def _overall(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The (task, metric) pairs that have a value over all categories (a metric without ``:``)."""
    return {(str(t), str(m)) for t, m in zip(frame["task"], frame["metric"]) if ":" not in str(m)}


def _axis_key(task: str, metric: str, overall: set[tuple[str, str]]) -> tuple[str, str, bool]:
    """The rows that share a bar axis: a task's metric; its per-category rows, hidden at first, share their own."""
    base = metric.split(":")[0]
    return task, base, ":" in metric and (task, base) in overall


def _axes(frame: pd.DataFrame, value: str, ci: str, centred: bool,
          overall: set[tuple[str, str]]) -> dict[tuple[str, str, bool], tuple[float, float]]:
    """Each bar axis: from 0 (or the lowest CI end) to the highest CI end (or 0); symmetric about 0 if ``centred``."""
    spans: dict[tuple[str, str, bool], tuple[float, float]] = {}
    for task, metric, v, half in zip(frame["task"], frame["metric"], frame[value].astype(float),
                                     frame[ci].astype(float).fillna(0.0)):
        key = _axis_key(str(task), str(metric), overall)
        lo, hi = spans.get(key, (0.0, 0.0))
        spans[key] = (min(lo, v - half), max(hi, v + half))
    axes = {}
    for key, (lo, hi) in spans.items():
        lo, hi = (-max(-lo, hi), max(-lo, hi)) if centred else (lo, hi)
        axes[key] = (lo, hi if hi > lo else lo + 1.0)
    return axes


def _table(table_id: str, columns: Sequence[Column], rows: Iterable[tuple[dict[str, str], list[str]]]) -> str:
    """A sortable table: ``rows`` are (data-* filter attributes, rendered ``<td>`` cells)."""
    head = "".join(f'<th data-key="{key}" data-type="{kind}">{esc(label)}</th>' for key, label, kind in columns)
    lines = [f'<p class="count" id="{table_id}-count"></p>',
             f'<table class="board" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>']
    for attrs, cells in rows:
        data = "".join(f' data-{k}="{esc(v)}"' for k, v in attrs.items())
        lines.append(f"<tr{data}>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


SUMMARY_COLUMNS: tuple[Column, ...] = (
    ("task", "task", "text"), ("modality", "modality", "text"), ("preset", "preset", "text"),
    ("method", "method", "text"), ("settings", "settings", "text"), ("data", "data", "text"),
    ("metric", "metric", "text"), ("mean", "mean", "num"), ("ci", "± CI", "num"), ("n", "n", "num"),
    ("bar", "mean ± CI", "none"))


def _attrs(row: tuple, overall: set[tuple[str, str]]) -> dict[str, str]:
    """A row's filter attributes: the FILTERS columns, the metric without its ``:category``, and ``percat`` when
    it is the per-category part of a metric the task also has overall (hidden until asked for)."""
    _, base, percat = _axis_key(str(row.task), str(row.metric), overall)
    return {f: str(getattr(row, f)) for f in FILTERS} | {"metric": base} | ({"percat": "1"} if percat else {})


def _summary_rows(summary: pd.DataFrame) -> Iterable[tuple[dict[str, str], list[str]]]:
    overall = _overall(summary)
    axes = _axes(summary, "mean", "ci95", False, overall)
    for r in summary.itertuples(index=False):
        metric, attrs = str(r.metric), _attrs(r, overall)
        cells = [_td(r.task), _td(r.modality), _td(r.preset), _method_td(r.method), _td(r.settings, cls="set"),
                 _td(r.data_key, title=f"pretraining data: {r.pretrain_data}; dataset version: {r.dataset_version}"),
                 _td(metric), _num_td(r.mean), _num_td(r.ci95),
                 _td(str(r.n), str(r.n), "num", f"seeds {r.seeds}"),
                 _bar(float(r.mean), float(r.ci95), *axes[_axis_key(str(r.task), metric, overall)])]
        yield attrs, cells


GAINS_COLUMNS: tuple[Column, ...] = (
    ("task", "task", "text"), ("modality", "modality", "text"), ("preset", "preset", "text"),
    ("method", "method", "text"), ("metric", "metric", "text"), ("pretrained", "pretrained", "num"),
    ("n_pretrained", "n", "num"), ("untrained", "untrained", "num"), ("n_untrained", "n", "num"),
    ("test", "test", "text"), ("difference", "difference", "num"), ("ci", "± CI", "num"), ("p", "p", "num"),
    ("q", "q", "num"), ("bar", "difference ± CI", "none"))


def _gains_rows(gains: pd.DataFrame) -> Iterable[tuple[dict[str, str], list[str]]]:
    overall = _overall(gains)
    axes = _axes(gains, "difference", "ci95", True, overall)
    for r in gains.itertuples(index=False):
        attrs = _attrs(r, overall)
        source = "" if r.untrained_method == r.method else f"the untrained runs of {r.untrained_method}"
        cells = [_td(r.task), _td(r.modality), _td(r.preset), _method_td(r.method), _td(r.metric),
                 _num_td(r.pretrained), _td(str(r.n_pretrained), str(r.n_pretrained), "num"),
                 _num_td(r.untrained, title=source),
                 _td(str(r.n_untrained), str(r.n_untrained), "num"), _td(_test(r)), _num_td(r.difference, "+.2f"),
                 _num_td(r.ci95), _num_td(r.p_value, ".3f"), _num_td(r.q_value, ".3f"),
                 _bar(float(r.difference), float(r.ci95), *axes[_axis_key(str(r.task), str(r.metric), overall)])]
        yield attrs, cells


CONTROL_COLUMNS: tuple[Column, ...] = (
    ("task", "task", "text"), ("modality", "modality", "text"), ("preset", "preset", "text"),
    ("method", "method", "text"), ("settings", "settings", "text"), ("metric", "metric", "text"),
    ("mean", "method", "num"), ("n", "n", "num"), ("control", "strongest control", "text"),
    ("control_mean", "control", "num"), ("n_control", "n", "num"), ("test", "test", "text"),
    ("difference", "difference", "num"), ("ci", "± CI", "num"), ("p", "p", "num"), ("q", "q", "num"),
    ("bar", "difference ± CI", "none"))


def _control_rows(gains: pd.DataFrame) -> Iterable[tuple[dict[str, str], list[str]]]:
    overall = _overall(gains)
    axes = _axes(gains, "difference", "ci95", True, overall)
    for r in gains.itertuples(index=False):
        cells = [_td(r.task), _td(r.modality), _td(r.preset), _method_td(r.method), _td(r.settings, cls="set"),
                 _td(r.metric), _num_td(r.mean), _td(str(r.n), str(r.n), "num"), _td(r.control, title=r.controls),
                 _num_td(r.control_mean), _td(str(r.n_control), str(r.n_control), "num"), _td(_test(r)),
                 _num_td(r.difference, "+.2f"), _num_td(r.ci95), _num_td(r.p_value, ".3f"), _num_td(r.q_value, ".3f"),
                 _bar(float(r.difference), float(r.ci95), *axes[_axis_key(str(r.task), str(r.metric), overall)])]
        yield _attrs(r, overall), cells


UPPER_COLUMNS: tuple[Column, ...] = (
    ("task", "task", "text"), ("modality", "modality", "text"), ("preset", "preset", "text"),
    ("method", "method", "text"), ("settings", "settings", "text"), ("epochs", "epochs", "num"),
    ("labels", "labels", "num"), ("scratch", "scratch ± CI (n)", "num"), ("frozen_task", "frozen: task", "text"),
    ("frozen", "frozen ± CI (n)", "num"), ("difference", "scratch − frozen", "num"), ("ci", "± CI", "num"))


def _upper_rows(table: pd.DataFrame) -> Iterable[tuple[dict[str, str], list[str]]]:
    for r in table.itertuples(index=False):
        attrs = {f: str(getattr(r, f)) for f in FILTERS} | {"metric": "overall_acc"}
        source = f"{r.frozen_task} {r.frozen_settings}".strip() if r.n_frozen else "no frozen run on the same data"
        cells = [_td(r.task), _td(r.modality), _td(r.preset), _method_td(r.method), _td(r.settings, cls="set"),
                 _td(str(r.epochs), str(r.epochs), "num"), _num_td(r.label_fraction, "g"),
                 _mean_ci_n(r.scratch, r.ci95, r.n), _td(source),
                 _mean_ci_n(r.frozen, r.frozen_ci95, r.n_frozen) if r.n_frozen else _td("", ""),
                 _num_td(r.difference, "+.2f"), _num_td(r.difference_ci95)]
        yield attrs, cells


CLAIMS_COLUMNS: tuple[Column, ...] = (
    ("paper", "paper", "text"), ("source", "source", "text"), ("claim", "claim", "text"), ("task", "task", "text"),
    ("modality", "modality", "text"), ("preset", "preset", "text"), ("metric", "metric", "text"),
    ("better", "better", "text"), ("mean_better", "mean ± CI (n)", "num"), ("worse", "worse", "text"),
    ("mean_worse", "mean ± CI (n)", "num"), ("test", "test", "text"), ("p", "p (paper's direction)", "num"),
    ("q", "q", "num"), ("p2", "p two-sided", "num"), ("q2", "q two-sided", "num"), ("verdict", "verdict", "text"))


def _test(r) -> str:
    """The row's test, or which earlier row (1-based) already ran the same one."""
    return f"= row {int(r.same_test_as) + 1}" if r.same_test_as >= 0 else str(r.test)


def _mean_ci_n(mean: float, ci: float, n: int) -> str:
    text, key = _num(mean)
    ci_text = _num(ci)[0]
    return _td(f"{text}{' ± ' + ci_text if ci_text else ''} ({n})".strip(), key, "num")


def _claims_rows(claims: pd.DataFrame) -> Iterable[tuple[dict[str, str], list[str]]]:
    for r in claims.itertuples(index=False):
        methods = [str(r.better), str(r.worse).split(" [")[0]]
        attrs = {"task": str(r.task), "modality": str(r.modality), "preset": str(r.preset),
                 "method": "|".join(dict.fromkeys(methods)), "metric": str(r.metric)}
        verdict = str(r.verdict)
        cells = [_td(r.paper), _td(r.source), _td(r.claim), _td(r.task), _td(r.modality), _td(r.preset),
                 _td(r.metric), _method_td(str(r.better)), _mean_ci_n(r.mean_better, r.ci95_better, r.n_better),
                 _method_td(methods[1], str(r.worse)[len(methods[1]):]),
                 _mean_ci_n(r.mean_worse, r.ci95_worse, r.n_worse), _td(_test(r)), _num_td(r.p_value, ".3f"),
                 _num_td(r.q_value, ".3f"), _num_td(r.p_two_sided, ".3f"), _num_td(r.q_two_sided, ".3f"),
                 _td(verdict, cls="v-" + verdict.split(" ")[0])]
        yield attrs, cells


def _filters(summary: pd.DataFrame) -> str:
    """Select boxes listing exactly the values of the summary, a text filter and the per-category switch."""
    parts = ['<form id="filters" onsubmit="return false"><strong>Filter</strong>']
    metrics = sorted({str(m).split(":")[0] for m in summary["metric"]})
    for name, values in [(f, sorted(set(summary[f].astype(str)))) for f in FILTERS] + [("metric", metrics)]:
        options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
        parts.append(f'<label>{name} <select data-filter="{name}"><option value="">all ({len(values)})</option>'
                     f"{options}</select></label>")
    parts.append('<label>text <input id="q" type="search" placeholder="any cell, e.g. rbf"></label>')
    parts.append('<label><input id="percat" type="checkbox"> per-category rows (<code>metric:category</code> of a '
                 'metric also shown overall)</label><button id="reset" type="button">reset</button></form>')
    return "\n".join(parts)


def _images(root: Path) -> list[tuple[str, str]]:
    """(id, HTML) of one section per image folder that has PNGs, each linked by its path inside the folder.

    Linked, not embedded as data URIs: the real leaderboard's figures made its page 6.8 MB, over the size a
    tracked file may have, and a committed folder holds its PNGs anyway.
    """
    sections = []
    for folder, about in IMAGE_FOLDERS.items():
        figures = []
        for path in sorted((root / folder).glob("*.png"), key=lambda p: p.name):
            data = path.read_bytes()
            if not data.startswith(PNG_SIGNATURE):
                continue
            width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk's
            name = f"{folder}/{path.name}"
            figures.append(f'<figure><img src="{esc(quote(name))}" '
                           f'alt="{esc(name)}" width="{width}" height="{height}" loading="lazy">'
                           f"<figcaption>{esc(name)}</figcaption></figure>")
        if figures:
            sections.append((f"img-{folder}", f'<h2 id="img-{folder}">{esc(folder)}/ ({len(figures)} images)</h2>\n'
                             f'<p>{about} Click an image to widen it.</p>\n<div class="grid">\n'
                             + "\n".join(figures) + "\n</div>"))
    return sections


def _readme_title(root: Path) -> str:
    """The first heading of the folder's README.md, without markdown's backticks ('' without one)."""
    readme = root / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines() if readme.is_file() else []
    return next((line.lstrip("#").strip().replace("`", "") for line in lines if line.startswith("#")), "")


def _header(root: Path, runs: pd.DataFrame, skipped: list[SkippedLine]) -> str:
    """What the folder holds and how the page was made: from the runs' own columns, no clock."""
    runs = text_columns(runs, ("task", "method", "preset", "created_at", "git_commit"))
    name, title = esc(root.resolve().name), _readme_title(root)
    parts = [f"<h1>ssl3d-bench leaderboard: {name}</h1>"]
    if title:
        parts.append(f'<p class="sub">{esc(title)}</p>')
    if runs.empty:
        parts.append("<p>No runs in this folder's <code>leaderboard.csv</code> yet.</p>")
    else:
        def listed(column: str) -> str:
            return esc(", ".join(sorted(v for v in set(runs[column]) if v)))

        seeds = " ".join(str(s) for s in sorted(set(runs["seed"].astype(int))))
        parts.append(f"<p>{runs['run_id'].nunique()} runs ({len(runs)} metric rows) of {runs['method'].nunique()} "
                     f"methods on the tasks {listed('task')}; preset {listed('preset')}; seeds {seeds}. Run between "
                     f"{esc(runs['created_at'].min())} and {esc(runs['created_at'].max())} (the runs' "
                     f"<code>created_at</code>) from code commits {listed('git_commit')}.</p>")
    if skipped:
        parts.append(f'<p class="warn">{len(skipped)} malformed lines of leaderboard.csv were left out '
                     "(<code>bench leaderboard</code> says which and why).</p>")
    parts.append("<p>Made by <code>bench leaderboard --html</code> (its <code>--results-dir</code> being this folder) "
                 'from <a href="leaderboard.csv">leaderboard.csv</a> (the numbers of <code>summary.csv</code> and '
                 "<code>leaderboard.md</code>), the PNGs under plots/, curves/ and knee-curves/ and README.md's title: "
                 "a pure function of those files, with no date of its own; regenerate it after adding runs. "
                 "Styles and script are inline and the figures are the folder's own files, so it opens from disk with no "
                 "network.</p>")
    return "\n".join(parts)


def _sections(summary: pd.DataFrame, runs: pd.DataFrame, images: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(id, HTML) of each section that has something to show, in page order."""
    gains, controls, upper, claims = (pretraining_gains(runs), gains_over_controls(runs), upper_bound(runs),
                                      claims_table(runs))
    out = [("summary-section", "<h2 id=\"summary-section\">Results: mean ± 95% CI over seeds</h2>\n<p>One row per "
            "task, method, modality, preset, settings (the run's <code>--set</code> overrides) and evaluation data "
            "(<code>data</code>: a hash of its settings; rows with different data are not comparable) and metric. "
            "CI: the half-width of the two-sided 95% Student t interval (empty for n = 1). Bar: the mean, whisker: "
            "± CI, one axis per task and metric (per-category rows: their own). Click a header to sort.</p>\n"
            + _table("summary", SUMMARY_COLUMNS, _summary_rows(summary)))]
    if not gains.empty:
        out.append(("gains-section", "<h2 id=\"gains-section\">Pretrained vs the same network untrained</h2>\n<p>"
                    "Untrained: <code>--set train.epochs=0</code> (same architecture, data and protocol). Difference: "
                    "pretrained − untrained (untrained − pretrained for hau, where smaller is better: positive always "
                    "means pretraining helps), ± 95% CI; p: two-sided t-test over seeds, paired where both sides ran the "
                    "same seeds (test); q: Benjamini-Hochberg over the table's distinct tests.</p>\n"
                    + _table("gains", GAINS_COLUMNS, _gains_rows(gains))))
    if not controls.empty:
        out.append(("controls-section", "<h2 id=\"controls-section\">Gains over the strongest control</h2>\n<p>"
                    "Controls: fixed representations of the same modality (random networks, handcrafted descriptors) "
                    "run on the same cell; the strongest has the best mean there (hover a control for all of them), "
                    "which can only shrink a method's difference. Difference: method − strongest control (control − "
                    "method for hau), ± 95% CI; p: two-sided t-test over seeds, paired where both sides ran the same "
                    "seeds (test); q: Benjamini-Hochberg over the table's distinct tests.</p>\n"
                    + _table("controls", CONTROL_COLUMNS, _control_rows(controls))))
    if not upper.empty:
        out.append(("upper-section", "<h2 id=\"upper-section\">Supervised upper bound (scratch)</h2>\n<p>Scratch: "
                    "<code>--set classification.mode=scratch</code>, the method's network from random initialisation "
                    "trained with labels for the epochs shown; frozen: the best overall_acc of the same pretrained "
                    "network's frozen features on the same data and label fraction (svm, or a linear / mlp "
                    "classification head), chosen on the test split, which favours the features. Difference: scratch "
                    "− frozen, ± 95% CI (paired over shared seeds, else Welch's; a reference, no q).</p>\n"
                    + _table("upper", UPPER_COLUMNS, _upper_rows(upper))))
    if not claims.empty:
        out.append(("claims-section", "<h2 id=\"claims-section\">The papers' claims on this leaderboard</h2>\n<p>"
                    "Directions fixed in advance (the paper's); paired t-test where both sides ran the same seeds, "
                    "else Welch's; holds: one-sided q &lt; 0.05, refuted: two-sided q &lt; 0.05 the other way "
                    "(Benjamini-Hochberg over the page's distinct claims); the same verdicts as claims.csv.</p>\n"
                    + _table("claims", CLAIMS_COLUMNS, _claims_rows(claims))))
    return out + images


SECTION_LABELS = {"summary-section": "results", "gains-section": "pretrained vs untrained",
                  "controls-section": "vs controls", "upper-section": "supervised upper bound",
                  "claims-section": "claims"} | {f"img-{f}": f"{f}/" for f in IMAGE_FOLDERS}


def build_page(results_dir: str | Path) -> str:
    """The page of a results folder, from its ``leaderboard.csv`` and PNGs only: the same files, the same bytes."""
    root = Path(results_dir)
    runs, skipped = ResultStore(root).read_leaderboard_checked()
    summary = summarize(runs)
    sections = _sections(summary, runs, _images(root))
    nav = "<nav>" + "".join(f'<a href="#{key}">{esc(SECTION_LABELS[key])}</a>' for key, _ in sections) + "</nav>"
    marks = marks_note(summary["method"])
    body = [_header(root, runs, skipped), nav, _filters(summary)]
    body += ([f'<p class="sub">Marks: {esc(marks)}</p>'] if marks else []) + [html_ for _, html_ in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>ssl3d-bench leaderboard: {esc(root.resolve().name)}</title>\n<style>{CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + f"\n<script>{JS}</script>\n</body>\n</html>\n")


def write_page(results_dir: str | Path) -> Path:
    """Write ``<results_dir>/leaderboard.html`` (atomically) and return its path."""
    path = Path(results_dir) / PAGE_NAME
    atomic_write_text(path, build_page(results_dir))
    return path
