"""Tasks: a dataset x a protocol x options, registered by name (``synth-svm``...).

A task declares the modalities it can evaluate, in order of preference; a run
picks the first one the method can embed unless ``--modality`` says otherwise.
A task may read any of several releases of its data (ModelNet40's OFF meshes or
PointNet's h5 clouds): a run reads the first prepared one that gives what it
needs (:func:`choose_release`).
Third-party packages add tasks through the entry-point group ``ssl3d.tasks``
(an entry point may name a :class:`Task` object or a module that registers some).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ssl3d.bench.protocols import PROTOCOLS, usable_modalities
from ssl3d.core.config import ConfigError
from ssl3d.core.registry import Registry
from ssl3d.datasets import DATASETS
from ssl3d.datasets.errors import DatasetNotPreparedError
from ssl3d.methods import METHODS


@dataclass(frozen=True)
class Release:
    """A dataset (release) a task can read, with the data options the task fixes for it."""

    dataset: str
    data_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Args:
        name: registry key, ``<dataset>-<protocol>`` by convention.
        dataset: registered dataset name evaluated on (train and test splits).
        protocol: registered protocol name.
        modalities: modalities the task can evaluate, most natural first.
        data_options: dataset-config overrides fixed by the task (e.g. ``n_points``).
        protocol_options: protocol-config overrides fixed by the task.
        description: one line for ``bench list``.
        releases: other datasets the task can read instead, in order of preference after
            ``dataset`` (a run reads the first prepared one that gives its modalities).
    """

    name: str
    dataset: str
    protocol: str
    modalities: tuple[str, ...]
    data_options: dict[str, Any] = field(default_factory=dict)
    protocol_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    releases: tuple[Release, ...] = ()

    def candidates(self) -> tuple[Release, ...]:
        """Every release the task reads, its own ``dataset`` first."""
        return (Release(self.dataset, self.data_options), *self.releases)


TASKS: Registry[Task] = Registry("task", "ssl3d.tasks", base=Task, instances=True)


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry under its name."""
    TASKS.add(task.name, task)
    return task


def get_task(name: str) -> Task:
    """The task registered as ``name`` (unknown names list the valid ones)."""
    return TASKS.get(name)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a shell-style wildcard."""
    return TASKS.names(pattern)


