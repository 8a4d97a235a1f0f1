"""Write a reference folder's eval_sizes.csv from the prepared data, for folders whose run files are gone.

    python scripts/eval_sizes.py results/modelnet10-cpu [--data-root DIR]

For every task of the folder's leaderboard.csv whose protocol scores the whole test split (svm,
classification, retrieval), it indexes that task's test split as the runs did (the dataset's
defaults and the task's data options; no cache is built) and records its number of shapes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ssl3d.bench.protocols.tasks import get_task
from ssl3d.bench.report.eval_sizes import PROTOCOLS_WITH_TEST_SIZE, read_eval_sizes, write_eval_sizes
from ssl3d.core.config import apply_overrides
from ssl3d.datasets import DATASETS
from ssl3d.datasets.base import default_root


def test_split_size(task_name: str, root: Path) -> int:
    task = get_task(task_name)
    dataset_cls = DATASETS.get(task.dataset)
    config = apply_overrides(dataset_cls.Config(), task.data_options, section="data.")
    return len(dataset_cls("test", [task.modalities[0]], config, root, progress=False, prepare=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args()
    with open(args.results_dir / "leaderboard.csv", encoding="utf-8") as f:
        tasks = sorted({row["task"] for row in csv.DictReader(f)})
    root = args.data_root or default_root()
    sizes = {t: test_split_size(t, root) for t in tasks if get_task(t).protocol in PROTOCOLS_WITH_TEST_SIZE}
    write_eval_sizes(args.results_dir, read_eval_sizes(args.results_dir) | sizes)
    print(sizes)


if __name__ == "__main__":
    main()
