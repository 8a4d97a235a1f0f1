"""ModelNet40 / ModelNet10 in their published forms: OFF meshes, voxel grids, PointNet HDF5, PointNet++ text.

Class and shape counts per release are the STATS table of :mod:`ssl3d.datasets.modelnet`.
The OFF archives and voxel grids are +Z up (use :func:`z_up_to_y_up` and
:func:`z_up_to_y_up_grid`); both point-cloud releases are +Y up.

Layouts:

* OFF archives: ``ModelNet40/<class>/{train,test}/<class>_NNNN.off``; the split
  is the folder. Meshes are upright along +Z with arbitrary scale and offset;
  ModelNet40's azimuth is *not* consistently aligned (ModelNet10's is).
* voxel releases: ``<class>/{train,test}/<class>_NNNN.binvox``, one
  occupancy grid per shape (:mod:`~ssl3d.datasets.formats.binvox`), in the
  meshes' Z-up axes; the split is the folder (:func:`index_modelnet_voxels`).
* ``modelnet40_ply_hdf5_2048`` (PointNet): ``ply_data_train{0..4}.h5`` and
  ``ply_data_test{0,1}.h5`` with ``data`` float32 [S, 2048, 3], ``label``
  uint8 [S, 1] and ``normal`` float32 [S, 2048, 3]; ``shape_names.txt`` (the 40
  names in label order); ``train_files.txt`` / ``test_files.txt`` list the h5
  files, usually as ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``, so
  entries are resolved by basename. Points are unit-sphere normalised and
  +Y up: PointNet's augmentation rotates them about the Y axis ("up").
* ``modelnet40_normal_resampled`` (PointNet++): ``<class>/<class>_NNNN.txt``
  with 10,000 lines ``x,y,z,nx,ny,nz``; ``modelnet40_shape_names.txt``;
  ``modelnet40_{train,test}.txt`` list shape ids (``airplane_0001``); the class
  is the id without its trailing ``_NNNN`` (``night_stand_0001`` ->
  ``night_stand``). The same folder holds ``modelnet10_shape_names.txt`` and
  ``modelnet10_{train,test}.txt`` for the 10-class subset. Points lie in the
  unit sphere and are +Y up: measured on the real samples in ``shared/data``,
  tall classes (bottle, lamp, person) extend along Y, flat ones (airplane,
  keyboard) are thin along Y, a cone's apex is at +Y and a toilet's tank is at
  the top (+Y).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import trimesh

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.h5arrays import read_h5_arrays
from ssl3d.datasets.formats.records import ShapeRecord

__all__ = [
    "MODELNET40_CLASSES",
    "MODELNET10_CLASSES",
    "Z_UP_TO_Y_UP",
    "z_up_to_y_up",
    "z_up_to_y_up_grid",
    "index_modelnet_off",
    "index_modelnet_voxels",
    "read_modelnet_h5",
    "index_normal_resampled",
    "read_normal_resampled_txt",
]

#: The 40 ModelNet40 classes in official (alphabetical) label order.
MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car",
    "chair", "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot",
    "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel", "monitor",
    "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip

#: The 10 ModelNet10 classes in official (alphabetical) label order.
MODELNET10_CLASSES: tuple[str, ...] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand",
    "sofa", "table", "toilet",
)  # fmt: skip

#: Rotation taking ModelNet's Z-up meshes to this project's +Y-up frame:
#: -90 degrees about +X, i.e. ``(x, y, z) -> (x, z, -y)`` (old +Z becomes +Y,
#: old +Y becomes -Z). A proper rotation (det = +1), so handedness is kept.
#: Apply as ``points @ Z_UP_TO_Y_UP.T``.
Z_UP_TO_Y_UP: np.ndarray = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
Z_UP_TO_Y_UP.setflags(write=False)

_Geometry = TypeVar("_Geometry", trimesh.Trimesh, np.ndarray, torch.Tensor)
_SPLITS = ("train", "test")


def z_up_to_y_up(geometry: _Geometry) -> _Geometry:
    r"""Rotate Z-up geometry (ModelNet OFF meshes) into the +Y-up frame.

    .. math::
        (x, y, z) \mapsto (x, z, -y)

    Only the up axis of ModelNet40 is consistent, so no front direction is
    implied; the rotation is the proper one (no mirroring).

    Args:
        geometry: a :class:`trimesh.Trimesh`, or points/normals ``[..., 3]`` as
            a numpy array or torch tensor.

    Returns:
        a rotated copy of the same type (the input is not modified).

    Shapes:
        - **input / output:** ``[..., 3]`` for arrays and tensors.
    """
    if isinstance(geometry, trimesh.Trimesh):
        out = geometry.copy()
        transform = np.eye(4)
        transform[:3, :3] = Z_UP_TO_Y_UP
        out.apply_transform(transform)
        return out
    if isinstance(geometry, torch.Tensor):
        rot = torch.tensor(Z_UP_TO_Y_UP.tolist(), dtype=geometry.dtype, device=geometry.device)
        return geometry @ rot.T
    if isinstance(geometry, np.ndarray):
        if geometry.shape[-1:] != (3,):
            raise ValueError(f"expected points of shape [..., 3], got {geometry.shape}")
        return (geometry @ Z_UP_TO_Y_UP.T).astype(geometry.dtype, copy=False)
    raise ValueError(f"z_up_to_y_up takes a trimesh.Trimesh, numpy array or torch tensor, got {type(geometry).__name__}")


def z_up_to_y_up_grid(occupancy: np.ndarray) -> np.ndarray:
    r"""Rotate a Z-up ``[x, y, z]`` grid (ModelNet voxels) into the +Y-up frame, as :func:`z_up_to_y_up` does points.

    The voxel centred at :math:`(x, y, z)` (about the grid centre) moves to
    :math:`(x, z, -y)`: ``out[i, j, k] = occ[i, d - 1 - k, j]``. A
    permutation of voxels, so the grid's content is kept exactly.

    Shapes:
        - **occupancy / output:** :math:`[d, d, d]`, output axis 1 up.
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3 or len(set(occ.shape)) != 1:
        raise ValueError(f"expected a cubic [d, d, d] grid, got shape {occ.shape}")
    return np.ascontiguousarray(np.flip(occ, axis=1).transpose(0, 2, 1))


