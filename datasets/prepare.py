"""``bench prepare NAME``: put a dataset's raw files in place and build its caches, with a report.

The command line only parses flags and calls :func:`prepare_dataset`; the
report (shapes per class, and per modality group: valid/skipped counts, the
voxel fallback count, size and path of the cache) is printed here, one line
per skipped file rather than per modality group.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from ssl3d.core.config import ConfigError, apply_overrides
from ssl3d.datasets.base import DATASETS, ShapeDataset, dataset_summary, default_root
from ssl3d.datasets.real import RealShapeDataset

__all__ = ["prepare_dataset"]


def prepare_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    from_paths: Sequence[str] = (),
    download: bool = True,
    splits: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Fetch (real datasets) and cache every split of ``name``; report each step through ``echo``.

    Args:
        name: a registered dataset.
        root: data folder (default ``$SSL3D_DATA`` or ``~/.cache/ssl3d``).
        from_paths: local archives or extracted folders instead of downloading (real datasets only).
        download: download missing raw files (False: fail with how to prepare them).
        splits: splits to build (default: the dataset's ``prepare_splits``, else all).
        modalities: modalities to cache (default: the dataset's ``prepare_modalities``, else points).
        overrides: dataset settings, ``{"n_points": 2048}`` (a ``data.`` prefix is accepted).
        progress: show progress bars.
        echo: where report lines go (default: stdout, flushed, so lines and progress bars interleave in order).

    Returns:
        ``{cache file: bytes}`` of every cache used.

    Raises:
        ConfigError: ``from_paths`` given for a generated dataset, or a bad setting.
        DatasetNotPreparedError: raw files missing and ``download`` is False, or a download failed.
    """
    t0 = time.perf_counter()
    echo = echo or _print_flushed
    cls = DATASETS.get(name)
    root = Path(root) if root is not None else default_root()
    settings = {k.removeprefix("data."): v for k, v in (overrides or {}).items()}
    config = apply_overrides(cls.Config(), settings, section="data.")
    modalities = list(modalities or getattr(cls, "prepare_modalities", ("points",)))
    if issubclass(cls, RealShapeDataset):
        with _removing_new_empty_folders([root, root / name, root / name / "raw", root / name / "downloads"]):
            _fetch(cls, root, from_paths, download, modalities, progress, echo)
    elif from_paths:
        real = [n for n in DATASETS.names() if issubclass(DATASETS.get(n), RealShapeDataset)]
        raise ConfigError(f"{name} is generated, not downloaded: --from applies to {', '.join(real)}")
    cache_bytes: dict[str, int] = {}  # per file: the Pix3D gallery is shared by both splits
    for split in splits or getattr(cls, "prepare_splits", None) or cls.splits:
        t_split = time.perf_counter()
        ds = cls(split, modalities, config, root, progress=progress)
        cache_bytes.update(_report_split(name, ds, time.perf_counter() - t_split, echo))
        gallery = _gallery_to_build(ds)
        if gallery is not None:
            echo(f"  gallery {gallery.split}: {len(gallery)} shapes")
            cache_bytes.update(_report_groups(gallery, "    ", echo))
    echo(f"{name}: caches {sum(cache_bytes.values()) / 1e6:.1f} MB in {root / name / 'processed'}, "
         f"{time.perf_counter() - t0:.1f} s in all")
    return cache_bytes


def _gallery_to_build(ds: ShapeDataset) -> ShapeDataset | None:
    """The split's separate gallery (optional dataset interface) in the asked modalities it offers, or None."""
    probe = ds.gallery_split(())  # no modalities: nothing is built, only whether a gallery exists
    if probe is None:
        return None
    modalities = [m for m in ds.modalities if m in probe.available_modalities]
    return ds.gallery_split(modalities) if modalities else None