def compatibility(task: Task, method_names: list[str]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Which of the named methods can run ``task``: ({method: usable modalities}, {method: why not}).

    The answer is the task's protocol's :meth:`~ssl3d.bench.protocols.Protocol.supports`; a reason is a
    phrase whose subject is the method. Raises a ``UserError`` when the protocol or its options are unknown.
    """
    protocol = PROTOCOLS.get(task.protocol).for_task(task)
    supported, unsupported = {}, {}
    for name in method_names:
        method_cls = METHODS.get(name)
        reason = protocol.supports(method_cls, task)
        if reason:
            unsupported[name] = reason
        else:
            supported[name] = usable_modalities(method_cls, task, protocol.needs)
    return supported, unsupported


def choose_release(task: Task, needed: set[str], root: str | os.PathLike[str]) -> Release:
    """The release a run reads: the first of ``task.candidates()`` that gives every ``needed`` modality and is
    prepared under ``root``. A task with one release returns it (its dataset reports what is missing).

    Errors name what would work: the release that gives the modalities and how to prepare it, or, when
    nothing is prepared, where the official archive comes from.
    """
    candidates = task.candidates()
    if len(candidates) == 1:
        return candidates[0]
    able = [r for r in candidates if needed <= set(DATASETS.get(r.dataset).available_modalities)]
    for release in able:
        if _prepared(release.dataset, root):
            return release
    wanted = ", ".join(sorted(needed))
    if not able:
        raise ConfigError(f"task {task.name!r}: no release of its data gives {wanted} "
                          f"({'; '.join(_gives(r.dataset) for r in candidates)})")
    prepared = [r.dataset for r in candidates if _prepared(r.dataset, root)]
    first = DATASETS.get(able[0].dataset)
    if prepared:
        raise DatasetNotPreparedError(
            f"task {task.name!r} needs {wanted}, which the prepared release {' and '.join(prepared)} does not give "
            f"({'; '.join(_gives(r) for r in prepared)}); {first.not_prepared_message()}")
    raise DatasetNotPreparedError(f"task {task.name!r} reads {' or '.join(r.dataset for r in candidates)}; none is "
                                  f"prepared under {root}. For {wanted}: {first.not_prepared_message()}")


def _prepared(dataset: str, root: str | os.PathLike[str]) -> bool:
    check = getattr(DATASETS.get(dataset), "is_prepared", None)
    return check is None or check(root)  # generated datasets (synth) are always there


def _gives(dataset: str) -> str:
    return f"{dataset} gives {', '.join(sorted(DATASETS.get(dataset).available_modalities))}"


SHAPE_MODALITIES = ("points", "voxels", "views")

register_task(Task(
    "synth-svm", "synth", "svm", SHAPE_MODALITIES + ("image",),
    description="synth: linear SVM on frozen global features (overall / mean-class accuracy)",
))
register_task(Task(
    "synth-retrieval", "synth", "retrieval", SHAPE_MODALITIES + ("image",),
    description="synth: category-level retrieval in feature space (top-1/5/10 accuracy, mAP)",
))
register_task(Task(
    "synth-seg", "synth", "segmentation", ("points",),
    description="synth: part segmentation from per-point features (instance / class mIoU)",
    protocol_options={"epochs": 10},  # a CPU budget for the embedded dataset (the protocol default is 20)
))
register_task(Task(
    "synth-recon", "synth", "reconstruction", ("voxels", "views"),
    description="synth: voxel reconstruction from voxels or views (IoU, precision, recall, accuracy)",
))
register_task(Task(
    "synth-ibsr", "synth", "ibsr", ("image",),
    description="synth: photo-like query -> shape retrieval (instance top-1/10, category accuracy)",
))
register_task(Task(
    "synth-ibsr-seen", "synth", "ibsr-seen", ("image",),
    description="synth: held-out photo-like renders of training shapes -> training-shape gallery (CMIC's setting)",
))

# -- real datasets (`bench prepare NAME` first; `--from PATH` without network) ----------------
# modelnet40-svm reads whichever ModelNet40 release is prepared: point methods PointNet's h5 clouds first (the common
# protocol: the first 1024 points; rows made from it before keep their data key), everything else the OFF meshes
# (or a binvox voxel release of the same layout), which give every modality
register_task(Task(
    "modelnet40-svm", "modelnet40-h5", "svm", ("points", "voxels", "views", "image"),
    data_options={"n_points": 1024, "point_order": "first"}, releases=(Release("modelnet40"),),
    description="ModelNet40: linear SVM on frozen features of points (PointNet h5, first 1024) or, from the OFF "
                "meshes, of voxels, views, points or photo-like images",
))
register_task(Task(
    "modelnet40-mesh-svm", "modelnet40", "svm", ("voxels", "views", "points"),
    description="ModelNet40 OFF meshes: linear SVM on frozen features of voxels, views or points (modelnet40-svm "
                "reads them too)",
))
register_task(Task(
    "modelnet40-retrieval", "modelnet40", "retrieval", ("points", "views", "voxels"),
    description="ModelNet40 OFF meshes: category-level retrieval in feature space (top-k accuracy, mAP)",
))

# -- ModelNet10: the synth tasks' protocols and protocol options on real shapes --------------------------
# Pretraining data is the ModelNet10 train split (labels unused) unless --pretrain-data says otherwise. The
# dataset's defaults already fit real shapes (1024 points, 32^3 voxels: ModelNet10's voxel release, 12 ring
# views of 137 px, 224-px photo-like images), so only settings a protocol depends on are fixed here. A leaderboard
# row's data_key hashes the resolved data settings: modelnet10-svm keeps no options (its keys are unchanged).
register_task(Task(
    "modelnet10-svm", "modelnet10", "svm", ("voxels", "views", "points", "image"),
    description="ModelNet10: linear SVM on frozen features of voxels, views, points or photo-like images",
))
register_task(Task(
    "modelnet10-retrieval", "modelnet10", "retrieval", ("points", "voxels", "views", "image"),
    description="ModelNet10: category-level retrieval, 3D->3D or 2D->3D (retrieval.query_modality) (top-k, mAP)",
))
register_task(Task(
    # SwitchVAE Table 1's protocol (32^3 grids, threshold 0.5) on real shapes; the grid is fixed because the
    # IoU is only comparable at one resolution
    "modelnet10-recon", "modelnet10", "reconstruction", ("voxels", "views"), data_options={"voxel_resolution": 32},
    description="ModelNet10: 32^3 voxel reconstruction from voxels or views (IoU, precision, recall, accuracy)",
))
register_task(Task(
    # CMIC's query size; methods that fix their own image size (CMIC's quick preset) override it
    "modelnet10-ibsr", "modelnet10", "ibsr", ("image",), data_options={"image_size": 224},
    description="ModelNet10: photo-like render of each test shape -> test-shape gallery (top-1/10, category)",
))
register_task(Task(
    # CMIC's seen-shape setting on ModelNet10: 3 held-out renders of 50 seen training shapes per class (1,500
    # queries) against the 3,991 training shapes; the query count bounds the Q x G query-conditioned scoring
    "modelnet10-ibsr-seen", "modelnet10", "ibsr-seen", ("image",), data_options={"image_size": 224},
    description="ModelNet10: held-out photo-like renders of training shapes -> training-shape gallery (top-1/5/10)",
))
register_task(Task(
    "shapenetpart-seg", "shapenetpart", "segmentation", ("points",), data_options={"n_points": 2048},
    description="ShapeNetPart: part segmentation from per-point features, 2048 points (instance / class mIoU)",
))
register_task(Task(
    "r2n2-recon", "r2n2", "reconstruction", ("views", "voxels"), data_options={"n_views": 24, "view_size": 137},
    description="3D-R2N2 (13 ShapeNet categories): 32^3 voxel reconstruction from its renders or voxels (IoU)",
))
register_task(Task(
    "pix3d-ibsr", "pix3d", "ibsr", ("image",), data_options={"image_size": 224},
    description="Pix3D (CMIC protocol: bed, chair, sofa, table): real photo -> shape retrieval (top-1/10, category)",
))
register_task(Task(
    "pix3d-ibsr-seen", "pix3d", "ibsr-seen", ("image",), data_options={"image_size": 224},
    description="Pix3D: test photos of shapes with a training photo -> shape gallery (pix3d-ibsr minus unseen shapes)",
))

# -- supervised classification and few-shot (issue 18; protocols defined in docs/protocols.md) --------------------
# Task options are CPU budgets: the protocols' defaults are the documented settings, and `--set classification.*` /
# `--set fewshot.*` restore paper-scale values (e.g. classification.epochs=300, classification.votes=10).
register_task(Task(
    # synth-cls must finish in well under a minute on 2 CPU cores with the quick presets: 3 votes, not 10
    "synth-cls", "synth", "classification", SHAPE_MODALITIES + ("image",), protocol_options={"votes": 3},
    description="synth: supervised classification, frozen linear/MLP head or fine-tuned (accuracy, voting beside)",
))
register_task(Task(
    "modelnet10-cls", "modelnet10", "classification", ("points", "voxels", "views", "image"),
    description="ModelNet10: supervised classification, frozen linear/MLP head, fine-tuned or from scratch",
))
register_task(Task(
    "modelnet40-cls", "modelnet40-h5", "classification", ("points",),
    data_options={"n_points": 1024, "point_order": "first"},
    description="ModelNet40 (PointNet h5, first 1024 points): supervised classification, linear/MLP/fine-tune/scratch",
))
register_task(Task(
    "scanobjectnn-cls", "scanobjectnn", "classification", ("points",),
    description="ScanObjectNN (--set data.variant=obj_only / obj_bg / pb_t50_rs): supervised classification",
))
register_task(Task(
    "synth-fewshot", "synth", "fewshot", SHAPE_MODALITIES + ("image",),
    description="synth: N-way K-shot on frozen features over 10 checksummed folds (linear SVM, nearest class mean)",
))
register_task(Task(
    "modelnet10-fewshot", "modelnet10", "fewshot", ("points", "voxels", "views", "image"),
    description="ModelNet10: N-way K-shot on frozen features over 10 checksummed folds (SVM, nearest class mean)",
))
register_task(Task(
    "modelnet40-fewshot", "modelnet40-h5", "fewshot", ("points",), data_options={"n_points": 1024, "point_order": "first"},
    description="ModelNet40 (PointNet h5): N-way K-shot on frozen features over 10 checksummed folds (Point-BERT's setting)",
))
register_task(Task(
    "scanobjectnn-fewshot", "scanobjectnn", "fewshot", ("points",),
    description="ScanObjectNN (data.variant): N-way K-shot on frozen features over 10 checksummed folds",
))

# -- scene semantic segmentation (docs/scenes.md): areas are the splits, data.test_area (default 5) is held out --
# semseg-areas is ParAE Table 3 (Sec. 4.4): per training area, fine-tuned minus from-scratch mIoU / accuracy on
# Area 5; the pretraining is the runner's, on the unlabelled train split (Areas 1-4 and 6). The DGCNN takes the
# 9-channel block input with `--set method.in_channels=9`. synth-scenes epochs are a 2-core CPU budget.
register_task(Task(
    "synth-scenes-semseg", "synth-scenes", "semseg", ("points",), protocol_options={"epochs": 4, "batch_size": 8},
    description="synth-scenes: scene segmentation on area 5 (semseg.mode, semseg.train_areas) (mIoU, accuracy)",
))
register_task(Task(
    "synth-scenes-semseg-areas", "synth-scenes", "semseg-areas", ("points",),
    protocol_options={"epochs": 4, "batch_size": 8},
    description="synth-scenes: ParAE Table 3 analogue, per training area fine-tuned minus scratch on area 5",
))
register_task(Task(
    "s3dis-semseg", "s3dis", "semseg", ("points",),
    description="S3DIS: scene segmentation on Area 5, 1 m blocks of 4096 points, 9 channels (mIoU, accuracy)",
))
register_task(Task(
    "s3dis-semseg-areas", "s3dis", "semseg-areas", ("points",),
    description="S3DIS: ParAE Table 3, per training area fine-tuned minus from-scratch DGCNN on Area 5",
))
