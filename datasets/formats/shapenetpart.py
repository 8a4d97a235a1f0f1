"""ShapeNetPart as published by PointNet++: ``shapenetcore_partanno_segmentation_benchmark_v0_normal``.

Layout::

    synsetoffset2category.txt                 "Airplane\\t02691156", one category a line
    <synset>/<shape id>.txt                   "x y z nx ny nz part", one point a line
    train_test_split/shuffled_{train,val,test}_file_list.json
                                              ["shape_data/<synset>/<shape id>", ...]

Part ids are global (0..49) across the 16 categories, so a category's parts
occupy a fixed range (:data:`SHAPENETPART_PARTS`). Category labels follow the
alphabetical order of the names, which is also the file's order. Coordinates
keep the ShapeNetCore frame, which is +Y up like this project (no rotation is
applied; shared/data has no ShapeNetPart sample to measure this on), and are
not unit-sphere normalised: normalise downstream.

16 categories, 50 parts (counts per split: STATS of :mod:`ssl3d.datasets.shapenetpart`).
The number of points varies from shape to shape.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.records import ShapeRecord

__all__ = [
    "SHAPENETPART_CATEGORIES",
    "SHAPENETPART_PARTS",
    "SHAPENETPART_NUM_PARTS",
    "part_to_category",
    "index_shapenetpart",
    "read_shapenetpart_txt",
]

#: Category name -> ShapeNet synset id, in label order.
SHAPENETPART_CATEGORIES: dict[str, str] = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343",
    "Chair": "03001627", "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134",
    "Lamp": "03636649", "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390",
    "Pistol": "03948459", "Rocket": "04099429", "Skateboard": "04225943", "Table": "04379243",
}  # fmt: skip

#: Category name -> its global part ids (the standard ShapeNetPart table).
SHAPENETPART_PARTS: dict[str, tuple[int, ...]] = {
    "Airplane": (0, 1, 2, 3), "Bag": (4, 5), "Cap": (6, 7), "Car": (8, 9, 10, 11),
    "Chair": (12, 13, 14, 15), "Earphone": (16, 17, 18), "Guitar": (19, 20, 21),
    "Knife": (22, 23), "Lamp": (24, 25, 26, 27), "Laptop": (28, 29),
    "Motorbike": (30, 31, 32, 33, 34, 35), "Mug": (36, 37), "Pistol": (38, 39, 40),
    "Rocket": (41, 42, 43), "Skateboard": (44, 45, 46), "Table": (47, 48, 49),
}  # fmt: skip

SHAPENETPART_NUM_PARTS = 50
_SPLITS = ("train", "val", "test", "trainval")


def part_to_category() -> np.ndarray:
    """Return int64 ``[50]``: the category label owning each global part id."""
    owner = np.empty(SHAPENETPART_NUM_PARTS, dtype=np.int64)
    for label, parts in enumerate(SHAPENETPART_PARTS.values()):
        owner[list(parts)] = label
    return owner


def _read_categories(root: Path) -> dict[str, str]:
    """synset -> category name, from ``synsetoffset2category.txt``."""
    path = root / "synsetoffset2category.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataFileError(
            path, "file not found (is root the extracted shapenetcore_partanno_segmentation_benchmark_v0_normal folder?)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read text file: {exc}") from None
    synsets = {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2 or not tokens[1].isdigit():
            raise DataFileError(path, f"line {number}: expected '<Category>\\t<synset id>', got {line!r}")
        name, synset = tokens
        if SHAPENETPART_CATEGORIES.get(name) != synset:
            raise DataFileError(path, f"line {number}: {name} {synset} is not one of the 16 ShapeNetPart categories")
        synsets[synset] = name
    if len(synsets) != len(SHAPENETPART_CATEGORIES):
        raise DataFileError(path, f"expected {len(SHAPENETPART_CATEGORIES)} categories, found {len(synsets)}")
    return synsets


def _read_split(root: Path, split: str) -> list[str]:
    path = root / "train_test_split" / f"shuffled_{split}_file_list.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(path, f"not a readable JSON list: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DataFileError(path, "expected a JSON list of 'shape_data/<synset>/<id>' strings")
    return entries


def index_shapenetpart(
    root: str | os.PathLike[str], split: str, categories: Sequence[str] | None = None
) -> list[ShapeRecord]:
    """Index one official split of ShapeNetPart (PointNet++ ``_normal`` release).

    Args:
        root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"trainval"`` (train + val).
        categories: keep only these category names (e.g. ``["Airplane"]``);
            labels stay the global 16-category labels. ``None`` keeps all.

    Returns:
        records sorted by (label, shape id); ``shape_id`` is ``<synset>/<id>``.

    Raises:
        ValueError: bad ``split`` or unknown category name.
        DataFileError: missing/malformed category or split file, an entry of an
            unknown synset, or a listed shape whose ``.txt`` file is absent.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, _SPLITS))}, got {split!r}")
    if categories is not None:
        unknown = [c for c in categories if c not in SHAPENETPART_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; valid: {', '.join(SHAPENETPART_CATEGORIES)}")
    root = Path(root)
    synsets = _read_categories(root)
    labels = {name: i for i, name in enumerate(SHAPENETPART_CATEGORIES)}
    keep = set(categories) if categories is not None else set(labels)
    records = []
    for part in ("train", "val") if split == "trainval" else (split,):
        list_file = root / "train_test_split" / f"shuffled_{part}_file_list.json"
        for entry in _read_split(root, part):
            pieces = entry.replace("\\", "/").split("/")
            if len(pieces) < 2 or pieces[-2] not in synsets:
                raise DataFileError(list_file, f"entry {entry!r} does not name a known '<synset>/<id>'")
            synset, shape = pieces[-2], pieces[-1]
            name = synsets[synset]
            if name not in keep:
                continue
            path = root / synset / f"{shape}.txt"
            if not path.is_file():
                raise DataFileError(path, f"file not found (listed in {list_file.name})")
            records.append(ShapeRecord(path=path, label=labels[name], category=name, shape_id=f"{synset}/{shape}"))
    records.sort(key=lambda r: (r.label, r.shape_id))
    return records


def read_shapenetpart_txt(
    path: str | os.PathLike[str], category: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one ShapeNetPart shape: lines ``x y z nx ny nz part``.

    Args:
        path: the ``<synset>/<id>.txt`` file.
        category: if given, every part id must belong to this category
            (:data:`SHAPENETPART_PARTS`), which catches files filed under the
            wrong synset.

    Returns:
        ``(points, normals, part_labels)``: float32 ``[N, 3]``, float32
        ``[N, 3]``, int64 ``[N]`` global part ids in 0..49.

    Raises:
        ValueError: unknown ``category``.
        DataFileError: missing file, a line without seven numbers, a
            non-integer or out-of-range part id, or non-finite values.

    Shapes:
        - **points, normals:** ``[N, 3]``.
        - **part_labels:** ``[N]``.
    """
    if category is not None and category not in SHAPENETPART_PARTS:
        raise ValueError(f"unknown category {category!r}; valid: {', '.join(SHAPENETPART_PARTS)}")
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataFileError(path, f"expected lines of seven numbers 'x y z nx ny nz part': {exc}") from None
    if data.shape[0] == 0:
        raise DataFileError(path, "file holds no points")
    if data.shape[1] != 7:
        raise DataFileError(path, f"expected 7 values per line (x y z nx ny nz part), found {data.shape[1]}")
    if not np.isfinite(data).all():
        raise DataFileError(path, f"line {int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0]) + 1}: non-finite value")
    raw_parts = data[:, 6]
    parts = np.rint(raw_parts).astype(np.int64)
    if (np.abs(raw_parts - parts) > 1e-6).any():
        row = int(np.flatnonzero(np.abs(raw_parts - parts) > 1e-6)[0])
        raise DataFileError(path, f"line {row + 1}: part id {raw_parts[row]} is not an integer")
    allowed = np.array(SHAPENETPART_PARTS[category]) if category else np.arange(SHAPENETPART_NUM_PARTS)
    outside = ~np.isin(parts, allowed)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        scope = f"{category}'s parts {allowed.min()}..{allowed.max()}" if category else "0..49"
        raise DataFileError(path, f"line {row + 1}: part id {parts[row]} outside {scope}")
    return data[:, :3].astype(np.float32), data[:, 3:6].astype(np.float32), parts