@contextlib.contextmanager
def _removing_new_empty_folders(folders: Sequence[Path]) -> Iterator[None]:
    """On an exception, remove those of ``folders`` that did not exist before and are still empty.

    A failed fetch (offline download, damaged archive) then leaves no empty ``downloads/`` or
    ``raw/`` behind; a kept partial download or anything else that was there stays.
    """
    new = [f for f in folders if not f.exists()]
    try:
        yield
    except BaseException:
        for folder in sorted(new, key=lambda f: len(f.parts), reverse=True):  # the deepest first
            with contextlib.suppress(OSError):  # not empty (or gone): kept
                folder.rmdir()
        raise


def _fetch(cls: type[RealShapeDataset], root: Path, from_paths: Sequence[str], download: bool, modalities: Sequence[str],
           progress: bool, echo: Callable[[str], None]) -> None:
    """Raw files in place: from ``from_paths``, already there, or downloaded."""
    cls.check_modalities(modalities)  # before any download
    if from_paths:
        raw = cls.fetch(root, list(from_paths), progress=progress)
        echo(f"{cls.name}: raw files in {raw} (from {', '.join(from_paths)})")
    elif cls.is_prepared(root):
        echo(f"{cls.name}: raw files in {cls.check_prepared(root)}")
    elif not download or not getattr(cls, "auto_download", True):  # distributed on request: never fetched unasked
        cls.check_prepared(root)  # raises DatasetNotPreparedError with how to prepare
    else:
        echo(f"{cls.name}: downloading {', '.join(cls.urls())} into {root / cls.name / 'downloads'}")
        echo(f"{cls.name}: raw files in {cls.fetch(root, None, progress=progress)}")


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def _report_split(name: str, ds: ShapeDataset, seconds: float, echo: Callable[[str], None]) -> dict[str, int]:
    """Items per class and per-group cache facts of one prepared split; returns {cache file: bytes}."""
    summary = dataset_summary(ds)
    n_indexed = len(ds.shapes)
    skipped = f", {n_indexed - summary['shapes']} skipped" if n_indexed != summary["shapes"] else ""
    echo(f"{name}/{ds.split}: {summary['shapes']} {ds.item_noun}{skipped} in {seconds:.1f} s")
    present = {c: n for c, n in summary["per_class"].items() if n}
    empty = len(summary["per_class"]) - len(present)
    echo("  per class: " + ", ".join(f"{c} {n}" for c, n in present.items())
         + (f" ({empty} classes without shapes)" if empty else ""))
    return _report_groups(ds, "  ", echo)


def _report_groups(ds: ShapeDataset, indent: str, echo: Callable[[str], None]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    skipped: dict[str, tuple[list[str], str]] = {}
    for group, report in ds.reports.items():
        sizes[report.path] = report.size_bytes
        extra = ""
        if group == "voxels":
            fallback = voxel_fallback_count(report.path)
            extra = f", voxel fallback {fallback}" if fallback is not None else ""
        built = f"built {report.n_built} in {report.seconds:.1f} s" if report.n_built else "cached"
        echo(f"{indent}{group}: {report.n_valid}/{report.n_items} valid, skipped {len(report.skipped)}{extra}, "
             f"{report.size_bytes / 1e6:.1f} MB, {built} -> {report.path}")
        for shape, reason in report.skipped.items():
            skipped.setdefault(shape, ([], reason))[0].append(group)
    for shape, (groups, reason) in skipped.items():  # one line per file, not per modality group
        echo(f"{indent}skipped {shape} ({', '.join(groups)}): {reason}")
    return sizes


def voxel_fallback_count(cache_path: str | os.PathLike[str]) -> int | None:
    """How many valid shapes of a ``voxels`` cache used the flood-fill fallback (None: not recorded)."""
    with h5py.File(cache_path, "r") as h5:
        if "voxel_fallback" not in h5:
            return None
        valid = h5["valid"][()].astype(bool)
        return int(np.asarray(h5["voxel_fallback"][()], dtype=bool)[valid].sum())
