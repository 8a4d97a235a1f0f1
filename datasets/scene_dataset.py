"""Scene datasets: rooms of labelled, coloured points grouped in areas; items are 1 m blocks.

A scene dataset (``s3dis``, ``synth-scenes``) is a :class:`ShapeDataset` whose
items are *blocks* (:mod:`ssl3d.datasets.scene_blocks`) rather than shapes, so
the runner, the pretraining cache and ``bench prepare`` treat it like any
other dataset. Areas are the splits: ``test`` is the area ``test_area`` and
``train`` every other area (S3DIS's 6-fold protocol holds out one area; the
usual choice, and ParAE Table 3's, is Area 5). Pretraining a method on the
``train`` split therefore sees exactly the unlabelled training areas.

Data contract of an item: ``points`` float ``[block_points, channels]``
(channels 9: centred xyz, rgb, normalised room xyz; 3: centred xyz),
``point_labels`` int64 ``[block_points]`` in ``[0, 13)``, ``label`` the block's
most frequent class, ``index``. Protocols reach the rooms through
:meth:`SceneDataset.room_points` / :meth:`SceneDataset.room_blocks` and the
area of every block through :attr:`SceneDataset.block_areas`. Once prepared,
``shapes`` lists the blocks (named ``<room>#<k>``, labelled by majority class,
so reports count items) and ``room_index`` the rooms.

The rooms of a split are read once into one ``.npz`` cache under
``processed/`` (written by atomic rename, so concurrent runs never see half a
file; a damaged cache is moved aside, named in a warning, and rebuilt). A
room that cannot be read is skipped with its reason in the ``bench prepare``
report; training blocks are drawn with ``block_seed`` (part of the benchmark,
not the run seed).
"""

from __future__ import annotations

import logging
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ssl3d.core.config import config_hash, to_dict
from ssl3d.core.io import atomic_path, move_aside
from ssl3d.datasets.base import DataConfig, ShapeDataset, ShapeInfo, hash_name
from ssl3d.datasets.cache import CacheReport
from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.scene_blocks import Block, block_input, evaluation_blocks, training_blocks

__all__ = ["S3DIS_CLASSES", "Room", "SceneConfig", "SceneDataset"]

log = logging.getLogger(__name__)

#: the 13 S3DIS classes in the order of the official label ids (PointNet's ``g_classes``)
S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")


@dataclass(frozen=True)
class SceneConfig(DataConfig):
    """Block pipeline settings of scene datasets (``--set data.KEY=VALUE``); DataConfig's shape fields are unused."""

    test_area: int = field(default=5, metadata={"range": "[1, 6]"})  # the held-out area (ParAE Table 3: Area 5); train = the others
    block_size: float = field(default=1.0, metadata={"range": "(0, inf)"})  # column side in metres (DGCNN S3DIS: 1 m)
    stride: float = field(default=1.0, metadata={"range": "(0, inf)"})  # training-column stride in metres, <= block_size (DGCNN: 1 m)
    eval_stride: float = field(default=1.0, metadata={"range": "(0, inf)"})  # evaluation-column stride; < block_size overlaps and merges summed scores
    block_points: int = field(default=4096, metadata={"range": "[1, inf)"})  # points per block (DGCNN S3DIS: 4096)
    min_block_points: int = field(default=100, metadata={"range": "[1, inf)"})  # training columns with fewer points are dropped (PointNet's room2blocks)
    channels: int = field(default=9, metadata={"range": "[3, 9]"})  # input channels per point: 9 = xyz, rgb, normalised room xyz; 3 = xyz (no other value: __post_init__)
    block_seed: int = field(default=0, metadata={"range": "[0, inf)"})  # draws the training blocks' points (fixed benchmark data)

    def __post_init__(self) -> None:
        if self.channels not in (3, 9):
            raise ValueError(f"data.channels must be 3 or 9; got {self.channels}")
        if not 0 < self.stride <= self.block_size or not 0 < self.eval_stride <= self.block_size:
            raise ValueError(f"data.stride and data.eval_stride must be in (0, block_size={self.block_size}]; "
                             f"got {self.stride} and {self.eval_stride}")


@dataclass(frozen=True)
class Room:
    """One room of a scene dataset: ``Area_5/office_1`` style name, its area and what the loader needs."""

    name: str
    area: int
    source: Any = None


