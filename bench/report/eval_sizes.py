"""How many test items each task's accuracy averages over, so a headline CI can count the test set's sampling.

The svm, classification and retrieval protocols record ``n_test`` in each ``result.json``;
``bench leaderboard`` keeps them in ``eval_sizes.csv`` beside the leaderboard, which is what a
committed reference folder (whose run files are not kept) is read from.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ssl3d.core.io import atomic_write_text

__all__ = ["EVAL_SIZES", "collect_eval_sizes", "read_eval_sizes", "write_eval_sizes"]

EVAL_SIZES = "eval_sizes.csv"
#: protocols whose ``overall_acc`` / ``top1_acc`` is a proportion of the whole test split
PROTOCOLS_WITH_TEST_SIZE = ("svm", "classification", "retrieval")


def collect_eval_sizes(root: Path) -> dict[str, int]:
    """``{task: n_test}`` from the result files under ``root/runs`` (unreadable files are the store's to report)."""
    sizes: dict[str, int] = {}
    for path in sorted((root / "runs").glob("*/result.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        protocol = result.get("protocol") or {}
        n = (protocol.get("details") or {}).get("n_test")
        if protocol.get("name") in PROTOCOLS_WITH_TEST_SIZE and isinstance(n, int) and n > 0:
            sizes[str(result.get("task"))] = n
    return sizes


def read_eval_sizes(root: Path) -> dict[str, int]:
    """The folder's ``eval_sizes.csv`` (``{}`` when absent); a malformed file names itself."""
    path = root / EVAL_SIZES
    if not path.is_file():
        return {}
    try:
        return {row["task"]: int(row["n_test"]) for row in csv.DictReader(io.StringIO(path.read_text("utf-8")))}
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: expected columns task,n_test with whole numbers ({exc})") from exc


def write_eval_sizes(root: Path, sizes: dict[str, int]) -> None:
    """Write ``eval_sizes.csv`` sorted by task (nothing when ``sizes`` is empty)."""
    if sizes:
        atomic_write_text(root / EVAL_SIZES, "task,n_test\n" + "".join(f"{t},{n}\n" for t, n in sorted(sizes.items())))
