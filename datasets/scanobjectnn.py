"""``scanobjectnn``: real scanned objects (ScanObjectNN, Uy et al., ICCV 2019), the h5 release, points only.

ScanObjectNN holds 2,902 objects segmented from SceneNN and ScanNet scans, in
15 classes. The point-cloud SSL literature (Point-BERT, Point-MAE, ReCon,
PointGPT) reports three variants of the *main split*, and numbers from
different variants are not comparable, so the variant is a data setting
(``--set data.variant=obj_bg``) that enters every cache key and the
leaderboard's ``data_key``, is stored in every result file (``config.data``)
and names every item (``obj_bg/test_00012_chair``):

=============  =====================================================================  =====  =====
``variant``    files (in the release's ``h5_files/`` folder)                          train  test
=============  =====================================================================  =====  =====
``obj_only``   ``main_split_nobg/{training,test}_objectdataset.h5``                   2,309    581
``obj_bg``     ``main_split/{training,test}_objectdataset.h5``                        2,309    581
``pb_t50_rs``  ``main_split/{training,test}_objectdataset_augmentedrot_scale75.h5``  11,416  2,882
=============  =====================================================================  =====  =====

OBJ_ONLY is the object alone, OBJ_BG the object with the background points of
its bounding box, PB_T50_RS ("the hardest variant") five perturbed copies of
each OBJ_BG object (translated by up to 50% of the box, rotated about the up
axis, scaled by 0.75-1.25 per the file name's ``scale75``). Each file holds
``data`` float32 [N, 2048, 3] and ``label`` [N] (integers 0-14 in the class
order of :data:`SCANOBJECTNN_CLASSES`, the authors' ``ScanObjectNN_SHAPE_NAMES``);
other keys (``mask``, the background mask) are not read.

Points: ``point_order="fps"`` (default) farthest-point samples ``n_points``
(default 2,048, the release's count and the literature's input) and normalises
into the unit sphere (the project's rule); ``"first"`` keeps the first
``n_points`` as stored. The clouds are taken as +Y up, the frame the common
loaders assume for this release (PointNeXt's ``gravity_dim=1``); this module
does not rotate them. No meshes: asking for voxels, views or images is refused
with a message.

Terms of use: the release is distributed by its authors on request. The
download link (the official host below) is given after agreeing to the terms
of use through the form linked from https://hkust-vgd.github.io/scanobjectnn/,
so ``bench prepare scanobjectnn`` never downloads it: fetch ``h5_files.zip``
yourself after agreeing, then ``bench prepare scanobjectnn --from h5_files.zip``
(or ``--from`` the extracted ``h5_files`` folder, used in place). No checksum is
published for the archive.

STATS: the table above (15 classes; counts from the release as the literature
reports them, Uy et al. 2019 Sec. 3 and Point-BERT Sec. 4.2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ssl3d.datasets.base import DataConfig, ShapeInfo, register_dataset
from ssl3d.datasets.cache import CacheReport
from ssl3d.datasets.errors import DataFileError, DatasetNotPreparedError, DatasetRequestError
from ssl3d.datasets.formats.h5arrays import read_h5_arrays
from ssl3d.datasets.modalities.points import subsample_points
from ssl3d.datasets.real import RawPart, RealShapeDataset

__all__ = ["SCANOBJECTNN_CLASSES", "SCANOBJECTNN_FILES", "ScanObjectNNConfig", "ScanObjectNNDataset", "read_scanobjectnn_h5"]

#: the 15 classes in label order (the authors' ScanObjectNN_SHAPE_NAMES)
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

#: variant -> split -> file, relative to the release folder (``h5_files``)
SCANOBJECTNN_FILES: dict[str, dict[str, str]] = {
    "obj_only": {"train": "main_split_nobg/training_objectdataset.h5", "test": "main_split_nobg/test_objectdataset.h5"},
    "obj_bg": {"train": "main_split/training_objectdataset.h5", "test": "main_split/test_objectdataset.h5"},
    "pb_t50_rs": {
        "train": "main_split/training_objectdataset_augmentedrot_scale75.h5",
        "test": "main_split/test_objectdataset_augmentedrot_scale75.h5",
    },
}

_TERMS = (
    "ScanObjectNN is distributed on request: agree to its terms of use (form linked from "
    "https://hkust-vgd.github.io/scanobjectnn/), download h5_files.zip from the link you are given "
    "(https://hkust-vgd.ust.hk/scanobjectnn/h5_files.zip), then run `bench prepare scanobjectnn --from "
    "/path/to/h5_files.zip` (or --from the extracted h5_files folder)"
)


def read_scanobjectnn_h5(path: str | os.PathLike[str], num_classes: int = len(SCANOBJECTNN_CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Read one ScanObjectNN h5 file: ``(points float32 [N, P, 3], labels int64 [N])``.

    Raises:
        DataFileError: the file is missing or not HDF5, lacks ``data`` or ``label``, has shapes other than
            [N, P, 3] / [N] (or [N, 1]), non-integer or out-of-range labels, or non-finite coordinates;
            the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "file not found (the scanobjectnn variant asked for needs it)")
    arrays = read_h5_arrays(path, ("data", "label"))
    points, labels = arrays["data"], arrays["label"]
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] == 0:
        raise DataFileError(path, f"'data' must have shape [N, P, 3] with P > 0, got {list(points.shape)}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != points.shape[0]:
        raise DataFileError(path, f"'label' must have shape [{points.shape[0]}], got {list(labels.shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise DataFileError(path, f"'label' must hold integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFileError(path, f"'label' values span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}")
    if not np.issubdtype(points.dtype, np.floating) or not np.isfinite(points).all():
        raise DataFileError(path, "'data' must hold finite floating-point coordinates")
    return points.astype(np.float32, copy=False), labels.astype(np.int64)


@dataclass(frozen=True)
class ScanObjectNNConfig(DataConfig):
    """ScanObjectNN settings: the pipeline's (see :class:`DataConfig`) plus the variant and how points are picked."""

    n_points: int = field(default=2048, metadata={"range": "[1, inf)"})  # points per object (the release stores 2,048; the literature's input)
    variant: Literal["obj_only", "obj_bg", "pb_t50_rs"] = "pb_t50_rs"  # main-split variant: OBJ_ONLY, OBJ_BG or PB_T50_RS (the hardest)
    point_order: Literal["fps", "first"] = "fps"  # fps: FPS + unit sphere; first: the first n_points as stored