def _check_split(split: str, allowed: Sequence[str] = _SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}, got {split!r}")


def _read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a small text list file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read text file: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def index_modelnet_off(
    root: str | os.PathLike[str],
    split: str,
    classes: Sequence[str] = MODELNET40_CLASSES,
) -> list[ShapeRecord]:
    """Index an extracted ModelNet OFF archive (``<root>/<class>/<split>/*.off``).

    Args:
        root: the ``ModelNet40`` (or ``ModelNet10``) folder holding one folder per class.
        split: ``"train"`` or ``"test"``.
        classes: class names in label order; :data:`MODELNET40_CLASSES` or
            :data:`MODELNET10_CLASSES`.

    Returns:
        records sorted by (label, shape id); ``path`` is the ``.off`` file and
        ``shape_id`` its stem (``airplane_0001``).

    Raises:
        ValueError: bad ``split`` or empty ``classes``.
        DataFileError: a class/split folder is missing or holds no ``.off`` file.
    """
    return _index_class_folders(root, split, classes, ".off")


def index_modelnet_voxels(
    root: str | os.PathLike[str],
    split: str,
    classes: Sequence[str] = MODELNET40_CLASSES,
) -> list[ShapeRecord]:
    """Index a ModelNet voxel release (``<root>/<class>/<split>/*.binvox``), like :func:`index_modelnet_off`.

    Returns:
        records sorted by (label, shape id); ``path`` and ``voxel_path`` are the ``.binvox`` file.

    Raises:
        ValueError: bad ``split`` or empty ``classes``.
        DataFileError: a class/split folder is missing or holds no ``.binvox`` file.
    """
    records = _index_class_folders(root, split, classes, ".binvox")
    return [dataclasses.replace(r, voxel_path=r.path) for r in records]


