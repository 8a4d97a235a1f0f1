"""The dataset base class: index -> derived modalities cached on disk -> samples.

A dataset split is a :class:`torch.utils.data.Dataset` returning one dict of
tensors per shape with only the modalities asked for (keys and shapes in
``docs/datasets.md``, "Data contract"). Subclasses say which shapes a split has
(:meth:`ShapeDataset.index`) and how to load one (:meth:`ShapeDataset.load_mesh`);
the base class computes each modality group once per shape, in worker
processes, into a resumable HDF5 cache keyed by every setting that shapes the
result (:mod:`ssl3d.datasets.cache`), so changing N, R, V or H makes a new
cache instead of reusing a wrong one.

Each modality group has one cache file: ``points`` (+ ``normals``,
``point_labels``), ``voxels``, ``views``, ``image`` (+ ``mask``); what a group
computes, which settings key its cache and how its arrays become tensors is
its entry in :mod:`ssl3d.datasets.modalities.registry`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal

import numpy as np
import torch
import trimesh
from torch.utils.data import Dataset

from ssl3d.core.config import config_hash, to_dict
from ssl3d.core.registry import Registry
from ssl3d.datasets.cache import CacheReport, H5Reader, build_caches
from ssl3d.datasets.modalities import builtin as _builtin  # noqa: F401  (registers points, voxels, views, image)
from ssl3d.datasets.modalities.registry import MODALITY_GROUPS, MeshShape, all_modalities, group_of

log = logging.getLogger(__name__)

DATASETS: Registry[type["ShapeDataset"]] = Registry("dataset", "ssl3d.datasets", base="ssl3d.datasets.base:ShapeDataset")
register_dataset = DATASETS.register

#: the built-in modalities (a dataset offering a modality registered later lists it in available_modalities)
ALL_MODALITIES = all_modalities()


def default_root() -> Path:
    """Where datasets and caches live: ``$SSL3D_DATA`` or ``~/.cache/ssl3d``."""
    return Path(os.environ.get("SSL3D_DATA") or Path.home() / ".cache" / "ssl3d").expanduser()


@dataclass(frozen=True)
class DataConfig:
    """Settings of the modality pipeline, shared by every dataset (``--set data.KEY=VALUE``)."""

    n_points: int = dataclasses.field(default=1024, metadata={"range": "[1, inf)"})  # points per shape after farthest-point sampling
    dense_factor: int = dataclasses.field(default=8, metadata={"range": "[1, inf)"})  # the dense area-weighted sample has dense_factor * n_points points before FPS
    voxel_resolution: int = dataclasses.field(default=32, metadata={"range": "[1, inf)"})  # R of the R^3 solid occupancy grid
    view_rig: Literal["ring12", "first8", "dodeca20", "random"] = "ring12"  # camera rig of `views`
    n_views: int = dataclasses.field(default=12, metadata={"range": "[1, inf)"})  # number of views for the `random` rig (the fixed rigs define their own)
    view_size: int = dataclasses.field(default=137, metadata={"range": "[1, inf)"})  # height = width of rendered views, pixels
    view_shading: Literal["grey", "depth"] = "grey"  # two-light Lambertian grey or normalised depth
    image_size: int = dataclasses.field(default=224, metadata={"range": "[1, inf)"})  # height = width of photo-like query images, pixels
    workers: int = dataclasses.field(default=0, metadata={"range": "[0, inf)"})  # preprocessing processes; 0 = one per CPU core (does not change results)


@dataclass(frozen=True)
class ShapeInfo:
    """One shape of a split: a display name, its category and where to find it."""

    name: str  # unique within the split, used in reports ("chair_0003", a file path...)
    label: int  # category index into the dataset's class_names
    source: Any = None  # whatever load_mesh needs (a path, a seed, a record)


class ShapeDataset(Dataset):
    """Base class of every dataset split.

    Args:
        split: one of the class's ``splits``.
        modalities: keys to return besides ``label`` and ``index``.
        config: the dataset's ``Config`` (default: its defaults).
        root: data folder (default :func:`default_root`); the dataset lives in ``root/<name>``.
        progress: show progress bars while preprocessing.
        prepare: build missing caches now (else on first access).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[DataConfig]] = DataConfig
    available_modalities: ClassVar[frozenset[str]] = frozenset(ALL_MODALITIES)
    #: what one item of a split is, in `bench prepare` reports (Pix3D's items are photos of shapes)
    item_noun: ClassVar[str] = "shapes"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: bump when processing changes so old caches are not reused
    version: ClassVar[str] = "1"

    def __init__(
        self,
        split: str = "train",
        modalities: Iterable[str] = ("points",),
        config: DataConfig | None = None,
        root: str | os.PathLike[str] | None = None,
        *,
        progress: bool = True,
        prepare: bool = True,
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        self.modalities = tuple(dict.fromkeys(modalities))
        unknown = [m for m in self.modalities if m not in self.available_modalities]
        if unknown:
            raise ValueError(
                f"{self.name} cannot provide {', '.join(unknown)}; it provides: {', '.join(sorted(self.available_modalities))}"
            )
        self.split = split
        self.config = config if config is not None else self.Config()
        self.root = Path(root) if root is not None else default_root()
        self.progress = progress
        self.shapes: list[ShapeInfo] = self.index(split)
        self._readers: dict[str, H5Reader] = {}
        self._valid: np.ndarray | None = None
        self._mesh_memo: tuple[str, Any] | None = None
        self.reports: dict[str, CacheReport] = {}
        if prepare:
            self.prepare()

    # -- hooks for subclasses --------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_parts(self) -> int:
        """Number of global part ids (0 when the dataset has no part labels)."""
        return 0

    @property
    def category_parts(self) -> dict[str, tuple[int, ...]]:
        """Category name -> its global part ids (empty when the dataset has no parts)."""
        return {}

    def index(self, split: str) -> list[ShapeInfo]:
        """The shapes of ``split`` in a fixed order."""
        raise NotImplementedError

    def load_mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, np.ndarray | None]:
        """The mesh of a shape (+Y up) and its per-face global part ids (or None)."""
        raise NotImplementedError(f"{self.name} has no meshes")

    def load_occupancy(self, shape: ShapeInfo) -> np.ndarray | None:
        """The occupancy grid the dataset ships for a shape (``[x, y, z]``, +Y up), or None (the default).

        Optional: a dataset read from voxel files returns the grid here (and, from
        :meth:`load_mesh`, the surface extracted from it); the ``voxels`` group then
        caches this grid instead of voxelising the mesh.
        """
        return None

    def point_noise(self) -> float:
        """Surface-noise standard deviation added to sampled points (synthetic data only)."""
        return 0.0

    def gallery_split(self, modalities: Iterable[str] | None = None) -> "ShapeDataset | None":
        """The separate gallery of unique shapes this split's items are matched against, or None (the default).

        Optional interface: a dataset whose items are not the shapes themselves
        (Pix3D: several photos per shape) returns the gallery as a split of its
        own, with ``modalities`` (None: the dataset's choice), and also defines
        ``query_shape_index``, int64 [len(self)]: the gallery position of each
        item's shape. None means the items are the shapes, item i is shape i;
        the ``ibsr`` protocol and ``bench prepare`` read it.
        """
        return None

    # -- caching -------------------------------------------------------------
    @property
    def dataset_dir(self) -> Path:
        return self.root / self.name

    def raw_identity(self) -> dict[str, Any]:
        """What identifies the raw data beyond the config, for datasets read from several releases ({}: one release).

        It enters every cache key (through :meth:`settings` of such datasets) and the leaderboard's
        ``data_key``, so results and caches from different releases (ModelNet's OFF meshes vs its
        binvox grids) never mix. Empty for single-release datasets, whose keys therefore never change.
        """
        return {}

    def settings(self, group: str) -> dict[str, Any]:
        """Everything that determines the cached arrays of ``group``."""
        cfg = to_dict(self.config)
        base = {k: v for k, v in cfg.items() if k not in DataConfig.__dataclass_fields__}
        own = {k: cfg[k] for k in MODALITY_GROUPS.get(group).settings}
        return {"dataset": self.name, "version": self.version, "group": group, **base, **own}

    def cache_path(self, group: str) -> Path:
        return self.dataset_dir / "processed" / f"{self.split}-{group}-{config_hash(self.settings(group))}.h5"

    def groups(self) -> list[str]:
        return list(dict.fromkeys(group_of(m).name for m in self.modalities))

    def prepare(self) -> dict[str, CacheReport]:
        """Build (or find) the cache of every requested modality group, all missing ones in one pass."""
        groups = [g for g in self.groups() if g not in self._readers]
        if groups:
            reports = build_caches(
                {g: self.cache_path(g) for g in groups},
                len(self.shapes),
                _GroupComputer(self, groups),
                attrs={g: self.settings(g) for g in groups},
                workers=self.config.workers or None,
                progress=self.progress,
                desc=f"{self.name}/{self.split} {'+'.join(groups)}",
            )
            self.reports.update(reports)
            self._warn_skipped(next(iter(reports.values())).skipped)
            for g in groups:
                self._readers[g] = H5Reader(self.cache_path(g))
        valid = np.ones(len(self.shapes), dtype=bool)
        for reader in self._readers.values():
            valid &= reader.valid
        self._valid = np.flatnonzero(valid)
        return self.reports

    def _warn_skipped(self, skipped: dict[str, str], shown: int = 5) -> None:
        """One warning per reason, not per shape: every run loading a cached split repeats it."""
        by_reason: dict[str, list[str]] = {}
        for shape_name, reason in skipped.items():
            # the reason names the shape's file first; group on what follows it
            by_reason.setdefault(reason.split(": ", 1)[-1], []).append(shape_name)
        for reason, names in by_reason.items():
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            log.warning("%s/%s: skipped %d shape(s), %s: %s%s (`bench prepare %s` lists each file)", self.name,
                        self.split, len(names), reason, ", ".join(names[:shown]), more, self.name)

    def mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, np.ndarray | None]:
        """:meth:`load_mesh`, memoised for the last shape, so several groups share one load."""
        if self._mesh_memo is None or self._mesh_memo[0] != shape.name:
            self._mesh_memo = (shape.name, self.load_mesh(shape))
        return self._mesh_memo[1]

    def compute(self, group: str, i: int) -> dict[str, np.ndarray]:
        """The arrays of ``group`` for shape ``i`` (runs in a worker process)."""
        shape = self.shapes[i]
        spec = MODALITY_GROUPS.get(group)
        rng = np.random.default_rng([hash_name(self.name), i, spec.seed_id])
        mesh, face_part = self.mesh(shape)
        return spec.build(MeshShape(mesh, face_part, shape.name, self.point_noise(), self.load_occupancy(shape)), self.config, rng)

    # -- access ----------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._valid is None:
            self.prepare()

    def __len__(self) -> int:
        self._ensure_ready()
        return len(self._valid)

    @property
    def labels(self) -> np.ndarray:
        """int64 [len(self)] category of every (valid) shape."""
        self._ensure_ready()
        return np.array([self.shapes[i].label for i in self._valid], dtype=np.int64)

    def shape_name(self, index: int) -> str:
        self._ensure_ready()
        return self.shapes[self._valid[index]].name

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._ensure_ready()
        i = int(self._valid[index])
        sample: dict[str, torch.Tensor] = {
            "label": torch.tensor(self.shapes[i].label, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        for modality in self.modalities:
            sample[modality] = self.read_modality(modality, i)
        return sample

    def read_modality(self, modality: str, i: int) -> torch.Tensor:
        """The data contract's tensor of ``modality`` for shape ``i`` (an index into ``shapes``)."""
        group = group_of(modality)
        reader = self._readers[group.name]
        if modality not in reader.keys:
            raise KeyError(f"{self.name}: modality {modality!r} is not available for this dataset")
        return group.modalities[modality](reader.read(modality, i))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mesh_memo"] = None  # never ship a mesh to worker processes
        return state

    def __repr__(self) -> str:
        n = len(self) if self._valid is not None else "?"
        return f"{type(self).__name__}(split={self.split!r}, shapes={n}, modalities={list(self.modalities)})"


def hash_name(text: str) -> int:
    """A process-independent integer hash of a string (Python's hash() is salted)."""
    return zlib.crc32(text.encode())


class _GroupComputer:
    """Picklable per-shape job for cache workers: every requested group of one shape."""

    def __init__(self, dataset: ShapeDataset, groups: list[str]) -> None:
        self.dataset = dataset
        self.groups = groups

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        return {f"{g}/{k}": v for g in self.groups for k, v in self.dataset.compute(g, index).items()}

    def describe(self, index: int) -> str:
        return self.dataset.shapes[index].name


def dataset_summary(ds: ShapeDataset) -> dict[str, Any]:
    """Shapes per class of a prepared split (for reports)."""
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    return {"split": ds.split, "shapes": int(len(ds)), "per_class": dict(zip(ds.class_names, map(int, counts)))}
