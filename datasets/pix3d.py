"""``pix3d``: real photos of furniture queried against their 3D models (image-based shape retrieval).

The items of a split are **photos**: ``image`` (float [3, H, W] in [0, 1]) and
``mask`` (float [H, W]) are the photo and its ground-truth object mask,
cropped to a square around the annotated box (``crop_margin`` of border) and
resized to ``image_size``; ``label`` is the category. Pix3D has several photos
per shape, so retrieval is evaluated against a separate gallery of unique
shapes: :meth:`Pix3DDataset.gallery_split` returns it as a
:class:`~ssl3d.datasets.base.ShapeDataset` whose meshes (``model.obj``, +Y up as
Pix3D ships them: "+x leftward, +y upward, +z inward", no rotation) give
``views``, ``points`` and ``voxels`` through the common pipeline, and
``query_shape_index[i]`` is the gallery position of photo ``i``'s shape. Asking
a photo split for a mesh modality returns the modality of the photo's shape
(what image-shape contrastive pretraining consumes) and ``shape_index``, the
shape's gallery position, so that a batch can be de-duplicated by shape.

Protocol (CMIC, Lin et al., ICCV 2021, Section 4 "Datasets", following LFD and
HEG-TS): categories bed, chair, sofa, table; photos that are occluded,
slightly occluded or truncated are dropped; 5,118 photos of 322 shapes, 2,648
for training and 2,470 for evaluation; photos are split, shapes are shared, and
the gallery is every shape (``gallery="all"``, the default; ``"split"`` uses
only the shapes of the split's photos). The authors' image lists are not
published: give them as ``train_list`` / ``test_list`` if you have them,
otherwise the reader's documented per-category hash split reproduces the split
sizes exactly (:func:`~ssl3d.datasets.formats.pix3d.index_pix3d`). The paper
uses OCRNet-predicted masks; these are Pix3D's ground-truth masks.

STATS (http://pix3d.csail.mit.edu/data/pix3d.zip, CMIC filter):

========  ==========  ======  =================
split     categories  photos  gallery shapes
========  ==========  ======  =================
train     4           2,648   322 (all shapes)
test      4           2,470   322 (all shapes)
========  ==========  ======  =================

The full release: 10,069 photos of 395 shapes in 9 categories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import torch
import trimesh

from ssl3d.datasets.base import DataConfig, ShapeInfo, register_dataset
from ssl3d.datasets.cache import CacheReport
from ssl3d.datasets.formats.pix3d import CMIC_CATEGORIES, index_pix3d, read_obj, read_pix3d_photo
from ssl3d.datasets.formats.records import ShapeRecord, group_by_shape
from ssl3d.datasets.real import RawPart, RealShapeDataset

__all__ = ["Pix3DConfig", "Pix3DDataset", "Pix3DShapes"]

log = logging.getLogger(__name__)

_PHOTO_MODALITIES = ("image", "mask")
_SPLIT_FIELDS = ("split_seed", "train_list", "test_list")


@dataclass(frozen=True)
class Pix3DConfig(DataConfig):
    """Pix3D settings: the pipeline's (see :class:`DataConfig`) plus the CMIC protocol's choices."""

    categories: tuple[str, ...] = ()  # () = CMIC's bed, chair, sofa, table; or any of the 9 Pix3D categories
    split_seed: int = field(default=0, metadata={"range": "[0, inf)"})  # changes the documented hash split (ignored with train_list / test_list)
    train_list: str = ""  # the authors' training image list (JSON or text), if you have it
    test_list: str = ""  # the authors' evaluation image list (JSON or text), if you have it
    crop_margin: float = field(default=0.1, metadata={"range": "[0, inf)"})  # border around the object box when cropping photos (fraction of its longer side)
    gallery: Literal["all", "split"] = "all"  # retrieval gallery: every shape (CMIC) or the split's shapes


class _Pix3DBase(RealShapeDataset):
    """What the photo splits and the shape galleries share: raw files, categories, the photo index."""

    name = "pix3d"
    Config = Pix3DConfig
    raw_name = "pix3d"
    raw_parts = (
        RawPart(("http://pix3d.csail.mit.edu/data/pix3d.zip",), "pix3d.zip", ".", ("pix3d.json", "img/*", "mask/*", "model/*")),
    )

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.categories) or CMIC_CATEGORIES

    def photo_records(self, split: str) -> list[ShapeRecord]:
        """Kept photos of ``"train"``, ``"test"`` or ``"all"`` (CMIC filter, documented split)."""
        cfg = self.config
        lists = {"train": cfg.train_list, "test": cfg.test_list}
        split_file = lists.get(split) or None
        if split in lists and bool(cfg.train_list) != bool(cfg.test_list):
            raise ValueError("pix3d: give both train_list and test_list, or neither (the hash split)")
        return index_pix3d(self.raw_dir, self.class_names, split=split, split_file=split_file, seed=cfg.split_seed)


class Pix3DShapes(_Pix3DBase):
    """The gallery of unique Pix3D shapes (``gallery-all``, ``gallery-train`` or ``gallery-test``)."""

    splits = ("gallery-all", "gallery-train", "gallery-test")
    available_modalities = frozenset({"points", "normals", "voxels", "views"})

    def index(self, split: str) -> list[ShapeInfo]:
        groups = group_by_shape(self.photo_records(split.removeprefix("gallery-")))
        return [ShapeInfo(name=shape_id, label=recs[0].label, source=recs[0].path) for shape_id, recs in groups.items()]

    def load_mesh(self, shape: ShapeInfo) -> tuple[trimesh.Trimesh, None]:
        return read_obj(shape.source), None  # Pix3D models are +Y up already

    def settings(self, group: str) -> dict[str, Any]:
        out = super().settings(group)
        out.pop("crop_margin", None)
        out.pop("gallery", None)  # encoded in the split name
        if self.split == "gallery-all":  # every shape: the photo split does not matter
            for key in _SPLIT_FIELDS:
                out.pop(key, None)
        return out


@register_dataset("pix3d")
class Pix3DDataset(_Pix3DBase):
    """Pix3D photo splits (CMIC protocol) with a gallery of unique shapes; see the module docstring."""

    available_modalities = frozenset({"image", "mask", "points", "normals", "voxels", "views"})
    prepare_modalities = ("image", "views")
    item_noun = "photos"

    def __init__(
        self,
        split: str = "train",
        modalities: Iterable[str] = ("image",),
        config: DataConfig | None = None,
        root: Any = None,
        *,
        progress: bool = True,
        prepare: bool = True,
    ) -> None:
        self._galleries: dict[tuple[str, ...], Pix3DShapes] = {}
        self._positions: np.ndarray | None = None
        super().__init__(split, modalities, config, root, progress=progress, prepare=prepare)

    @property
    def mesh_modalities(self) -> tuple[str, ...]:
        """The requested modalities that come from the photo's shape."""
        return tuple(m for m in self.modalities if m not in _PHOTO_MODALITIES)

    def index(self, split: str) -> list[ShapeInfo]:
        return [
            ShapeInfo(name=Path(r.image_path).relative_to(self.raw_dir).as_posix(), label=r.label, source=r)
            for r in self.photo_records(split)
        ]

    def groups(self) -> list[str]:
        return [g for g in super().groups() if g == "image"]  # mesh groups live in the gallery

    def settings(self, group: str) -> dict[str, Any]:
        out = super().settings(group)
        out.pop("gallery", None)  # photos do not depend on the gallery choice
        return out

    def compute(self, group: str, i: int) -> dict[str, np.ndarray]:
        if group != "image":
            raise ValueError(f"pix3d photo splits compute only the image group, not {group!r} (shapes: gallery_split())")
        image, mask = read_pix3d_photo(self.shapes[i].source, size=self.config.image_size, margin=self.config.crop_margin)
        return {"image": image, "mask": mask.astype(np.uint8)}

    def gallery_split(self, modalities: Iterable[str] | None = None) -> Pix3DShapes:
        """The unique shapes to retrieve from, as a dataset split (modalities default: this split's mesh ones, else views).

        Args:
            modalities: mesh modalities of the gallery (``views``, ``points``, ``normals``, ``voxels``).

        Returns:
            a :class:`Pix3DShapes` split: every shape of the kept categories
            (``gallery="all"``) or the shapes of this split's photos.
        """
        mods = tuple(modalities) if modalities is not None else (self.mesh_modalities or ("views",))
        if mods not in self._galleries:
            split = "gallery-all" if self.config.gallery == "all" else f"gallery-{self.split}"
            self._galleries[mods] = Pix3DShapes(split, mods, self.config, self.root, progress=self.progress)
        return self._galleries[mods]

    def _shape_positions(self) -> np.ndarray:
        """Per photo (all indexed photos): its shape's position among the gallery's valid shapes, or -1."""
        gallery = self.gallery_split()
        gallery._ensure_ready()
        where = {gallery.shapes[j].name: pos for pos, j in enumerate(gallery._valid)}
        return np.array([where.get(s.source.shape_id, -1) for s in self.shapes], dtype=np.int64)

    def prepare(self) -> dict[str, CacheReport]:
        reports = super().prepare()
        self._positions = None
        if self.mesh_modalities:  # a photo whose shape failed to load cannot serve shape modalities
            positions = self._shape_positions()
            self._valid = self._valid[positions[self._valid] >= 0]
            self._positions = positions
        return reports

    @property
    def query_shape_index(self) -> np.ndarray:
        """int64 [len(self)]: gallery position of each photo's shape in :meth:`gallery_split` (-1: shape unreadable)."""
        self._ensure_ready()
        if self._positions is None:
            self._positions = self._shape_positions()
        out = self._positions[self._valid]
        if (out < 0).any():
            log.warning("pix3d/%s: %d photo(s) show a shape missing from the gallery", self.split, int((out < 0).sum()))
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._ensure_ready()
        i = int(self._valid[index])
        sample: dict[str, torch.Tensor] = {
            "label": torch.tensor(self.shapes[i].label, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        for modality in self.modalities:
            if modality in _PHOTO_MODALITIES:
                sample[modality] = self.read_modality(modality, i)
        if self.mesh_modalities:
            if self._positions is None:
                self._positions = self._shape_positions()
            position = int(self._positions[i])
            shape = self.gallery_split()[position]
            sample.update({m: shape[m] for m in self.mesh_modalities})
            # several photos show one shape: image-shape contrastive losses de-duplicate batches by this key
            sample["shape_index"] = torch.tensor(position, dtype=torch.int64)
        return sample
