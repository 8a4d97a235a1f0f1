"""Pix3D (``pix3d.zip``): real photos aligned with IKEA-style furniture models.

Layout (the zip extracts these straight into the dataset folder)::

    pix3d.json                  list of one dict per photo (keys below)
    img/<category>/<n>.jpg|png  the photos
    mask/<category>/<n>.png     object masks (0 / 255)
    model/<category>/<name>/model.obj, voxel.mat, 3d_keypoints.txt

Each ``pix3d.json`` entry has ``img``, ``category``, ``img_size`` ([width,
height]), ``2d_keypoints``, ``mask``, ``img_source``, ``model``, ``model_raw``,
``3d_keypoints``, ``voxel``, ``rot_mat``, ``trans_mat``, ``focal_length``,
``cam_position``, ``inplane_rotation``, ``truncated``, ``occluded``,
``slightly_occluded`` and ``bbox`` ([x_min, y_min, x_max, y_max] in pixels).
Models are +Y up (Pix3D README: "+x leftward, +y upward, +z inward").

Nine categories (:data:`PIX3D_CATEGORIES`; counts: STATS of :mod:`ssl3d.datasets.pix3d`).
The CMIC protocol (Lin et al., ICCV 2021, Section 4 "Datasets", following
LFD [15] and HEG-TS [12]) keeps the categories with more than 300
non-occluded, non-truncated photos, i.e. bed, chair, sofa, table
(:data:`CMIC_CATEGORIES`): 5,118 photos of 322 shapes, 2,648 for training and
2,470 for evaluation; photos are split, shapes are shared by both splits (the
retrieval gallery is every shape). :func:`index_pix3d` applies that filter.

The paper's image lists (``pix3d_train.json`` / ``pix3d_test.json`` in the
authors' code) are not published. Pass them as ``split_file`` if you have
them; otherwise the split is reproduced in kind, not image for image: within
each category the photos are ordered by SHA-256 of ``"<seed>:<img path>"``
and the first ones go to training, with per-category quotas (largest
remainder) so that the training share is 2,648 / 5,118 overall, i.e. exactly
2,648 / 2,470 on the full filtered set. The paper uses OCRNet-predicted masks;
this reader returns Pix3D's ground-truth masks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, UnidentifiedImageError

from ssl3d.datasets.errors import DataFileError
from ssl3d.datasets.formats.records import ShapeRecord

__all__ = [
    "PIX3D_CATEGORIES",
    "CMIC_CATEGORIES",
    "CMIC_TRAIN_FRACTION",
    "index_pix3d",
    "read_pix3d_photo",
    "read_obj",
]

PIX3D_CATEGORIES: tuple[str, ...] = ("bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe")
#: The categories CMIC evaluates on (> 300 non-occluded, non-truncated photos).
CMIC_CATEGORIES: tuple[str, ...] = ("bed", "chair", "sofa", "table")
#: CMIC's training share of the filtered photos: 2,648 of 5,118.
CMIC_TRAIN_FRACTION = 2648 / 5118

_REQUIRED = ("img", "category", "img_size", "mask", "model", "bbox", "truncated", "occluded")


def _load_annotations(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(path, "file not found (is root the extracted pix3d folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(path, f"not a readable JSON file: {exc}") from None
    if not isinstance(entries, list):
        raise DataFileError(path, "expected a JSON list of per-photo annotations")
    for number, entry in enumerate(entries):
        missing = [k for k in _REQUIRED if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DataFileError(path, f"entry {number} lacks {', '.join(missing)}")
    return entries


def _split_file_images(path: Path) -> set[str]:
    """Image paths named by a split file: a JSON list of entries with 'img' (or of
    path strings), or a text file with one image path a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read split file: {exc}") from None
    if path.suffix.lower() != ".json":
        return {line.strip() for line in text.splitlines() if line.strip()}
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise DataFileError(path, "expected a JSON list")
    images = set()
    for number, item in enumerate(items):
        name = item.get("img") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise DataFileError(path, f"entry {number} names no image ('img' key or a path string)")
        images.add(name)
    return images