class SceneDataset(ShapeDataset):
    """Base class of scene datasets (see the module docstring).

    Subclasses set ``name``, ``areas`` and implement :meth:`rooms_of_area` and :meth:`load_room`.
    A release that ships pre-cut blocks sets ``precut_points`` (points per stored block) and
    returns from :meth:`load_room` the stored 9-channel inputs instead of raw xyz + rgb.
    """

    Config: ClassVar[type[DataConfig]] = SceneConfig
    available_modalities: ClassVar[frozenset[str]] = frozenset({"points", "point_labels"})
    item_noun: ClassVar[str] = "blocks"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    prepare_modalities: ClassVar[tuple[str, ...]] = ("points", "point_labels")
    areas: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5, 6)
    #: points per stored block of a pre-cut release (None: rooms are raw points, cut here)
    precut_points: ClassVar[int | None] = None

    # -- hooks -------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return S3DIS_CLASSES

    def rooms_of_area(self, area: int) -> list[Room]:
        """The rooms of ``area`` in a fixed order."""
        raise NotImplementedError

    def load_room(self, room: Room) -> tuple[np.ndarray, np.ndarray]:
        """``(points, labels)``: float ``[N, 6]`` xyz (metres, z up) + rgb in [0, 1] (pre-cut releases:
        ``[N, 9]`` stored inputs, N a multiple of ``precut_points``) and int64 ``[N]`` class ids."""
        raise NotImplementedError

    # -- index -------------------------------------------------------------------
    def split_areas(self, split: str) -> tuple[int, ...]:
        test = self.config.test_area
        if test not in self.areas:
            raise ValueError(f"{self.name}: data.test_area={test} is not an area; areas: {', '.join(map(str, self.areas))}")
        return (test,) if split == "test" else tuple(a for a in self.areas if a != test)

    def index(self, split: str) -> list[ShapeInfo]:
        return [ShapeInfo(name=room.name, label=room.area, source=room)
                for area in self.split_areas(split) for room in self.rooms_of_area(area)]

    # -- cache -------------------------------------------------------------------
    def settings(self, group: str = "rooms") -> dict[str, Any]:
        own = {k: v for k, v in to_dict(self.config).items() if k not in DataConfig.__dataclass_fields__}
        return {"dataset": self.name, "version": self.version, **own, **self.raw_identity()}

    def groups(self) -> list[str]:
        return ["rooms"]

    def cache_path(self, group: str = "rooms") -> Path:
        # only what changes the stored rooms keys the file; block settings are applied when reading
        key = {"dataset": self.name, "version": self.version, "split": self.split,
               "areas": self.split_areas(self.split), **self._room_settings(), **self.raw_identity()}
        return self.dataset_dir / "processed" / f"{self.split}-rooms-{config_hash(key)}.npz"

    def _room_settings(self) -> dict[str, Any]:
        """Config fields that change the rooms themselves (generator settings); none for read releases."""
        return {}

    def prepare(self) -> dict[str, CacheReport]:
        if self._valid is not None:
            return self.reports
        if not hasattr(self, "room_index"):  # index() gave the rooms; after cutting, `shapes` lists the blocks
            self.room_index: list[ShapeInfo] = list(self.shapes)
        t0 = time.perf_counter()
        path = self.cache_path()
        arrays, built = self._read_cache(path), 0
        skipped: dict[str, str] = {}
        if arrays is None:
            arrays, skipped = self._build_cache(path)
            built = len(self.room_index) - len(skipped)
        self._points, self._labels = arrays["points"], arrays["labels"].astype(np.int64)
        self._offsets = arrays["offsets"]
        self._room_names = [str(n) for n in arrays["names"]]
        self._room_areas = arrays["areas"].astype(np.int64)
        self._cut_training_blocks()
        size = path.stat().st_size if path.exists() else 0
        self.reports = {"rooms": CacheReport(str(path), len(self.room_index), len(self._room_names), skipped, built,
                                             time.perf_counter() - t0, size)}
        for name, reason in skipped.items():
            log.warning("%s/%s: skipped room %s: %s", self.name, self.split, name, reason)
        return self.reports

    def _read_cache(self, path: Path) -> dict[str, np.ndarray] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("points", "labels", "offsets", "names", "areas")}
            if arrays["offsets"][-1] != len(arrays["points"]) or len(arrays["labels"]) != len(arrays["points"]):
                raise ValueError("array lengths disagree")
            return arrays
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            aside = move_aside(path)
            log.warning("%s: damaged scene cache %s (%s); moved to %s and rebuilding", self.name, path, exc, aside)
            return None

    def _build_cache(self, path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        points, labels, names, areas, skipped = [], [], [], [], {}
        for shape in self.room_index:
            room: Room = shape.source
            try:
                p, lab = self.load_room(room)
            except DataFileError as exc:  # one unreadable room is reported, not fatal
                skipped[room.name] = str(exc)
                continue
            points.append(np.asarray(p, dtype=np.float32))
            labels.append(np.asarray(lab, dtype=np.uint8))
            names.append(room.name)
            areas.append(room.area)
        if not points:
            raise DataFileError(self.dataset_dir, f"no readable room in split {self.split!r} "
                                f"(areas {', '.join(map(str, self.split_areas(self.split)))})")
        arrays = {"points": np.concatenate(points), "labels": np.concatenate(labels),
                  "offsets": np.cumsum([0] + [len(p) for p in points]).astype(np.int64),
                  "names": np.array(names), "areas": np.array(areas, dtype=np.int64)}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return arrays, skipped

    # -- rooms and blocks --------------------------------------------------------------
    @property
    def n_rooms(self) -> int:
        self._ensure_ready()
        return len(self._room_names)

    def room_name(self, r: int) -> str:
        return self._room_names[r]

    def room_points(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """``(points [N, 6 or 9], labels int64 [N])`` of room ``r`` (an index into the split's rooms)."""
        self._ensure_ready()
        return self._room_slice(r)

    def _room_slice(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._offsets[r], self._offsets[r + 1]
        return self._points[lo:hi], self._labels[lo:hi]

    def _rng(self, r: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.block_seed, hash_name(self._room_names[r]), stream])

    def room_blocks(self, r: int, train: bool) -> list[Block]:
        """Training blocks (sampled) or evaluation blocks (every point valid once per covering column) of room r."""
        cfg = self.config
        points, _ = self._room_slice(r)
        if self.precut_points is not None:  # the release's own blocks, every stored point scored once
            size = self.precut_points
            return [Block(np.arange(s, s + size), np.ones(size, dtype=bool), (0.0, 0.0))
                    for s in range(0, len(points), size)]
        xyz = points[:, :3]
        if train:
            return training_blocks(xyz, cfg.block_size, cfg.stride, cfg.block_points, self._rng(r, 0),
                                   cfg.min_block_points)
        return evaluation_blocks(xyz, cfg.block_size, cfg.eval_stride, cfg.block_points, self._rng(r, 1))

    def block_tensor(self, r: int, block: Block) -> torch.Tensor:
        """The network input ``[n, channels]`` of one block of room ``r``."""
        points, _ = self.room_points(r)
        if self.precut_points is not None:
            return torch.from_numpy(np.ascontiguousarray(points[block.indices, :self.config.channels]))
        return torch.from_numpy(block_input(points[:, :3], points[:, 3:6], block, self.config.channels))

    def _cut_training_blocks(self) -> None:
        rooms, blocks = [], []
        for r in range(len(self._room_names)):
            for block in self.room_blocks(r, train=True):
                rooms.append(r)
                blocks.append(block)
        self._block_room = np.array(rooms, dtype=np.int64)
        self._blocks = blocks
        self._block_labels = np.array([np.bincount(self._room_slice(r)[1][b.indices]).argmax()
                                       for r, b in zip(rooms, blocks)], dtype=np.int64)
        # the items are the blocks: reports (`bench prepare`) count and name them, labelled by majority class
        self.shapes = [ShapeInfo(f"{self._room_names[r]}#{j}", int(label), None)
                       for j, (r, label) in enumerate(zip(rooms, self._block_labels))]
        self._valid = np.arange(len(blocks))

    @property
    def block_areas(self) -> np.ndarray:
        """int64 [len(self)] area of every training block."""
        self._ensure_ready()
        return self._room_areas[self._block_room]

    @property
    def labels(self) -> np.ndarray:
        self._ensure_ready()
        return self._block_labels

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._ensure_ready()
        r, block = int(self._block_room[index]), self._blocks[index]
        sample = {"label": torch.tensor(self._block_labels[index]), "index": torch.tensor(index)}
        if "points" in self.modalities:
            sample["points"] = self.block_tensor(r, block)
        if "point_labels" in self.modalities:
            sample["point_labels"] = torch.from_numpy(self.room_points(r)[1][block.indices])
        return sample

    def read_modality(self, modality: str, i: int) -> torch.Tensor:
        return self[i][modality]


def scene_summary(ds: SceneDataset) -> dict[str, Any]:
    """Rooms, blocks and points per area and points per class of a prepared split (for reports and docs)."""
    per_area = {int(a): int((ds._room_areas == a).sum()) for a in np.unique(ds._room_areas)}
    counts = np.bincount(ds._labels, minlength=ds.num_classes)
    return {"split": ds.split, "rooms": ds.n_rooms, "rooms_per_area": per_area, "blocks": len(ds),
            "points": int(len(ds._labels)), "points_per_class": dict(zip(ds.class_names, map(int, counts)))}
