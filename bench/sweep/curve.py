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

The knee is tied to the measured noise: the smallest pretraining budget not significantly below the
best one by a one-sided paired t-test over at least :data:`MIN_KNEE_SEEDS` seeds (:func:`knee_tests`;
the rule and why its level and sidedness: docs/curves.md).

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
from ssl3d.core.stats import compare_seeds
from ssl3d.datasets import default_root
from ssl3d.methods import RunContext
from ssl3d.methods.checkpoint import load_checkpoint
from ssl3d.methods.config import weights_config
from ssl3d.methods.trainer import snapshot_path

log = logging.getLogger("ssl3d.curve")

VAL_FRACTION = 0.2  # share of each class of the train split held out as validation
# knee_tests: a budget counts as "below the best" when a one-sided paired t-test over seeds says so at this level
# (uncorrected over the budgets: each extra rejection only moves the knee to a larger budget, never a cheaper one)
KNEE_ALPHA = 0.05
MIN_KNEE_SEEDS = 3  # a paired t over 2 seeds has 1 degree of freedom; over 1 there is no spread to test against
KNEE_RULE = ("smallest pretraining budget (epoch > 0) whose validation values are not significantly below the "
             "best budget's (largest mean over seeds): paired t-test over the same seeds, one-sided "
             "(alternative: below the best), uncorrected, at knee_alpha")
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
    snapshot depends on it), the protocol's and the data's settings, the split, modality and seed, and for a
    label reader that its pretraining withholds the validation part. A finished evaluation is reused only under the same identity, so rerunning a curve with other ``--set``
    values under the same file names never mixes in stale numbers.
    """
    described = {"method": plan.method.name, "version": getattr(plan.method, "version", None),
                 "config": weights_config(plan.method.config), "protocol": to_dict(plan.protocol.config),
                 "data": to_dict(plan.data_config), "split": split, "modality": plan.modality, "seed": plan.spec.seed}
    if plan.method.reads_labels:  # its pretraining withholds the seed's validation part: older points did not
        described["pretraining"] = "withholds selection_validation"
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
    knee = _knee_record(frame, spec, csv_path)
    atomic_write_json(out / f"{stem}.json", {"method": spec.run.method, "task": spec.run.task, "epochs": epochs,
                                             "seeds": list(spec.seeds), "baseline": spec.baseline, **knee,
                                             "splits": metas})
    from ssl3d.bench.report.plots import curve_plot

    plot = curve_plot(frame, out / f"{stem}.png")
    return {"csv": csv_path, "plot": plot, "knees": knee["knees"], "knee_tests": knee["knee_tests"], "frame": frame}


def _knee_record(frame: pd.DataFrame, spec: CurveSpec, csv_path: Path) -> dict[str, Any]:
    """The JSON's knee keys: the rule, its level, and per metric the knee and every budget's test.

    A test-split curve has no knee; a curve on fewer than :data:`MIN_KNEE_SEEDS` seeds records why it has none
    (the curve itself is still drawn and kept).
    """
    record: dict[str, Any] = {"knee_rule": KNEE_RULE, "knee_alpha": KNEE_ALPHA, "knees": {}, "knee_tests": {}}
    if spec.split != "val":
        record["knee_refused"] = "a test-split curve: a budget is chosen on the validation split only"
    elif len(set(spec.seeds)) < MIN_KNEE_SEEDS:
        record["knee_refused"] = (f"seeds {sorted(set(spec.seeds))}: a knee needs at least {MIN_KNEE_SEEDS} "
                                  "(bench curve --seeds 0 1 2)")
        log.warning("%s: no knee chosen: %s", csv_path, record["knee_refused"])
    else:
        for metric in sorted(frame["metric"].unique()):
            tests = record["knee_tests"][metric] = knee_tests(frame, metric, source=str(csv_path))
            record["knees"][metric] = tests["knee"]
            if tests["best_at_largest"]:
                log.warning("%s: %s is best at the largest budget measured (%d epochs): still rising at the cap, no "
                            "plateau measured", csv_path, metric, tests["largest"])
    return record


def _seed_table(frame: pd.DataFrame, metric: str, source: str) -> pd.DataFrame:
    """The curve's validation values of ``metric`` as a (seed x epoch) table, the same seeds at every epoch."""
    where = f"choose_knee: {source}, metric {metric!r}"
    rows = frame[(frame["metric"] == metric) & (frame.get("series", "curve") == "curve")]
    if rows.empty:
        raise ValueError(f"{where}: no curve rows")
    if set(rows["split"]) != {"val"}:
        raise ValueError(f"{where}: rows on split(s) {sorted(set(rows['split']) - {'val'})}; a budget is chosen "
                         "on the validation split only (bench curve --split val)")
    if rows.duplicated(["epoch", "seed"]).any() or rows["value"].isna().any():
        raise ValueError(f"{where}: a (seed, epoch) has several values or none; give one curve's rows")
    seeds = {int(e): sorted(int(s) for s in part) for e, part in rows.groupby("epoch")["seed"]}
    if len({tuple(v) for v in seeds.values()}) > 1:
        raise ValueError(f"{where}: the seeds differ between budgets ({seeds}); a paired test needs the same "
                         "seeds at every budget: rerun the curve with one --seeds list")
    found = next(iter(seeds.values()))
    if len(found) < MIN_KNEE_SEEDS:
        raise ValueError(f"{where}: seeds {found}; a knee needs at least {MIN_KNEE_SEEDS} seeds, the same at every "
                         "budget (bench curve --seeds 0 1 2)")
    return rows.pivot(index="seed", columns="epoch", values="value")