def _index_class_folders(root: str | os.PathLike[str], split: str, classes: Sequence[str], suffix: str) -> list[ShapeRecord]:
    """Records of ``<root>/<class>/<split>/*<suffix>``, by label then file name."""
    _check_split(split)
    if not classes:
        raise ValueError("classes must name at least one class")
    root = Path(root)
    records = []
    for label, name in enumerate(classes):
        folder = root / name / split
        if not folder.is_dir():
            raise DataFileError(folder, f"missing folder for class {name!r}, split {split!r} (is {root} the extracted ModelNet folder?)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and p.is_file())
        if not files:
            raise DataFileError(folder, f"no {suffix} files in this folder")
        records.extend(ShapeRecord(path=p, label=label, category=name, shape_id=p.stem) for p in files)
    return records


def _h5_file_list(root: Path, split: str) -> list[Path]:
    list_file = root / f"{split}_files.txt"
    if list_file.is_file():
        # Entries carry the path of the machine that made them; only the name counts.
        names = [Path(line.replace("\\", "/")).name for line in _read_lines(list_file)]
        if not names:
            raise DataFileError(list_file, "lists no h5 files")
        return [root / name for name in names]
    found = sorted(root.glob(f"ply_data_{split}*.h5"), key=lambda p: [int(d) for d in re.findall(r"\d+", p.stem)] or [0])
    if not found:
        raise DataFileError(list_file, f"missing, and no ply_data_{split}*.h5 files next to it")
    return found


def read_modelnet_h5(root: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one split of ``modelnet40_ply_hdf5_2048`` (PointNet's 2,048-point ModelNet40).

    Files are concatenated in the order of ``<split>_files.txt`` (or, if that
    list is missing, ``ply_data_<split>0.h5``, ``1``, ... in numeric order).

    Args:
        root: the ``modelnet40_ply_hdf5_2048`` folder.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(points, labels, class_names)``: float32 ``[S, P, 3]`` (+Y up, unit
        sphere), int64 ``[S]`` and the names of ``shape_names.txt``.

    Raises:
        ValueError: bad ``split``.
        DataFileError: a list/h5 file is missing, lacks ``data``/``label``,
            has inconsistent shapes, or a label outside the class list.

    Shapes:
        - **points:** ``[S, P, 3]`` with ``P = 2048``.
        - **labels:** ``[S]``.
    """
    _check_split(split)
    root = Path(root)
    class_names = _read_lines(root / "shape_names.txt")
    if not class_names:
        raise DataFileError(root / "shape_names.txt", "lists no class names")
    all_points, all_labels = [], []
    for path in _h5_file_list(root, split):
        if not path.is_file():
            raise DataFileError(path, "file not found (listed in the split's file list)")
        arrays = read_h5_arrays(path, ("data", "label"))
        points, labels = arrays["data"], arrays["label"]
        if points.ndim != 3 or points.shape[2] != 3:
            raise DataFileError(path, f"'data' must have shape [S, P, 3], got {list(points.shape)}")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != points.shape[0]:
            raise DataFileError(path, f"'label' must have shape [{points.shape[0]}, 1] or [{points.shape[0]}], got {list(labels.shape)}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataFileError(path, f"'label' must hold integers, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            span = f"{labels.min()}..{labels.max()}"
            raise DataFileError(path, f"label values span {span}, outside 0..{len(class_names) - 1} of shape_names.txt")
        if not np.isfinite(points).all():
            raise DataFileError(path, "'data' contains NaN or infinite coordinates")
        if all_points and points.shape[1] != all_points[0].shape[1]:
            raise DataFileError(path, f"holds {points.shape[1]} points per shape, earlier files hold {all_points[0].shape[1]}")
        all_points.append(points.astype(np.float32, copy=False))
        all_labels.append(labels.astype(np.int64))
    return np.concatenate(all_points), np.concatenate(all_labels), class_names


def index_normal_resampled(
    root: str | os.PathLike[str], split: str, num_classes: int = 40
) -> list[ShapeRecord]:
    """Index ``modelnet40_normal_resampled`` (PointNet++'s 10,000-point ModelNet with normals).

    Args:
        root: the ``modelnet40_normal_resampled`` folder.
        split: ``"train"`` or ``"test"``.
        num_classes: ``40`` (``modelnet40_*.txt`` lists) or ``10`` (``modelnet10_*.txt``).

    Returns:
        records sorted by (label, shape id); ``path`` is ``<class>/<id>.txt``.
        Labels follow ``modelnet{N}_shape_names.txt``.

    Raises:
        ValueError: bad ``split`` or ``num_classes``.
        DataFileError: a list file is missing, lists an id of an unknown class,
            or lists a shape whose ``.txt`` file is absent.
    """
    _check_split(split)
    if num_classes not in (10, 40):
        raise ValueError(f"num_classes must be 10 or 40, got {num_classes!r}")
    root = Path(root)
    names_file = root / f"modelnet{num_classes}_shape_names.txt"
    names = _read_lines(names_file)
    if len(names) != num_classes:
        raise DataFileError(names_file, f"expected {num_classes} class names, found {len(names)}")
    labels = {name: i for i, name in enumerate(names)}
    list_file = root / f"modelnet{num_classes}_{split}.txt"
    records = []
    for shape_id in _read_lines(list_file):
        # Class names contain underscores (night_stand_0001): cut at the last one only.
        category, _, number = shape_id.rpartition("_")
        if category not in labels or not number.isdigit():
            raise DataFileError(list_file, f"shape id {shape_id!r} does not match '<class>_NNNN' with a class of {names_file.name}")
        path = root / category / f"{shape_id}.txt"
        if not path.is_file():
            raise DataFileError(path, f"file not found (listed in {list_file.name})")
        records.append(ShapeRecord(path=path, label=labels[category], category=category, shape_id=shape_id))
    if not records:
        raise DataFileError(list_file, "lists no shapes")
    records.sort(key=lambda r: (r.label, r.shape_id))
    return records


def read_normal_resampled_txt(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``modelnet40_normal_resampled`` shape: lines ``x,y,z,nx,ny,nz``.

    Args:
        path: the ``<class>_NNNN.txt`` file.

    Returns:
        ``(points, normals)``, both float32 ``[N, 3]`` (N = 10,000 in the release).

    Raises:
        DataFileError: missing file, a line without exactly six numbers, or
            non-finite values.

    Shapes:
        - **points, normals:** ``[N, 3]``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            data = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise DataFileError(path, f"expected lines of six comma-separated numbers x,y,z,nx,ny,nz: {exc}") from None
    if data.shape[0] == 0:
        raise DataFileError(path, "file holds no points")
    if data.shape[1] != 6:
        raise DataFileError(path, f"expected 6 values per line (x,y,z,nx,ny,nz), found {data.shape[1]}")
    if not np.isfinite(data).all():
        raise DataFileError(path, f"line {int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0]) + 1}: non-finite value")
    return np.ascontiguousarray(data[:, :3]), np.ascontiguousarray(data[:, 3:])