def _train_quotas(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Per-category training counts summing to round(total * fraction) (largest remainder)."""
    exact = {c: n * fraction for c, n in sizes.items()}
    quota = {c: int(np.floor(x)) for c, x in exact.items()}
    left = int(round(sum(sizes.values()) * fraction)) - sum(quota.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), c))[:left]:
        quota[c] += 1
    return quota


def _hash_order(seed: int, image: str) -> str:
    return hashlib.sha256(f"{seed}:{image}".encode()).hexdigest()


def index_pix3d(
    root: str | os.PathLike[str],
    categories: Sequence[str] | None = None,
    drop_occluded: bool = True,
    drop_truncated: bool = True,
    *,
    drop_slightly_occluded: bool = True,
    split: str = "all",
    split_file: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> list[ShapeRecord]:
    """Index Pix3D photos, grouped by shape (CMIC protocol by default).

    Args:
        root: the extracted Pix3D folder (holds ``pix3d.json``).
        categories: categories to keep, labelled in the given order; ``None``
            means :data:`CMIC_CATEGORIES`. Pass :data:`PIX3D_CATEGORIES` for all 9.
        drop_occluded: drop photos annotated ``occluded``.
        drop_truncated: drop photos annotated ``truncated``.
        drop_slightly_occluded: drop photos annotated ``slightly_occluded``
            (the paper's "non-occluded" does not say; the common Pix3D
            evaluation filter drops them).
        split: ``"all"``, ``"train"`` or ``"test"``.
        split_file: the image list of the requested split (JSON list of
            entries with ``img``, or text with one image path a line); without
            it the documented hash split is used.
        seed: changes the hash split (ignored with ``split_file``).

    Returns:
        records sorted by (label, shape id, image): photos of one shape are
        adjacent and share ``shape_id`` (``"<category>/<model folder>"``);
        ``path`` is the ``.obj``, plus ``image_path``, ``mask_path``,
        ``voxel_path``, ``bbox``, ``image_size``.

    Raises:
        ValueError: unknown category or split.
        DataFileError: ``pix3d.json`` missing or malformed, a kept entry whose
            image/mask/model file is absent, a bad bounding box, or a split
            file naming a photo that is not in ``pix3d.json``.
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    categories = tuple(CMIC_CATEGORIES if categories is None else categories)
    unknown = [c for c in categories if c not in PIX3D_CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"categories must be a non-empty subset of {PIX3D_CATEGORIES}, got {list(categories)}")
    root = Path(root)
    json_path = root / "pix3d.json"
    entries = _load_annotations(json_path)
    labels = {c: i for i, c in enumerate(categories)}

    kept = [
        e for e in entries
        if e["category"] in labels
        and not (drop_truncated and e["truncated"])
        and not (drop_occluded and e["occluded"])
        and not (drop_slightly_occluded and e.get("slightly_occluded", False))
    ]  # fmt: skip
    if split != "all":
        if split_file is not None:
            listed = _split_file_images(Path(split_file))
            unknown_images = listed - {e["img"] for e in entries}
            if unknown_images:
                example = sorted(unknown_images)[0]
                raise DataFileError(Path(split_file), f"names {len(unknown_images)} photo(s) not in pix3d.json, e.g. {example!r}")
            kept = [e for e in kept if e["img"] in listed]
        else:
            by_category: dict[str, list[dict]] = {}
            for e in kept:
                by_category.setdefault(e["category"], []).append(e)
            quotas = _train_quotas({c: len(v) for c, v in by_category.items()}, CMIC_TRAIN_FRACTION)
            chosen = []
            for c, group in by_category.items():
                group = sorted(group, key=lambda e: _hash_order(seed, e["img"]))
                chosen.extend(group[: quotas[c]] if split == "train" else group[quotas[c] :])
            kept = chosen

    records = []
    for e in kept:
        image, mask, model = root / e["img"], root / e["mask"], root / e["model"]
        for file, what in ((image, "photo"), (mask, "mask"), (model, "model")):
            if not file.is_file():
                raise DataFileError(file, f"{what} of {e['img']} not found")
        width, height = (int(v) for v in e["img_size"])
        x0, y0, x1, y1 = (int(round(float(v))) for v in e["bbox"])
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise DataFileError(json_path, f"entry {e['img']}: bbox {e['bbox']} outside the {width}x{height} image")
        voxel = root / e["voxel"] if e.get("voxel") else None
        records.append(
            ShapeRecord(
                path=model,
                label=labels[e["category"]],
                category=e["category"],
                shape_id=f"{e['category']}/{Path(e['model']).parent.name}",
                image_path=image,
                mask_path=mask,
                voxel_path=voxel,
                bbox=(x0, y0, x1, y1),
                image_size=(width, height),
            )
        )
    records.sort(key=lambda r: (r.label, r.shape_id, str(r.image_path)))
    return records


def _open_image(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataFileError(path, f"not a readable image (truncated or corrupt?): {exc}") from None


def read_pix3d_photo(
    record: ShapeRecord, size: int = 224, margin: float = 0.1, fill: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a Pix3D photo and its mask to the object, square, and resize.

    The crop is the square of side ``max(w, h) * (1 + 2 * margin)`` centred on
    the bounding box (w, h its size); parts of it outside the photo are
    filled with ``fill`` (image) and background (mask).

    Args:
        record: a record from :func:`index_pix3d`.
        size: output side length in pixels.
        margin: extra border on each side, as a fraction of the longer box side.
        fill: grey level for the image outside the photo.

    Returns:
        ``(image, mask)``: uint8 ``[size, size, 3]`` and bool ``[size, size]``.

    Raises:
        ValueError: bad ``size``/``margin``/``fill`` or a record without photo, mask or bbox.
        DataFileError: unreadable photo/mask, or a size different from the annotation.

    Shapes:
        - **image:** ``[size, size, 3]``; **mask:** ``[size, size]``.
    """
    if size <= 0 or margin < 0 or not 0 <= fill <= 255:
        raise ValueError(f"need size > 0, margin >= 0 and 0 <= fill <= 255, got {size}, {margin}, {fill}")
    if record.image_path is None or record.mask_path is None or record.bbox is None:
        raise ValueError(f"record {record.shape_id!r} has no photo, mask or bbox (not a Pix3D record?)")
    image = _open_image(Path(record.image_path), "RGB")
    mask = _open_image(Path(record.mask_path), "L")
    if record.image_size is not None and image.size != tuple(record.image_size):
        (w, h), (aw, ah) = image.size, record.image_size
        raise DataFileError(record.image_path, f"image is {w}x{h}, pix3d.json says {aw}x{ah}")
    if mask.size != image.size:
        raise DataFileError(record.mask_path, f"mask is {mask.size[0]}x{mask.size[1]}, its photo {image.size[0]}x{image.size[1]}")

    x0, y0, x1, y1 = record.bbox
    side = max(1, int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))))
    left = int(round((x0 + x1 - side) / 2))
    top = int(round((y0 + y1 - side) / 2))
    canvas = Image.new("RGB", (side, side), (fill, fill, fill))
    mask_canvas = Image.new("L", (side, side), 0)
    # Paste the part of the photo that falls inside the square crop.
    box = (max(left, 0), max(top, 0), min(left + side, image.size[0]), min(top + side, image.size[1]))
    if box[0] < box[2] and box[1] < box[3]:
        canvas.paste(image.crop(box), (box[0] - left, box[1] - top))
        mask_canvas.paste(mask.crop(box), (box[0] - left, box[1] - top))
    if side != size:
        canvas = canvas.resize((size, size), Image.BILINEAR)
        mask_canvas = mask_canvas.resize((size, size), Image.BILINEAR)
    return np.asarray(canvas), np.asarray(mask_canvas) >= 128


def read_obj(path: str | os.PathLike[str]) -> trimesh.Trimesh:
    """Read the geometry of a Wavefront OBJ file (``v`` and ``f`` lines).

    Faces may use ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` and negative
    (relative) indices; polygons are fan-triangulated. Texture coordinates,
    normals, groups and materials are ignored.

    Args:
        path: the ``.obj`` file.

    Returns:
        a :class:`trimesh.Trimesh` (``process=False``) with the file's vertices.

    Raises:
        DataFileError: missing file, no vertices or faces, a non-numeric
            vertex, a face with fewer than 3 corners, or an index out of range.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    vertices: list[list[str]] = []
    triangles: list[tuple[int, int, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        if tokens[0] == "v":
            if len(tokens) < 4:
                raise DataFileError(path, f"line {number}: a vertex needs x y z, got {line.strip()!r}")
            vertices.append(tokens[1:4])
        elif tokens[0] == "f":
            if len(tokens) < 4:
                raise DataFileError(path, f"line {number}: a face needs at least 3 vertices, got {line.strip()!r}")
            corners = []
            for token in tokens[1:]:
                try:
                    index = int(token.split("/", 1)[0])
                except ValueError:
                    raise DataFileError(path, f"line {number}: face vertex {token!r} is not an index") from None
                # OBJ indices are 1-based; negative ones count back from the last vertex so far.
                resolved = index - 1 if index > 0 else len(vertices) + index
                if index == 0 or resolved < 0 or resolved >= len(vertices):
                    raise DataFileError(path, f"line {number}: vertex index {index} out of range ({len(vertices)} vertices defined so far)")
                corners.append(resolved)
            triangles.extend((corners[0], corners[j], corners[j + 1]) for j in range(1, len(corners) - 1))
    if not vertices:
        raise DataFileError(path, "no vertices ('v' lines)")
    if not triangles:
        raise DataFileError(path, "no faces ('f' lines)")
    try:
        array = np.array(vertices, dtype=np.float64)
    except ValueError:
        raise DataFileError(path, "a vertex coordinate is not a number") from None
    if not np.isfinite(array).all():
        raise DataFileError(path, "a vertex coordinate is not finite")
    return trimesh.Trimesh(vertices=array, faces=np.array(triangles, dtype=np.int64), process=False)
