"""The result store: one ``result.json`` per run and one leaderboard row per metric.

``results/runs/<run-id>/result.json`` holds everything that determines and
describes a run; ``results/leaderboard.csv`` gets one row per metric. Both are
written atomically (temp file + rename), and the CSV append happens under a
file lock, so two ``bench run`` processes finishing at the same moment both
land their rows.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from filelock import FileLock

from ssl3d.bench.io import atomic_write_json, atomic_write_text

LEADERBOARD_COLUMNS = (
    "run_id", "created_at", "task", "method", "modality", "preset", "seed", "metric", "value",
    "pretrain_data", "dataset_version", "data_key", "settings", "git_commit",
)

# ``--set`` keys that change how fast a run goes, never its numbers: they do not split leaderboard groups
RESULT_NEUTRAL_KEYS = frozenset({"train.num_workers", "train.log_every", "data.workers",
                                 "segmentation.feature_cache_mb"})


def settings_label(overrides: dict[str, str] | None) -> str:
    """The run's ``--set`` overrides as one sorted ``key=value`` string ('' for the preset as it is).

    Runs with different overrides (an RBF instead of a linear SVM, fine-tuned instead of frozen
    segmentation, more epochs) are different experiments: the label keeps them in separate rows.
    """
    return " ".join(f"{k}={v}" for k, v in sorted((overrides or {}).items()) if k not in RESULT_NEUTRAL_KEYS)


def default_results_dir() -> Path:
    """``$SSL3D_RESULTS`` or ``./results``."""
    return Path(os.environ.get("SSL3D_RESULTS") or "results")


class ResultStore:
    """Reads and writes results under one folder."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_results_dir()

    @property
    def leaderboard_path(self) -> Path:
        return self.root / "leaderboard.csv"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def save(self, result: dict[str, Any]) -> Path:
        """Write ``result.json`` and append its metric rows to the leaderboard."""
        path = self.run_dir(result["run_id"]) / "result.json"
        atomic_write_json(path, result)
        self.append_rows(leaderboard_rows(result))
        return path

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to ``leaderboard.csv`` under a lock, rewriting it atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.leaderboard_path) + ".lock", timeout=120):
            existing = self.leaderboard_path.read_text(encoding="utf-8") if self.leaderboard_path.exists() else ""
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore", lineterminator="\n")
            header = existing.split("\n", 1)[0].strip().split(",") if existing.strip() else []
            if header != list(LEADERBOARD_COLUMNS):
                # empty file, or one written with an older set of columns: rewrite it under the current
                # header (missing columns stay empty), so every line has the same number of fields
                writer.writeheader()
                if existing.strip():
                    writer.writerows(csv.DictReader(io.StringIO(existing)))
                existing = ""
            elif not existing.endswith("\n"):
                existing += "\n"
            writer.writerows(rows)
            atomic_write_text(self.leaderboard_path, existing + buf.getvalue())

    def read_leaderboard(self):
        """The leaderboard as a pandas DataFrame (empty when there is none)."""
        import pandas as pd

        if not self.leaderboard_path.exists():
            return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
        return pd.read_csv(self.leaderboard_path)


def text_columns(frame, columns):
    """A copy of ``frame`` whose ``columns`` are strings, '' where missing (NaN or no such column).

    Grouping keys such as ``settings`` may be empty, and pandas reads an empty CSV cell as NaN,
    which never equals itself: compare and group on the text form.
    """
    frame = frame.copy()
    for col in columns:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str) if col in frame else ""
    return frame


def leaderboard_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One leaderboard row per metric of a result."""
    common = {k: result.get(k) for k in LEADERBOARD_COLUMNS if k not in ("metric", "value")}
    return [{**common, "metric": name, "value": value} for name, value in result["metrics"].items()]
