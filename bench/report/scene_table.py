"""ParAE Table 3 as a table: per training area, the fine-tuned minus from-scratch deltas with 95% CIs.

Reads the ``result.json`` of every ``semseg-areas`` run in a results folder
(``bench suite --tasks '*-semseg-areas' --seeds 0 1 2``), groups them by
(task, method, preset, settings), and prints for each training area the mean
over seeds of the absolute scratch / fine-tuned scores and of their
difference, with the Student-t 95% interval (:func:`~ssl3d.core.stats.ci95_halfwidth`),
next to the deltas ParAE prints (``bench/reference/reported.csv``, Table 3,
measured on S3DIS: a reference point, not a target for synthetic rooms).

``python -m ssl3d.bench.report.scene_table RESULTS_DIR [--out FILE]``
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ssl3d.bench.report.leaderboard import load_reported
from ssl3d.bench.run.results import ResultStore
from ssl3d.core.stats import ci95_halfwidth
from ssl3d.core.io import atomic_write_text

__all__ = ["table3_markdown"]

_AREA = re.compile(r"^delta_miou:area(\d+)$")


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    ci = ci95_halfwidth(np.asarray(values))
    mean = float(np.mean(values))
    return f"{mean:+.2f} ± {ci:.2f}" if np.isfinite(ci) else f"{mean:+.2f}"


def _abs(values: list[float]) -> str:
    ci = ci95_halfwidth(np.asarray(values))
    return f"{np.mean(values):.2f} ± {ci:.2f}" if np.isfinite(ci) else f"{np.mean(values):.2f}"


def _paper(results_dir: Path | None) -> dict[tuple[int, str], float]:
    rep = load_reported(results_dir)
    rows = rep[(rep["paper"] == "parae") & (rep["table"] == "Table 3") & (rep["method"] == "parae-dgcnn")]
    out = {}
    for r in rows.itertuples():
        area = re.search(r"train area=Area (\d+)", str(r.setting))
        if area:
            out[int(area.group(1)), r.metric] = float(r.value)
    return out


def table3_markdown(results_dir: str | Path) -> str:
    """The Table 3 analogue of every ``semseg-areas`` group in ``results_dir`` as markdown."""
    results, _ = ResultStore(results_dir).read_results()
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("protocol", {}).get("name") == "semseg-areas":
            groups[r["task"], r["method"], r["preset"], r.get("settings", "")].append(r)
    if not groups:
        return "No semseg-areas run in this folder.\n"
    paper = _paper(Path(results_dir))
    lines = []
    for (task, method, preset, settings), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        areas = sorted({int(m.group(1)) for r in runs for k in r["metrics"] if (m := _AREA.match(k))})
        test_area = runs[0]["protocol"]["details"].get("test_area")
        minutes = [r["timings"]["total_s"] / 60 for r in runs]
        lines += [f"### {task} · {method} · preset {preset}" + (f" · `{settings}`" if settings else ""), "",
                  f"Seeds {', '.join(str(r['seed']) for r in runs)} (n = {len(runs)}); test area {test_area}; "
                  f"mean ± 95% CI half-width (Student t) over seeds; wall time {sum(minutes):.1f} min "
                  f"({', '.join(f'{m:.1f}' for m in minutes)} min per seed, pretraining included).", "",
                  "| train area | mIoU scratch | mIoU fine-tuned | Δ mIoU | Δ acc | paper Δ mIoU | paper Δ acc |",
                  "|---|---|---|---|---|---|---|"]
        for a in areas + ["mean"]:
            key = f"area{a}" if a != "mean" else "mean"
            dm = [r["metrics"][f"delta_miou:{key}"] for r in runs if f"delta_miou:{key}" in r["metrics"]]
            da = [r["metrics"][f"delta_point_acc:{key}"] for r in runs if f"delta_point_acc:{key}" in r["metrics"]]
            if a == "mean":
                scratch = fine = "-"
                pm = [paper[x, "delta_miou"] for x in areas if (x, "delta_miou") in paper]
                pa = [paper[x, "delta_point_acc"] for x in areas if (x, "delta_point_acc") in paper]
                pm_s = f"+{np.mean(pm):.2f}" if len(pm) == len(areas) else "-"
                pa_s = f"+{np.mean(pa):.2f}" if len(pa) == len(areas) else "-"
            else:
                scratch = _abs([r["metrics"][f"miou:area{a}:scratch"] for r in runs])
                fine = _abs([r["metrics"][f"miou:area{a}:finetune"] for r in runs])
                pm_s = f"+{paper[a, 'delta_miou']:.1f}" if (a, "delta_miou") in paper else "-"
                pa_s = f"+{paper[a, 'delta_point_acc']:.1f}" if (a, "delta_point_acc") in paper else "-"
            label = f"Area {a}" if a != "mean" else "mean of areas"
            lines.append(f"| {label} | {scratch} | {fine} | {_cell(dm)} | {_cell(da)} | {pm_s} | {pa_s} |")
        lines.append("")
    lines.append("Paper columns: ParAE Table 3 (Eckart et al., CVPR 2021, Sec. 4.4), DGCNN on S3DIS, "
                 "`bench/reference/reported.csv`; they are S3DIS numbers, shown for the sign and scale only.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssl3d.bench.report.scene_table", description=__doc__.split("\n")[0])
    parser.add_argument("results_dir")
    parser.add_argument("--out", help="write the table here (atomically) instead of printing it")
    args = parser.parse_args(argv)
    text = table3_markdown(args.results_dir)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
