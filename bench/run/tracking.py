"""Experiment tracking: ``--log csv`` (default), ``--log tensorboard`` or ``--log mlflow``.

A run's tracker gets, as they happen, the pretraining's per-epoch scalars
(every loss term, the learning rate, seconds and items/s: ``pretrain/<name>``),
then the protocol's metrics (``<task>/<metric>``), and the run's resolved config,
seed, data key, pretraining key and git commit as parameters and tags.

The training loop (``methods/trainer.py``) knows nothing of trackers: it attaches
each epoch's record to its log line (``extra={"ssl3d_epoch": ...}``), and
:func:`tracking` listens on that logger for the run's duration. So every
method, plugins included, is tracked without code of its own.

* ``csv``: ``<results>/runs/<run>/scalars.csv`` (tag, step, value) beside ``result.json``.
* ``tensorboard``: event files under ``<results>/tensorboard/<run>/`` (``pip install 'ssl3d-bench[tensorboard]'``);
  the parameters go in as one text summary ``params``.
* ``mlflow``: a run of experiment ``ssl3d-bench`` at ``$MLFLOW_TRACKING_URI``, or in the file store
  ``<results>/mlruns`` when it is unset (``pip install 'ssl3d-bench[mlflow]'``; MLflow 3 keeps file stores
  in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE=true``, which is set for this default; view it with
  ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <results>/mlruns``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from ssl3d.core.errors import UserError

TRACKERS = ("csv", "tensorboard", "mlflow")


class TrackerUnavailableError(UserError, ImportError):
    """``--log tensorboard|mlflow`` without the package installed."""


def check_tracker(kind: str) -> None:
    """Refuse an unknown or uninstalled tracker before the run starts."""
    if kind not in TRACKERS:
        raise UserError(f"--log {kind}: not a tracker; use {', '.join(TRACKERS)}")
    module, extra = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}.get(kind, (None, None))
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            raise TrackerUnavailableError(f"--log {kind} needs {module}: pip install 'ssl3d-bench[{extra}]'") from None


def flat_params(payload: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts as ``a.b.c -> text`` (what MLflow and TensorBoard take as parameters)."""
    flat: dict[str, str] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


class CsvTracker:
    """``scalars.csv`` in the run folder: one line per scalar, appended as it comes."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "scalars.csv"
        self.file = open(self.path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if self.file.tell() == 0:
            self.writer.writerow(["tag", "step", "value"])

    def params(self, params: dict[str, str], tags: dict[str, str]) -> None:
        pass  # result.json holds the config and every tag

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.writerow([tag, step, value])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardTracker:
    def __init__(self, folder: Path, name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard" / name))

    def params(self, params: dict[str, str], tags: dict[str, str]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted({**tags, **params}.items()))
        self.writer.add_text("params", "| key | value |\n|---|---|\n" + table, 0)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    def __init__(self, folder: Path, name: str) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # a file store needs no server or database and works on a shared filesystem;
            uri = (folder / "mlruns").resolve().as_uri()  # MLflow 3 asks for this opt-in to use one
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name("ssl3d-bench")
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("ssl3d-bench")
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id

    def params(self, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.client.log_metric(self.run_id, tag, float(value), step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _EpochListener(logging.Handler):
    """Forwards the training loop's per-epoch records to a tracker."""

    def __init__(self, tracker: Any) -> None:
        # imported here, not at the top: the CLI imports this module for TRACKERS, and importing any of
        # ssl3d.methods loads every method (torch, torchvision) before `bench --help` could answer
        from ssl3d.methods.trainer import EPOCH_RECORD  # the LogRecord attribute holding each epoch's scalars

        super().__init__(logging.INFO)
        self.tracker = tracker
        self.record_attribute = EPOCH_RECORD

    def emit(self, record: logging.LogRecord) -> None:
        scalars = getattr(record, self.record_attribute, None)
        if not scalars:
            return
        epoch = int(scalars.get("epoch", 0))
        for key, value in scalars.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.tracker.scalar(f"pretrain/{key}", float(value), epoch)


@contextlib.contextmanager
def tracking(kind: str, root: str | os.PathLike[str], name: str, logger: str = "ssl3d.train") -> Iterator[Any]:
    """A tracker for one run (``name``: the run id) that also streams the training loop's epochs while open."""
    check_tracker(kind)
    root = Path(root)
    tracker = {"csv": lambda: CsvTracker(root / "runs" / name, name),
               "tensorboard": lambda: TensorBoardTracker(root, name),
               "mlflow": lambda: MlflowTracker(root, name)}[kind]()
    listener = _EpochListener(tracker)
    channel = logging.getLogger(logger)
    level = channel.level
    if channel.getEffectiveLevel() > logging.INFO:  # the epoch lines are INFO records
        channel.setLevel(logging.INFO)
    channel.addHandler(listener)
    try:
        yield tracker
    finally:
        channel.removeHandler(listener)
        channel.setLevel(level)
        tracker.close()