def knee_tests(frame: pd.DataFrame, metric: str, alpha: float = KNEE_ALPHA, source: str = "curve") -> dict[str, Any]:
    """The knee of ``metric`` and the test behind it (:data:`KNEE_RULE`).

    The best budget is the pretraining budget with the largest mean over seeds (the smallest such on a tie).
    Every pretraining budget is compared with it by :func:`ssl3d.core.stats.compare_seeds` (paired over the
    seeds, which share their validation split and initialisation at every budget): the mean difference from the
    best with its 95% CI, and ``p_below``, the one-sided p of "this budget's mean is below the best's". The knee
    is the smallest budget with ``p_below >= alpha`` (the best itself always qualifies). ``best_at_largest``
    says the best is the largest budget measured: the curve was still rising at its cap, and no plateau beyond
    it was measured.

    Epoch 0 (the untrained network) is the reference the curve is read against, not a candidate, unless it is
    the only budget measured. ``source`` names the curve (its CSV) in the errors.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"choose_knee: alpha {alpha}: give a level in (0, 1), e.g. {KNEE_ALPHA}")
    table = _seed_table(frame, metric, source)
    candidates = [int(e) for e in table.columns if e > 0] or [int(e) for e in table.columns]
    means = table[candidates].mean()
    best = int(means.idxmax())
    budgets: dict[str, dict[str, Any]] = {}
    for e in candidates:
        test = compare_seeds(table[e].to_dict(), table[best].to_dict())
        budgets[str(e)] = {"mean": float(means[e]), "difference": test.difference, "ci95": test.ci95,
                           "p_below": test.p_less, "test": test.test}
    knee = min(e for e in candidates if budgets[str(e)]["p_below"] >= alpha)
    return {"knee": knee, "best": best, "largest": max(candidates), "best_at_largest": best == max(candidates),
            "alpha": alpha, "seeds": [int(s) for s in table.index], "budgets": budgets}


def choose_knee(frame: pd.DataFrame, metric: str, alpha: float = KNEE_ALPHA, source: str = "curve") -> int:
    """The knee of ``metric`` on a validation curve of at least 3 seeds: :func:`knee_tests`'s ``knee``.

    Reads only ``series == "curve"`` rows and refuses any row not on the validation split (a budget is never
    chosen on test labels), fewer than :data:`MIN_KNEE_SEEDS` seeds, and seeds that differ between budgets.
    Higher is better for every metric the protocols report.
    """
    return int(knee_tests(frame, metric, alpha, source)["knee"])
