"""Budget curves: a task's metric against pretraining epochs, from one pretraining per seed.

One pretraining to ``max(epochs)`` keeps ``epoch-<k>.pt`` snapshots at the listed
epochs (``train.snapshot_epochs``, which is not part of the pretraining cache key,
so the curve shares the cache of ``bench run``); the task's protocol is then run on
every snapshot. Epoch 0 is always included: the untrained network.

No selection on the test split: with ``split="val"`` (the default) the protocol is
fit on the train split minus a validation part and scored on that part
(:func:`carve_validation`: seeded, stratified by label, :data:`VAL_FRACTION`), and
the test split is never read. :func:`choose_knee` refuses any row that is not a
validation row. ``split="test"`` is for reporting a budget chosen elsewhere.

Resumable: snapshots stay in the pretraining cache folder, and each (seed, epoch)
evaluation is kept as one JSON file under ``<results>/curves/<stem>/``; a rerun
evaluates only what is missing, then rewrites the CSV and the plot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ssl3d.bench.protocols import EvalContext
from ssl3d.bench.features.splits import SplitView, carve_validation  # noqa: F401  (re-exported)
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.run.pretrain_cache import REPLAY, pretrain_key, pretrain_or_load, trajectory_key, trajectory_snapshot
from ssl3d.bench.run.runner import RunSpec, ValidatedRun, validate_run
from ssl3d.core.config import ConfigError, check_range, to_dict
from ssl3d.core.io import atomic_write_json, atomic_write_text
from ssl3d.core.seeding import seed_everything
from ssl3d.datasets import default_root
from ssl3d.methods import RunContext
from ssl3d.methods.checkpoint import load_checkpoint
from ssl3d.methods.config import weights_config
from ssl3d.methods.trainer import snapshot_path

log = logging.getLogger("ssl3d.curve")

VAL_FRACTION = 0.2  # share of each class of the train split held out as validation
# choose_knee: within this (absolute, metric units: accuracy points) of the best validation mean. A validation
# accuracy near 90% on ~800 shapes has a binomial standard error of ~1 point, so a smaller gap is noise, and the
# cheaper budget is taken.
KNEE_TOLERANCE = 0.5
SPLITS = ("val", "test")


@dataclass
class CurveSpec:
    """A budget curve as the command line describes it; ``run.seed`` is ignored (``seeds`` are used)."""

    run: RunSpec
    epochs: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    split: str = "val"
    baseline: str | None = None  # a random-init method drawn as a reference line (e.g. random-pointnet)


def curve_stem(spec: CurveSpec, modality: str) -> str:
    return f"{spec.run.method}-{spec.run.task}-{modality}-{spec.split}"


def _plan(spec: CurveSpec, method: str, seed: int, epochs: Sequence[int]) -> ValidatedRun:
    overrides = dict(spec.run.overrides, **{"train.epochs": str(max(epochs))})
    if max(epochs) > 0:
        overrides["train.snapshot_epochs"] = ",".join(map(str, epochs))
    plan = validate_run(dataclasses.replace(spec.run, method=method, seed=seed, overrides=overrides))
    if spec.split == "val":
        # the protocol will see the carved parts of train, not the test split: check those too. Approximate by
        # design: before preparing, the carving runs on every indexed shape, and the cache may later skip a few
        labels = np.array([shape.label for shape in plan.train_data.shapes], dtype=np.int64)
        fit_idx, val_idx = carve_validation(labels, VAL_FRACTION, seed)
        plan.protocol.check_data(SplitView(plan.train_data, fit_idx, "fit"), SplitView(plan.train_data, val_idx, "val"))
    return plan


def validate_curve(spec: CurveSpec) -> dict[tuple[str, int], ValidatedRun]:
    """Every (method, seed) run of the curve, validated; raises before anything is written."""
    if not spec.epochs:
        raise ConfigError("--epochs: give at least one epoch")
    check_range("--epochs", tuple(spec.epochs), "[0, inf)")
    check_range("--seeds", tuple(spec.seeds), "[0, inf)")
    if not spec.seeds:
        raise ConfigError("--seeds: give at least one seed")
    if spec.split not in SPLITS:
        raise ConfigError(f"--split {spec.split}: use one of {', '.join(SPLITS)}")
    if any(k.startswith(("train.epochs", "train.snapshot_epochs", "method.train.epochs")) for k in spec.run.overrides):
        raise ConfigError("--set train.epochs / train.snapshot_epochs: a curve sets them from --epochs")
    epochs = sorted({0, *spec.epochs})
    plans = {(spec.run.method, s): _plan(spec, spec.run.method, s, epochs) for s in spec.seeds}
    if spec.baseline:
        plans.update({(spec.baseline, s): _plan(spec, spec.baseline, s, [0]) for s in spec.seeds})
        modality = plans[(spec.run.method, spec.seeds[0])].modality
        if plans[(spec.baseline, spec.seeds[0])].modality != modality:
            raise ConfigError(f"--baseline {spec.baseline}: it evaluates {plans[(spec.baseline, spec.seeds[0])].modality}, "
                              f"the curve {modality}; pass --modality")
    return plans


def snapshot_files(plan: ValidatedRun, epochs: Sequence[int], root: Path) -> dict[int, Path | None]:
    """The snapshot of every epoch, pretraining (or replaying a finished pretraining) when one is missing.

    ``None`` for epoch 0 of a method that does not pretrain: its weights are the seeded random init.
    """
    spec, method = plan.spec, plan.method
    if not method.pretrains:
        pretrain_or_load(method, plan.pre_data or plan.train_data, spec.seed, plan.device, root, spec.progress)
        return {0: None}
    data = plan.pre_data
    settings = {g: data.settings(g) for g in data.groups()}
    key = pretrain_key(method, data.name, settings, spec.seed)
    folder = root / "pretrain" / method.name / key
    replay = folder / REPLAY
    trajectory = trajectory_key(method, data.name, settings, spec.seed)

    def found() -> dict[int, Path | None]:
        # its own snapshots, else a longer pretraining's of the same trajectory (the knee curve's, for seed 0)
        return {k: next((p for p in (snapshot_path(folder, k), snapshot_path(replay, k)) if p.exists()), None)
                or trajectory_snapshot(folder.parent, trajectory, k) for k in epochs}

    if all(found().values()):  # nothing to train: the evaluation only needs the network to load them into
        seed_everything(spec.seed)
        method.model = method.build_model().to(plan.device)
        return found()
    if not (folder / "final.pt").exists():  # unfinished: train on, writing the snapshots as it goes
        pretrain_or_load(method, data, spec.seed, plan.device, root, spec.progress)
    if not all(found().values()):
        # a pretraining finished (or resumed) before these snapshots were asked for: the per-epoch seeding
        # makes a rerun from scratch give the same weights, so replay it beside the cache
        log.info("replaying pretraining %s for snapshots %s", key, [k for k, p in found().items() if p is None])
        replay.mkdir(parents=True, exist_ok=True)
        method.pretrain(data, RunContext(device=plan.device, seed=spec.seed, checkpoint_dir=replay, progress=spec.progress))
    missing = [k for k, p in found().items() if p is None]
    if missing:
        raise RuntimeError(f"{folder}: snapshots {missing} are still missing after pretraining; delete {replay} and rerun")
    return found()


def _views(plan: ValidatedRun, split: str, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    train = plan.train_data
    train.prepare()
    if split == "test":
        plan.test_data.prepare()
        return train, plan.test_data, {"split": "test"}
    fit_idx, val_idx = carve_validation(train.labels, VAL_FRACTION, seed)
    meta = {"split": "val", "val_fraction": VAL_FRACTION, "seed": seed, "stratified_by": "label",
            "val_indices": val_idx.tolist(), "val_shapes": [train.shape_name(int(i)) for i in val_idx]}
    return SplitView(train, fit_idx, "fit"), SplitView(train, val_idx, "val"), meta


def _evaluate_series(plan: ValidatedRun, epochs: Sequence[int], split: str, folder: Path, series: str,
                     root: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    spec, method = plan.spec, plan.method
    fit_data, score_data, meta = _views(plan, split, spec.seed)
    done = {k: folder / f"{method.name}-s{spec.seed}-e{k}.json" for k in epochs}
    identity = evaluation_identity(plan, split)

    def finished(path: Path) -> bool:  # an evaluation of other settings under the same file name is redone
        try:
            return path.exists() and json.loads(path.read_text()).get("identity") == identity
        except (OSError, ValueError):
            return False

    if not all(finished(p) for p in done.values()):
        seed_everything(spec.seed)
        if plan.pre_data is not None:
            plan.pre_data.prepare()
        files = snapshot_files(plan, epochs, root)
        for k, path in files.items():
            if finished(done[k]):
                continue
            if path is not None:
                method.require_pretrained().load_state_dict(load_checkpoint(path)["model"])
            ctx = EvalContext(seed=spec.seed, device=str(plan.device), progress=spec.progress)
            outcome = plan.protocol.evaluate(method, fit_data, score_data, plan.modality, ctx)
            atomic_write_json(done[k], {"epoch": k, "identity": identity,
                                        "metrics": {m: float(v) for m, v in outcome.metrics.items()}})
    rows = []
    for k, path in done.items():
        for metric, value in json.loads(path.read_text())["metrics"].items():
            rows.append({"series": series, "method": method.name, "task": plan.task.name, "modality": plan.modality,
                         "epoch": k, "seed": spec.seed, "metric": metric, "value": value, "split": split,
                         "n_fit": len(fit_data), "n_score": len(score_data)})
    return rows, meta


def evaluation_identity(plan: ValidatedRun, split: str) -> str:
    """A hash of everything a (seed, epoch) evaluation depends on besides the epoch.

    The method and its weight-determining config (the final budget included: with a cosine schedule a
    snapshot depends on it), the protocol's and the data's settings, the split, modality and seed. A
    finished evaluation is reused only under the same identity, so rerunning a curve with other ``--set``
    values under the same file names never mixes in stale numbers.
    """
    described = {"method": plan.method.name, "version": getattr(plan.method, "version", None),
                 "config": weights_config(plan.method.config), "protocol": to_dict(plan.protocol.config),
                 "data": to_dict(plan.data_config), "split": split, "modality": plan.modality, "seed": plan.spec.seed}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_curve(spec: CurveSpec) -> dict[str, Any]:
    """Pretrain, evaluate every snapshot, write ``<results>/curves/<stem>.csv`` (+ ``.json`` metadata, ``.png``)."""
    plans = validate_curve(spec)
    epochs = sorted({0, *spec.epochs})
    first = plans[(spec.run.method, spec.seeds[0])]
    root = Path(spec.run.data_root) if spec.run.data_root else default_root()
    out = ResultStore(spec.run.results_dir).root / "curves"
    stem = curve_stem(spec, first.modality)
    rows, metas = [], {}
    for (name, seed), plan in plans.items():
        series = "curve" if name == spec.run.method else "baseline"
        part, meta = _evaluate_series(plan, epochs if series == "curve" else [0], spec.split, out / stem, series, root)
        rows += part
        metas[str(seed)] = meta
    frame = pd.DataFrame(rows)
    csv_path = out / f"{stem}.csv"
    atomic_write_text(csv_path, frame.to_csv(index=False))
    knees = {m: choose_knee(frame, m) for m in sorted(frame["metric"].unique())} if spec.split == "val" else {}
    atomic_write_json(out / f"{stem}.json", {"method": spec.run.method, "task": spec.run.task, "epochs": epochs,
                                             "seeds": list(spec.seeds), "baseline": spec.baseline,
                                             "knee_tolerance": KNEE_TOLERANCE, "knees": knees, "splits": metas})
    from ssl3d.bench.report.plots import curve_plot

    plot = curve_plot(frame, out / f"{stem}.png")
    return {"csv": csv_path, "plot": plot, "knees": knees, "frame": frame}


def choose_knee(frame: pd.DataFrame, metric: str, tolerance: float = KNEE_TOLERANCE) -> int:
    """The smallest budget whose validation mean (over seeds) of ``metric`` is within ``tolerance`` of the best.

    Reads only ``series == "curve"`` rows and refuses any row not on the validation split: a budget is never
    chosen on test labels. Higher is better for every metric the protocols report. Epoch 0 (the untrained
    network) is the reference the curve is read against, not a candidate: where pretraining first lowers the
    metric (CM-CV's point features on ModelNet10), the knee is still a pretraining budget, and the curve and
    the leaderboard's untrained rows show the loss.
    """
    rows = frame[(frame["metric"] == metric) & (frame.get("series", "curve") == "curve")]
    if rows.empty:
        raise ValueError(f"choose_knee: no curve rows for metric {metric!r}")
    if set(rows["split"]) != {"val"}:
        raise ValueError(f"choose_knee: rows on split(s) {sorted(set(rows['split']) - {'val'})}; a budget is chosen "
                         "on the validation split only (bench curve --split val)")
    means = rows.groupby("epoch")["value"].mean()
    if (means.index > 0).any():
        means = means[means.index > 0]
    return int(min(e for e, m in means.items() if m >= means.max() - tolerance))