# Per-process cache of whole splits, as for modelnet40-h5: indexing needs the labels, and the preprocessing
# workers (forked after indexing) share the arrays instead of re-reading the file per object.
_SPLITS: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}


def _split_arrays(raw: Path, variant: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    key = (str(raw), variant, split)
    if key not in _SPLITS:
        _SPLITS[key] = read_scanobjectnn_h5(raw / SCANOBJECTNN_FILES[variant][split])
    return _SPLITS[key]


@register_dataset("scanobjectnn")
class ScanObjectNNDataset(RealShapeDataset):
    """ScanObjectNN main split, one variant (``data.variant``), 15 classes, points only (module docstring)."""

    name = "scanobjectnn"
    Config = ScanObjectNNConfig
    raw_name = "h5_files"
    raw_parts = (RawPart(
        ("https://hkust-vgd.ust.hk/scanobjectnn/h5_files.zip",), "h5_files.zip", "h5_files",
        # any variant's pair of files makes a release folder; a missing variant is named when it is asked for
        ("main_split*/training_objectdataset*.h5", "main_split*/test_objectdataset*.h5"),
    ),)
    point_only = True
    mesh_alternative = "modelnet40 or modelnet10 (OFF meshes); ScanObjectNN ships scanned point clouds"
    available_modalities = frozenset({"points"})

    @property
    def class_names(self) -> tuple[str, ...]:
        return SCANOBJECTNN_CLASSES

    def raw_identity(self) -> dict[str, Any]:
        # the variant is already a config field (hence in the cache keys and data_key); naming it here too
        # keeps it in the identity of the raw data if a caller hashes raw_identity() alone
        return {"variant": self.config.variant}

    def index(self, split: str) -> list[ShapeInfo]:
        cfg = self.config
        points, labels = _split_arrays(self.raw_dir, cfg.variant, split)
        if cfg.point_order == "first" and cfg.n_points > points.shape[1]:
            raise DatasetRequestError(
                f"scanobjectnn ({cfg.variant}) holds {points.shape[1]} points per object; data.n_points={cfg.n_points} "
                "needs data.point_order=fps (which repeats points) or a smaller data.n_points"
            )
        names = SCANOBJECTNN_CLASSES
        return [ShapeInfo(name=f"{cfg.variant}/{split}_{k:05d}_{names[int(y)]}", label=int(y), source=k)
                for k, y in enumerate(labels)]

    def load_points(self, shape: ShapeInfo) -> dict[str, np.ndarray]:
        points = _split_arrays(self.raw_dir, self.config.variant, self.split)[0][shape.source]
        if self.config.point_order == "first":
            return {"points": np.ascontiguousarray(points[: self.config.n_points], dtype=np.float32)}
        return subsample_points(points, self.config.n_points)

    def prepare(self) -> dict[str, CacheReport]:
        reports = super().prepare()
        # the cache now holds the sampled points; free the raw arrays of this split
        _SPLITS.pop((str(self.raw_dir), self.config.variant, self.split), None)
        return reports

    # -- distributed on request: never downloaded automatically ------------------------------
    auto_download: ClassVar[bool] = False  # `bench prepare` asks for --from instead of announcing a download
    @classmethod
    def not_prepared_message(cls) -> str:
        return f"{cls.name} is not prepared. {_TERMS}"

    @classmethod
    def _download(cls, root: Path, part: RawPart, progress: bool) -> Path:
        # the archive's terms of use must be accepted by the user first: refuse instead of fetching it unasked
        raise DatasetNotPreparedError(f"{cls.name} is not downloaded automatically. {_TERMS}")
