"""Real datasets: raw files (downloaded, extracted or linked in place) -> processed caches.

Real datasets follow the raw -> processed pattern of torch-geometric datasets.
A dataset ``NAME`` lives in ``<root>/NAME/``:

* ``raw/<raw_name>/``: the extracted archive(s), or instead a text file
  ``raw/<raw_name>.link`` holding the absolute path of a folder the user
  already has (``bench prepare NAME --from FOLDER``: used in place, never
  copied, no symbolic link is created);
* ``downloads/``: archives fetched by :meth:`RealShapeDataset.fetch`
  (resumable; may be deleted once the raw folder exists);
* ``processed/``: the HDF5 caches of the modality groups
  (:class:`~ssl3d.datasets.base.ShapeDataset`).

Where the files come from is declared on the dataset class itself
(torch-geometric style): ``raw_parts``, one :class:`RawPart` per archive with
its URLs, archive name, checksum and layout. A dataset made of several archives
(3D-R2N2: renderings + voxels) extracts each into its own sub-folder of the raw
folder. Every part has a *layout* (glob patterns that must each match at least
one path; a part may accept alternative layouts, ModelNet's OFF meshes or voxel
grids), checked before anything is linked or moved into place, so a wrong folder
or archive is refused with the missing entries named, and with the ``bench
prepare`` command of the dataset whose layout it does match (PointNet's h5
folder given to ``modelnet40`` points to ``modelnet40-h5``).

Datasets that ship point clouds (``point_only``) sample ``points`` from them (FPS + unit sphere,
:func:`~ssl3d.datasets.modalities.points.subsample_points`) and refuse the mesh modalities.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Sequence

import numpy as np

from ssl3d.core.io import atomic_write_text
from ssl3d.datasets import download as dl
from ssl3d.datasets.base import DataConfig, ShapeDataset, ShapeInfo, default_root
from ssl3d.datasets.errors import DataFileError, DatasetNotPreparedError, DatasetRequestError, InputNotFoundError

__all__ = ["MESH_MODALITIES", "RawPart", "RealShapeDataset"]

#: modalities that need a mesh (or renders/voxels shipped with the dataset)
MESH_MODALITIES = frozenset({"voxels", "views", "image", "mask"})


@dataclass(frozen=True)
class RawPart:
    """One archive of a real dataset: where it comes from and where it goes inside the raw folder.

    Args:
        urls: official URLs, tried in order.
        archive: file name of the archive (in ``<root>/<name>/downloads/``).
        extract_dir: folder the archive creates when extracted (``"."``: its members are the dataset folder's content).
        layout: glob patterns, relative to ``folder``, that must each match at least one path when the part is present.
        folder: sub-folder of the dataset's raw folder holding this part
            (``"."``: the raw folder itself, the usual single-archive case).
        sha256: expected SHA-256 of the archive, or ``None`` where none is published (none is; set it to pin yours).
        layout_name: what ``layout`` holds (named in errors when there are alternatives).
        alternatives: other accepted layouts, ``(name, patterns)`` (ModelNet's voxel release);
            :meth:`RealShapeDataset.raw_layout` says which one a folder matches.
    """

    urls: tuple[str, ...]
    archive: str
    extract_dir: str
    layout: tuple[str, ...]
    folder: str = "."
    sha256: str | None = None
    layout_name: str = "default"
    alternatives: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def layouts(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every accepted layout as ``(name, patterns)``, ``layout`` first."""
        return ((self.layout_name, self.layout), *self.alternatives)


def _missing(folder: Path, patterns: Iterable[str]) -> list[str]:
    """The patterns that match nothing under ``folder`` (stops at the first hit of each)."""
    if not folder.is_dir():
        return list(patterns)
    return [p for p in patterns if next(iter(folder.glob(p)), None) is None]


def _part_missing(folder: Path, part: RawPart) -> list[str]:
    """What ``folder`` lacks to hold ``part``: empty when it matches an accepted layout, else with
    alternatives one entry naming every layout (a user may have either release)."""
    if not part.alternatives:
        return _missing(folder, part.layout)
    if any(not _missing(folder, patterns) for _, patterns in part.layouts()):
        return []
    return [" or ".join(f"{', '.join(patterns)} ({name})" for name, patterns in part.layouts())]


class RealShapeDataset(ShapeDataset):
    """Base class of datasets read from downloaded files.

    Subclasses set ``name``, ``raw_parts`` (the archives: URLs, names, checksums, layouts), ``raw_name``
    (the folder under ``<root>/<name>/raw/`` that the extracted archives yield), plus the
    :class:`~ssl3d.datasets.base.ShapeDataset` hooks. Point-cloud formats set ``point_only = True``
    and implement :meth:`load_points`.

    Raises:
        DatasetNotPreparedError: the raw folder is missing or incomplete; the
            message says how to prepare it (download or ``--from PATH``).
        ValueError: a point-only dataset asked for voxels, views or images.
    """

    raw_parts: ClassVar[tuple[RawPart, ...]] = ()
    raw_name: ClassVar[str] = ""
    #: the dataset ships point clouds, not meshes
    point_only: ClassVar[bool] = False
    #: what a point-only dataset's users should use for mesh modalities
    mesh_alternative: ClassVar[str] = "modelnet40 (OFF meshes)"
    #: modalities `bench prepare NAME` builds when --modalities is not given
    prepare_modalities: ClassVar[tuple[str, ...]] = ("points",)
    #: splits `bench prepare NAME` builds when --split is not given (None: all splits)
    prepare_splits: ClassVar[tuple[str, ...] | None] = None

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
        modalities = tuple(dict.fromkeys(modalities))
        self.check_modalities(modalities)
        self._raw = self.check_prepared(root)
        super().__init__(split, modalities, config, root, progress=progress, prepare=prepare)

    # -- raw files -----------------------------------------------------------
    @classmethod
    def raw_root(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """``<root>/<name>/raw``."""
        return (Path(root) if root is not None else default_root()) / cls.name / "raw"

    @classmethod
    def _link_file(cls, root: str | os.PathLike[str] | None) -> Path:
        return cls.raw_root(root) / f"{cls.raw_name}.link"

    @classmethod
    def resolve_raw(cls, root: str | os.PathLike[str] | None = None) -> Path | None:
        """The raw folder: the extracted ``raw/<raw_name>``, else the folder named by its ``.link`` file, else None."""
        extracted = cls.raw_root(root) / cls.raw_name
        if extracted.is_dir():
            return extracted
        link = cls._link_file(root)
        if link.is_file():
            text = link.read_text(encoding="utf-8").strip()
            return Path(text) if text else None
        return None

    @classmethod
    def missing_layout(cls, folder: str | os.PathLike[str]) -> list[str]:
        """Layout entries (``part folder/pattern``) that ``folder`` lacks; empty when complete."""
        folder = Path(folder)
        out = []
        for part in cls.raw_parts:
            sub = folder / part.folder
            out.extend(p if part.folder == "." else f"{part.folder}/{p}" for p in _part_missing(sub, part))
        return out

    @classmethod
    def raw_layout(cls, folder: str | os.PathLike[str]) -> str:
        """Name of the layout ``folder`` matches (first part; ``layout`` first); DataFileError if none."""
        part = cls.raw_parts[0]
        for name, patterns in part.layouts():
            if not _missing(Path(folder) / part.folder, patterns):
                return name
        raise DataFileError(folder, f"does not match the {cls.name} layout: it lacks {', '.join(cls.missing_layout(folder))}")

    @classmethod
    def is_prepared(cls, root: str | os.PathLike[str] | None = None) -> bool:
        """True when the raw folder exists and matches the layout."""
        raw = cls.resolve_raw(root)
        return raw is not None and not cls.missing_layout(raw)

    @classmethod
    def urls(cls) -> list[str]:
        """Download URLs of every part, in order."""
        return [url for part in cls.raw_parts for url in part.urls]

    @classmethod
    def not_prepared_message(cls) -> str:
        """What to run when the raw files are missing."""
        return (
            f"{cls.name} is not prepared: run `bench prepare {cls.name}` (downloads {', '.join(cls.urls())}) "
            f"or, if you have the archive or folder, `bench prepare {cls.name} --from PATH`"
        )

    @classmethod
    def check_prepared(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """The raw folder, or :class:`DatasetNotPreparedError` saying what is missing and how to prepare it."""
        raw = cls.resolve_raw(root)
        if raw is None:
            raise DatasetNotPreparedError(f"{cls.not_prepared_message()} (nothing found in {cls.raw_root(root)})")
        missing = cls.missing_layout(raw)
        if missing:
            where = f"{raw} (linked from {cls._link_file(root)})" if not raw.is_relative_to(cls.raw_root(root)) else str(raw)
            raise DatasetNotPreparedError(f"{cls.not_prepared_message()} ({where} lacks {', '.join(missing)})")
        return raw

    @property
    def raw_dir(self) -> Path:
        """The folder the format readers index (extracted or linked)."""
        return self._raw

    @classmethod
    def fetch(cls, root: str | os.PathLike[str] | None = None,
              from_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, progress: bool = True) -> Path:
        """Put the raw files in place: from local archives/folders, or by downloading.

        * ``from_path`` an archive (zip, tar, tar.gz, tgz, ...): safely
          extracted (:func:`~ssl3d.datasets.download.extract_archive`) and the
          folder matching a part's layout moved into the raw folder;
        * ``from_path`` a folder: checked against the layout and recorded in
          ``raw/<raw_name>.link`` (used in place). The folder itself, its
          ``<raw_name>`` or archive-named child, or its parent (when given one
          part of a multi-part dataset) may match;
        * no ``from_path``: each missing part's URLs are downloaded into
          ``<root>/<name>/downloads/`` (resumable) and extracted.

        Args:
            root: data folder (default ``$SSL3D_DATA`` or ``~/.cache/ssl3d``).
            from_path: one path or several (one archive per part).
            progress: show download progress bars.

        Returns:
            the raw folder.

        Raises:
            FileNotFoundError: a ``from_path`` does not exist.
            DataFileError: a folder or archive does not match the layout (names what is missing,
                and the dataset whose layout it matches instead, if any).
            UnsafeArchiveError: an archive member would land outside the target (nothing is written).
            DatasetNotPreparedError: a download failed (the message says how to use ``--from``),
                or parts are still missing afterwards.
            ValueError: the dataset is already prepared from an extracted archive.
        """
        root = Path(root) if root is not None else default_root()
        single = from_path is None or isinstance(from_path, (str, os.PathLike))
        paths = [Path(p) for p in (([from_path] if from_path is not None else []) if single else from_path)]
        cls.raw_root(root).mkdir(parents=True, exist_ok=True)
        if paths:
            extracted = cls.raw_root(root) / cls.raw_name
            if cls.is_prepared(root) and extracted.is_dir():
                raise DatasetRequestError(
                    f"{cls.name} is already prepared in {extracted}; delete that folder to use --from {', '.join(map(str, paths))}"
                )
            for path in paths:
                path = path.expanduser()
                if path.is_dir():
                    cls._link_folder(root, path)
                elif path.is_file():
                    cls._take_archive(root, path)
                else:
                    raise InputNotFoundError(f"--from {path}: no such file or folder")
        elif not cls.is_prepared(root):
            for part in cls.raw_parts:
                if _part_missing(cls.raw_root(root) / cls.raw_name / part.folder, part):
                    cls._take_archive(root, cls._download(root, part, progress))
        return cls.check_prepared(root)

    @classmethod
    def _own_folder_names(cls) -> list[str]:
        """Names the dataset's folder has when extracted: ``raw_name`` and the archives' top folders."""
        return list(dict.fromkeys([cls.raw_name] + [p.extract_dir for p in cls.raw_parts]))

    @classmethod
    def _folder_match(cls, folder: Path) -> Path | None:
        """The folder holding this dataset: ``folder``, its raw_name/archive-named child or its parent."""
        candidates = dict.fromkeys([folder, *(folder / n for n in cls._own_folder_names() if n != "."), folder.parent])
        return next((c for c in candidates if c.is_dir() and not cls.missing_layout(c)), None)

    @classmethod
    def _link_folder(cls, root: Path, folder: Path) -> None:
        resolved = folder.resolve()
        match = cls._folder_match(resolved)
        if match is None:
            raise DataFileError(
                folder,
                f"does not look like the extracted {cls.name} data: it lacks {', '.join(cls.missing_layout(resolved))}"
                + cls._other_dataset_hint(folder, lambda other: other._folder_match(resolved)),
            )
        extracted = cls.raw_root(root) / cls.raw_name
        if extracted.exists():
            raise DatasetRequestError(f"{extracted} already holds (part of) {cls.name}; delete it to use the folder {match} instead")
        atomic_write_text(cls._link_file(root), f"{match}\n")

    @classmethod
    def _other_dataset_hint(cls, given: Path, match: Callable[[type[RealShapeDataset]], Path | None]) -> str:
        """``. It matches the layout of NAME (...): run `bench prepare NAME --from GIVEN``` for the
        real datasets whose files ``given`` holds instead (empty when none)."""
        from ssl3d.datasets.base import DATASETS  # the registry is filled once every dataset module is imported

        found = []
        for name in DATASETS.names():
            other = DATASETS.get(name)
            if other is cls or not (isinstance(other, type) and issubclass(other, RealShapeDataset)):
                continue
            where = match(other)
            if where is not None:
                found.append((other, where))
        # ModelNet10 and ModelNet40 share a layout: prefer the dataset whose own folder name it is
        found = [(o, w) for o, w in found if w.name in o._own_folder_names()] or found
        if not found:
            return ""
        suggestions = "; ".join(f"{o.name} ({o.raw_name}): run `bench prepare {o.name} --from {given}`" for o, _ in found)
        return f". It matches the layout of {suggestions}"

    @classmethod
    def _take_archive(cls, root: Path, archive: Path) -> None:
        raw_root = cls.raw_root(root)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=raw_root))
        try:
            content = dl.extract_archive(archive, staging / "content")
            found = []
            for part in cls.raw_parts:
                match = cls._archive_match(content, part)
                if match is None:
                    continue
                dest = raw_root / cls.raw_name / part.folder
                if dest.exists() and not _part_missing(dest, part):
                    found.append(part.folder)  # already there; keep the existing copy
                    continue
                if dest.exists():
                    raise DatasetRequestError(f"{dest} exists but is incomplete; delete it and run `bench prepare {cls.name}` again")
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(match, dest)
                found.append(part.folder)
            if not found:
                expected = "; ".join(f"{', '.join(p.layout)}" for p in cls.raw_parts)
                hint = cls._other_dataset_hint(
                    archive, lambda other: next(filter(None, (other._archive_match(content, p) for p in other.raw_parts)), None)
                )
                raise DataFileError(archive, f"holds no {cls.name} data (expected a folder with {expected}){hint}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _archive_match(content: Path, part: RawPart) -> Path | None:
        """The folder of extracted ``content`` that holds ``part``, or None."""
        extract_dir = part.extract_dir
        children = [p for p in content.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
        candidates = [content / part.folder, content / extract_dir, content]
        if len(children) == 1:  # an archive re-packed under another top-level name
            candidates.append(children[0])
        return next((c for c in dict.fromkeys(candidates) if c.is_dir() and not _part_missing(c, part)), None)

    @classmethod
    def _download(cls, root: Path, part: RawPart, progress: bool) -> Path:
        dest = root / cls.name / "downloads" / part.archive
        errors = []
        for url in part.urls:
            try:
                return dl.download(url, dest, sha256=part.sha256, progress=progress)
            except dl.DownloadError as exc:
                errors.append(str(exc))
        raise DatasetNotPreparedError(
            f"{cls.name}: {' '.join(errors)} For this dataset: "
            f"`bench prepare {cls.name} --from /path/to/{part.archive}` (or --from the extracted folder)."
        )

    # -- point-cloud formats ---------------------------------------------------
    @classmethod
    def check_modalities(cls, modalities: Iterable[str]) -> None:
        """Raise ValueError naming what is available when ``modalities`` asks for something this dataset lacks."""
        unknown = [m for m in modalities if m not in cls.available_modalities]
        if cls.point_only and any(m in MESH_MODALITIES for m in unknown):
            raise DatasetRequestError(cls._point_only_message([m for m in unknown if m in MESH_MODALITIES]))
        if unknown:
            raise DatasetRequestError(
                f"{cls.name} cannot provide {', '.join(unknown)}; it provides: {', '.join(sorted(cls.available_modalities))}"
            )

    @classmethod
    def _point_only_message(cls, modalities: Sequence[str]) -> str:
        asked = "/".join(modalities)
        return f"{cls.name} ships point clouds only; voxels/views/image need meshes: use {cls.mesh_alternative} (asked for {asked})"

    def load_points(self, shape: ShapeInfo) -> dict[str, np.ndarray]:
        """Point-only datasets: ``points`` (+ ``normals``, ``point_labels``) of one shape, FPS'd to ``n_points``."""
        raise NotImplementedError(f"{self.name} has no stored point clouds")

    def compute(self, group: str, i: int) -> dict[str, np.ndarray]:
        if self.point_only:
            if group != "points":
                raise DatasetRequestError(self._point_only_message([group]))
            return self.load_points(self.shapes[i])
        return super().compute(group, i)

