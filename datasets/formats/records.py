"""One indexed sample of a real dataset, as the format readers hand it on.

Indexers (``index_modelnet_off``, ``index_shapenetpart``, ``index_r2n2``,
``index_pix3d``, ...) only look at folder layouts and list files; they return
:class:`ShapeRecord` objects that name every file a sample needs, so that the
readers, the cache builders and the error messages all talk about the same
paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ShapeRecord:
    """Where one sample of a real dataset lives on disk.

    Args:
        path: the primary geometry file: a mesh (``.off``, ``.obj``), a point
            file (``.txt``) or a voxel file (``.binvox``).
        label: category index within the dataset's official class order.
        category: category name (e.g. ``"airplane"``, ``"Chair"``).
        shape_id: identity of the 3D shape, unique within the dataset (e.g.
            ``"airplane_0001"``, ``"02691156/1021a0914a7207aff927ed529ad90a11"``,
            ``"chair/IKEA_JULES_1"``). Several records share one ``shape_id``
            when several photos show the same shape (Pix3D).
        image_path: a photo of the shape (Pix3D), if any.
        mask_path: the object mask of ``image_path``, if any.
        voxel_path: a voxelisation of the shape shipped with the dataset, if any.
        views_dir: a folder of pre-rendered views (3D-R2N2 ``rendering/``), if any.
        bbox: ``(x0, y0, x1, y1)`` pixel box of the object in ``image_path``
            (x1, y1 exclusive), if annotated.
        image_size: ``(width, height)`` of ``image_path`` as annotated, if known.
    """

    path: Path
    label: int
    category: str
    shape_id: str
    image_path: Path | None = None
    mask_path: Path | None = None
    voxel_path: Path | None = None
    views_dir: Path | None = None
    bbox: tuple[int, int, int, int] | None = None
    image_size: tuple[int, int] | None = None


def group_by_shape(records: Iterable[ShapeRecord]) -> dict[str, list[ShapeRecord]]:
    """Group records by :attr:`ShapeRecord.shape_id`, keeping first-seen order.

    Pix3D has many photos per shape; retrieval evaluates against the set of
    distinct shapes, so its gallery is ``list(group_by_shape(records))``.

    Args:
        records: records in any order.

    Returns:
        an insertion-ordered ``{shape_id: [records of that shape]}``.
    """
    groups: dict[str, list[ShapeRecord]] = {}
    for record in records:
        groups.setdefault(record.shape_id, []).append(record)
    return groups
