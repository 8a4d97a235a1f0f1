"""Preparing ModelNet from a voxel release: per-modality cost and the end-to-end `bench prepare` time.

Not a test. Needs a voxel release folder (``<class>/{train,test}/<class>_NNNN.binvox``,
e.g. ``../shared/data/modelnet10_binvox32``). Measures:

1. the per-shape cost of each step in one process, on every ``--stride``-th shape:
   reading + rotating the grid, extracting the surface, points (2048), voxels
   (the file's grid), views (ring12, 137 px) and the photo-like image (224 px);
2. ``bench prepare`` of every shape of both splits with those modalities and
   ``--workers`` processes, into a scratch data root (deleted afterwards unless ``--keep``).

Usage::

    python scripts/modelnet_voxels_throughput.py ../shared/data/modelnet10_binvox32 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ssl3d.datasets.base import DataConfig
from ssl3d.datasets.formats.binvox import read_binvox
from ssl3d.datasets.formats.modelnet import z_up_to_y_up_grid
from ssl3d.datasets.modalities import builtin
from ssl3d.datasets.modalities.registry import MeshShape
from ssl3d.datasets.modalities.surface import occupancy_surface
from ssl3d.datasets.prepare import prepare_dataset

MODALITIES = ("points", "voxels", "views", "image")
SETTINGS = {"n_points": 2048, "voxel_resolution": 32, "view_rig": "ring12", "view_size": 137, "image_size": 224}


def per_modality(folder: Path, stride: int) -> None:
    cfg = replace(DataConfig(), **SETTINGS)
    builders = {"points": builtin.build_points, "voxels": builtin.build_voxels, "views": builtin.build_views,
                "image": builtin.build_image}
    seconds = dict.fromkeys(["read", "surface", *builders], 0.0)
    faces, n = [], 0
    for path in sorted(folder.glob("*/*/*.binvox"))[::stride]:
        t = time.perf_counter()
        grid = read_binvox(path, allow_empty_runs=True)
        if not grid.any():
            continue  # empty grids are skipped by the dataset before any work
        grid = z_up_to_y_up_grid(grid)
        seconds["read"] += time.perf_counter() - t
        t = time.perf_counter()
        mesh = occupancy_surface(grid)
        seconds["surface"] += time.perf_counter() - t
        faces.append(len(mesh.faces))
        shape = MeshShape(mesh, None, path.stem, 0.0, grid)
        for name, build in builders.items():
            t = time.perf_counter()
            build(shape, cfg, np.random.default_rng(n))
            seconds[name] += time.perf_counter() - t
        n += 1
    print(f"per-shape cost, one process, {n} shapes (surface faces: median {int(np.median(faces))}, max {max(faces)}):")
    for name, total in seconds.items():
        print(f"  {name:>8}: {1000 * total / n:7.1f} ms")
    print(f"  {'total':>8}: {1000 * sum(seconds.values()) / n:7.1f} ms")


def end_to_end(folder: Path, name: str, workers: int, keep: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="modelnet-voxels-"))
    try:
        t = time.perf_counter()
        prepare_dataset(name, root=root, from_paths=[str(folder)], modalities=MODALITIES,
                        overrides={**SETTINGS, "workers": workers}, progress=False)
        elapsed = time.perf_counter() - t
        print(f"end to end: bench prepare {name} ({', '.join(MODALITIES)}), {workers} workers: "
              f"{elapsed:.0f} s = {elapsed / 60:.1f} min")
    finally:
        if keep:
            print(f"caches kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the voxel release folder")
    parser.add_argument("--dataset", default="modelnet10", help="modelnet10 or modelnet40")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (data.workers)")
    parser.add_argument("--stride", type=int, default=50, help="every stride-th shape in the per-step table")
    parser.add_argument("--skip-end-to-end", action="store_true", help="only the per-step table")
    parser.add_argument("--keep", action="store_true", help="keep the scratch caches")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    per_modality(args.folder, args.stride)
    if not args.skip_end_to_end:
        end_to_end(args.folder, args.dataset, args.workers, args.keep)


if __name__ == "__main__":
    main()
