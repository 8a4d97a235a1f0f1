"""What a suite cost: pretraining time per seed and evaluation time, per method, from its result files.

``python -m ssl3d.bench.report.cost RESULTS_DIR`` writes ``RESULTS_DIR/cost.csv`` and prints it as markdown.

* **Pretraining** is read from each run's ``result.json`` (``pretraining.seconds``): the trainer keeps the
  seconds of completed epochs in its checkpoints, so a pretraining resumed across sessions is counted over
  all its epochs (a killed partial epoch, setup and checkpoint writes are not: a slight lower bound), and a
  run that found it cached reports the same number. Each (method, pretraining key) is counted once.
* **Served pretrainings** (``served_from_snapshot``): a pretraining the cache read from a longer one's
  snapshot (bench/run/pretrain_cache.py: the knee curve's seed 0) counts in ``pretrain_min_per_seed`` (the
  seconds its epochs took in the longer run) but not in ``pretrain_min`` or ``pretrain_min_idle``: this
  folder did not train it, and the knee step's wall time is in ``timings.csv``.
* **Idle pretraining** (``pretrain_min_idle``) is each pretraining's fastest epoch times its epochs: an
  estimate of what it costs on a machine it has to itself, since a shared CPU slows single epochs (PyTorch's
  OpenMP threads spin-wait when the cores are oversubscribed: one epoch took 13x its idle time). Epoch times
  come from ``pretraining.epoch_seconds`` in ``result.json`` or, for results written before it existed, from
  the history in the cached ``final.pt`` the result names; blank when neither is readable.
* **Evaluation** is the sum of ``timings.data_s + timings.eval_s`` over the method's runs (untrained runs
  included: they are the method's evaluation cost). Runs that found their features in the feature cache
  (bench/features/cache.py) cost less than the first run that embedded them, so it depends on run order.
* **Logged wall time** is the sum of the ``timings.csv`` lines a maintainer script appends per step
  (``scripts/modelnet10_cpu_suite.sh``): budget-curve evaluations included; a step killed mid-way logs
  its time as "(interrupted)", but one killed by SIGKILL leaves no line, so this column is a lower bound.

The run folders (``runs/``) stay local; the committed ``cost.csv`` is this module's output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pandas as pd

from ssl3d.core.errors import UserError
from ssl3d.core.io import atomic_write_text
from ssl3d.methods.checkpoint import read_pretrain_info
from ssl3d.methods.trainer import epoch_seconds

log = logging.getLogger(__name__)

COLUMNS = ["method", "pretrain_epochs", "pretrainings", "served_from_snapshot", "pretrain_min_per_seed", "pretrain_min",
           "fastest_epoch_s",
           "pretrain_min_idle", "eval_runs", "eval_min", "total_min", "logged_wall_min"]


def _result_rows(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "runs").glob("*/result.json")):
        try:
            result = json.loads(path.read_text())
            pre, timings = result.get("pretraining") or {}, result.get("timings") or {}
            rows.append({"method": str(result["method"]), "key": pre.get("key"), "epochs": int(pre.get("epochs") or 0),
                         "pretrain_s": float(pre.get("seconds") or 0.0), "epoch_s": pre.get("epoch_seconds"),
                         "weights": pre.get("path"), "served": bool(pre.get("from_snapshot")),
                         "eval_s": float(timings.get("data_s") or 0.0) + float(timings.get("eval_s") or 0.0)})
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file is named, never fatal
            log.warning("%s: skipped, not a readable result (%s)", path, exc)
    return rows


def _fastest_epoch(rows: pd.DataFrame) -> float | None:
    """The fastest epoch (seconds) of one pretraining, from any of its results or else its cached weights."""
    for times in rows["epoch_s"]:
        if isinstance(times, list) and times:
            return float(min(times))
    for weights in rows["weights"].dropna().unique():
        if not Path(weights).is_file():
            continue
        try:  # mmap: only the pickled info is read, not the weights' bytes
            times = epoch_seconds(read_pretrain_info(weights).get("history") or [])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is named and skipped, never fatal
            log.warning("%s: no epoch times read (%s)", weights, exc)
            continue
        if times:
            return float(min(times))
    return None


def _logged_wall(root: Path) -> dict[str, float]:
    """Seconds per method from ``timings.csv`` (``what,seconds,exit``; ``what`` = "<step> <method> ...")."""
    path = root / "timings.csv"
    if not path.exists():
        return {}
    seconds: dict[str, float] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        # the step's text may itself hold commas (a --set value, a note): the last two fields are the numbers
        fields = line.rsplit(",", 2)
        try:
            what, step_seconds = fields[0], float(fields[1])
        except (IndexError, ValueError):
            raise UserError(f"{path}, line {number}: {line!r} is not 'what,seconds,exit'") from None
        words = what.split()
        if len(words) >= 2:
            seconds[words[1]] = seconds.get(words[1], 0.0) + step_seconds
    return seconds


def cost_table(results_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per method and a ``total`` row; minutes, rounded to 0.1."""
    root = Path(results_dir)
    runs = pd.DataFrame(_result_rows(root), columns=["method", "key", "epochs", "pretrain_s", "epoch_s", "weights",
                                                     "served", "eval_s"])
    wall = _logged_wall(root)
    table = []
    for method in sorted(set(runs["method"]) | set(wall)):
        mine = runs[runs["method"] == method]
        trained = mine[mine["key"].notna() & (mine["pretrain_s"] > 0)]
        fastest = {key: _fastest_epoch(group) for key, group in trained.groupby("key", sort=True)}
        trained = trained.drop_duplicates("key")
        # a pretraining read from a longer one's snapshot was trained by that one (the knee curve, whose time
        # timings.csv logs): it gives the preset's time per seed but adds nothing to this folder's compute
        own = trained[~trained["served"].astype(bool)]
        known = all(value is not None for value in fastest.values())
        table.append({
            "method": method,
            "pretrain_epochs": int(trained["epochs"].max()) if len(trained) else 0,
            "pretrainings": len(trained),
            "pretrain_min_per_seed": round(trained["pretrain_s"].mean() / 60, 1) if len(trained) else 0.0,
            "served_from_snapshot": len(trained) - len(own),
            "pretrain_min": round(own["pretrain_s"].sum() / 60, 1),
            "fastest_epoch_s": round(min(fastest.values()), 1) if fastest and known else None,
            "pretrain_min_idle": (round(sum(fastest[k] * e for k, e in zip(own["key"], own["epochs"])) / 60, 1)
                                  if known else None),
            "eval_runs": len(mine),
            "eval_min": round(mine["eval_s"].sum() / 60, 1),
            "logged_wall_min": round(wall.get(method, 0.0) / 60, 1),
        })
    frame = pd.DataFrame(table, columns=[c for c in COLUMNS if c != "total_min"])
    frame["total_min"] = (frame["pretrain_min"] + frame["eval_min"]).round(1)
    total = {"method": "total", "pretrain_epochs": None, "pretrainings": int(frame["pretrainings"].sum()),
             "served_from_snapshot": int(frame["served_from_snapshot"].sum()),
             "pretrain_min_per_seed": None, "fastest_epoch_s": None,
             # blank when any method's idle estimate is unknown: a partial sum would read as the whole
             "pretrain_min_idle": (round(float(frame["pretrain_min_idle"].sum()), 1)
                                   if frame["pretrain_min_idle"].notna().all() else None),
             **{c: round(float(frame[c].sum()), 1) for c in ("pretrain_min", "eval_min", "total_min", "logged_wall_min")},
             "eval_runs": int(frame["eval_runs"].sum())}
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)[COLUMNS]


def cost_markdown(table: pd.DataFrame) -> str:
    header = ("| method | `cpu` epochs | pretrainings | from a snapshot | pretraining min/seed | pretraining min "
              "| fastest epoch s "
              "| pretraining min, idle | evaluated runs | evaluation min | total min | logged wall min |\n"
              + "|---" * len(COLUMNS) + "|\n")
    def fmt(value) -> str:
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return header + "".join("| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |\n" for _, row in table.iterrows())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssl3d.bench.report.cost", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="a results folder with runs/*/result.json (and timings.csv)")
    args = parser.parse_args(argv)
    root = Path(args.results_dir)
    if not (root / "runs").is_dir():
        parser.error(f"{root / 'runs'}: no such folder (the run folders stay on the machine that ran the suite)")
    table = cost_table(root)
    atomic_write_text(root / "cost.csv", table.to_csv(index=False))
    print(cost_markdown(table), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
