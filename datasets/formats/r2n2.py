"""3D-R2N2's ShapeNet renderings and 32^3 voxels (``ShapeNetRendering.tgz``, ``ShapeNetVox32.tgz``).

Layout (both tarballs extracted side by side under one ``root``)::

    ShapeNetRendering/<synset>/<id>/rendering/00.png .. 23.png   137x137 RGBA, transparent background
    ShapeNetRendering/<synset>/<id>/rendering/renderings.txt     the 24 file names
    ShapeNetRendering/<synset>/<id>/rendering/rendering_metadata.txt
                        24 lines "azimuth elevation in-plane-rotation distance-ratio fov"
    ShapeNetVox32/<synset>/<id>/model.binvox                     32^3, see formats.binvox

13 ShapeNet categories (:data:`R2N2_CATEGORIES`; shape counts: STATS of
:mod:`ssl3d.datasets.r2n2`), 24 random-viewpoint renders per shape; voxels
are +Y up (ShapeNet frame).

Split: the 3D-R2N2 paper uses 4/5 of each category for training and 1/5 for
testing. Its released code (``lib/data_io.py``, ``category_model_id_pair``)
lists the shape folders of ``ShapeNetVox32/<synset>``, sorts the ids, and
takes ``ids[:int(n * 0.8)]`` for training and ``ids[int(n * 0.8):]`` for
testing; :func:`index_r2n2` reproduces exactly that. Split files of the form
Pix2Vox distributes (``ShapeNet.json``: a list of ``{"taxonomy_id": ...,
"train": [...], "val": [...], "test": [...]}``) are accepted through
``split_file`` instead.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.records import ShapeRecord

__all__ = [
    "R2N2_CATEGORIES",
    "R2N2_NUM_VIEWS",
    "R2N2_TRAIN_FRACTION",
    "index_r2n2",
    "read_r2n2_views",
    "read_rendering_metadata",
]

#: ShapeNet synset id -> 3D-R2N2 category name, in label order (sorted synsets,
#: as the released code orders its category file).
R2N2_CATEGORIES: dict[str, str] = {
    "02691156": "aeroplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car",
    "03001627": "chair", "03211117": "display", "03636649": "lamp", "03691459": "speaker",
    "04090263": "rifle", "04256520": "sofa", "04379243": "table", "04401088": "telephone",
    "04530566": "watercraft",
}  # fmt: skip

R2N2_NUM_VIEWS = 24
R2N2_TRAIN_FRACTION = 0.8


def _list_shape_ids(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataFileError(folder, "missing category folder (is root the folder holding ShapeNetVox32/ and ShapeNetRendering/?)")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _ids_from_split_file(path: Path, split: str) -> dict[str, list[str]]:
    try:
        taxonomies = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(path, f"not a readable JSON file: {exc}") from None
    if not isinstance(taxonomies, list):
        raise DataFileError(path, "expected a JSON list of {'taxonomy_id', 'train', 'val', 'test'} objects")
    ids: dict[str, list[str]] = {}
    for number, entry in enumerate(taxonomies):
        if not isinstance(entry, dict) or "taxonomy_id" not in entry:
            raise DataFileError(path, f"entry {number} has no 'taxonomy_id'")
        if split not in entry or not isinstance(entry[split], list):
            raise DataFileError(path, f"entry {number} ({entry['taxonomy_id']}) has no {split!r} list")
        ids[str(entry["taxonomy_id"])] = sorted(str(i) for i in entry[split])
    return ids


def index_r2n2(
    root: str | os.PathLike[str],
    split: str,
    categories: Sequence[str] | None = None,
    split_file: str | os.PathLike[str] | None = None,
) -> list[ShapeRecord]:
    """Index the 3D-R2N2 renderings + voxels of one split.

    Args:
        root: folder holding ``ShapeNetRendering/`` and ``ShapeNetVox32/``.
        split: ``"train"`` or ``"test"`` (``"val"`` too with a ``split_file`` that has it).
        categories: synset ids or category names to keep; ``None`` keeps all 13.
            Labels stay the 13-category labels.
        split_file: optional Pix2Vox-style ``ShapeNet.json``; without it the
            released 3D-R2N2 rule (sorted ids, first 80% train) is used.

    Returns:
        records sorted by (label, shape id): ``path`` and ``voxel_path`` are the
        ``model.binvox``, ``views_dir`` the ``rendering/`` folder, ``shape_id``
        ``<synset>/<id>``.

    Raises:
        ValueError: bad ``split`` or unknown category.
        DataFileError: a category folder, voxel file or rendering folder is missing.
    """
    allowed = ("train", "val", "test") if split_file is not None else ("train", "test")
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}, got {split!r}")
    names = {name: synset for synset, name in R2N2_CATEGORIES.items()}
    wanted = list(R2N2_CATEGORIES) if categories is None else [names.get(c, c) for c in categories]
    unknown = [c for c in wanted if c not in R2N2_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; valid synsets/names: {R2N2_CATEGORIES}")
    root = Path(root)
    voxel_root, render_root = root / "ShapeNetVox32", root / "ShapeNetRendering"
    listed = _ids_from_split_file(Path(split_file), split) if split_file is not None else None
    labels = {synset: i for i, synset in enumerate(R2N2_CATEGORIES)}
    records = []
    for synset in sorted(set(wanted)):
        if listed is not None:
            if synset not in listed:
                raise DataFileError(Path(split_file), f"has no entry for category {synset} ({R2N2_CATEGORIES[synset]})")
            ids = listed[synset]
        else:
            all_ids = _list_shape_ids(voxel_root / synset)
            # Same float arithmetic as the released code, so the cut is identical.
            cut = int(len(all_ids) * R2N2_TRAIN_FRACTION)
            ids = all_ids[:cut] if split == "train" else all_ids[cut:]
        for shape in ids:
            voxel = voxel_root / synset / shape / "model.binvox"
            views = render_root / synset / shape / "rendering"
            if not voxel.is_file():
                raise DataFileError(voxel, "voxel file not found")
            if not views.is_dir():
                raise DataFileError(views, "rendering folder not found")
            records.append(
                ShapeRecord(
                    path=voxel,
                    label=labels[synset],
                    category=R2N2_CATEGORIES[synset],
                    shape_id=f"{synset}/{shape}",
                    voxel_path=voxel,
                    views_dir=views,
                )
            )
    return records


def _load_rgba(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGBA")
    except FileNotFoundError:
        raise DataFileError(path, "rendering not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataFileError(path, f"not a readable image (truncated or corrupt?): {exc}") from None


def read_r2n2_views(
    record: ShapeRecord, view_ids: Iterable[int] = range(R2N2_NUM_VIEWS), size: int | None = None
) -> np.ndarray:
    r"""Load rendered views of one shape, alpha-composited on white.

    .. math::
        \mathrm{rgb}_{out} = \alpha\,\mathrm{rgb} + (1 - \alpha)\,255

    Args:
        record: a record from :func:`index_r2n2` (uses ``views_dir``).
        view_ids: which of the 24 renders (0..23), in the order wanted.
        size: output side length in pixels (bilinear, antialiased); ``None``
            keeps the native 137.

    Returns:
        uint8 ``[V, H, W, 3]``.

    Raises:
        ValueError: a view id outside 0..23, an empty selection, a bad ``size``,
            or a record without ``views_dir``.
        DataFileError: a render is missing or unreadable, or renders differ in size.

    Shapes:
        - **output:** ``[V, H, W, 3]`` with ``H = W = size`` (or 137).
    """
    views = [int(v) for v in view_ids]
    if not views:
        raise ValueError("view_ids selects no view")
    bad = [v for v in views if not 0 <= v < R2N2_NUM_VIEWS]
    if bad:
        raise ValueError(f"view ids must be in 0..{R2N2_NUM_VIEWS - 1}, got {bad}")
    if size is not None and size <= 0:
        raise ValueError(f"size must be a positive number of pixels or None, got {size}")
    if record.views_dir is None:
        raise ValueError(f"record {record.shape_id!r} has no views_dir (not an R2N2 record?)")
    out = []
    for v in views:
        path = Path(record.views_dir) / f"{v:02d}.png"
        rgba = np.asarray(_load_rgba(path), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        image = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        if out and image.size[::-1] != out[0].shape[:2]:
            raise DataFileError(path, f"size {image.size} differs from the other renders {out[0].shape[1::-1]}")
        out.append(np.asarray(image))
    return np.stack(out)


def read_rendering_metadata(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``rendering_metadata.txt``: one line per render, five numbers.

    Args:
        path: the ``rendering_metadata.txt`` file.

    Returns:
        float64 ``[24, 5]``: azimuth (degrees), elevation (degrees), in-plane
        rotation (degrees), distance ratio (relative to the max camera
        distance), field of view (degrees).

    Raises:
        DataFileError: missing file, a line without five numbers, or not 24 lines.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataFileError(path, f"expected lines of five numbers 'azimuth elevation in-plane distance fov': {exc}") from None
    if data.size == 0:
        raise DataFileError(path, "file holds no data")
    if data.shape[1] != 5:
        raise DataFileError(path, f"expected 5 values per line, found {data.shape[1]}")
    if data.shape[0] != R2N2_NUM_VIEWS:
        raise DataFileError(path, f"expected {R2N2_NUM_VIEWS} lines (one per render), found {data.shape[0]}")
    if not np.isfinite(data).all():
        raise DataFileError(path, "non-finite value")
    return data
