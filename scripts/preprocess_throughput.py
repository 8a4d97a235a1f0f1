"""Preprocessing throughput: shapes/s for points + voxels + views on ModelNet-sized meshes.

Not a test. Builds meshes of 5k-100k faces (synth shapes subdivided until they
reach a face budget, so they have parts, thin structures and open seams like
real CAD meshes), then measures:

1. the per-modality cost in one process (seconds per shape, by face count);
2. the end-to-end cache build with N worker processes for
   points(2048) + voxels(32) + views(ring12, 137 px), as ``bench prepare`` runs it.

Usage::

    python scripts/preprocess_throughput.py --shapes 24 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace

import numpy as np
import trimesh

from ssl3d.datasets.base import DataConfig, ShapeDataset, ShapeInfo
from ssl3d.datasets.formats.off import read_off
from ssl3d.datasets.modalities.cameras import camera_rig
from ssl3d.datasets.modalities.points import sample_mesh_points
from ssl3d.datasets.modalities.render import render_views
from ssl3d.datasets.modalities.voxelize import voxelize
from ssl3d.datasets.synth.shapes import CATEGORIES, generate_shape

FACE_BUDGETS = (5_000, 20_000, 50_000, 100_000)


def dense_mesh(index: int, faces: int) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A synth shape subdivided to the face count closest to ``faces`` (labels follow the faces).

    Each subdivision multiplies the face count by 4, so the result is within a factor 2 of the budget;
    "closest" is on a log scale, so a 5k budget does not become a 12k mesh (that would overstate the cost).
    """
    category = CATEGORIES[index % len(CATEGORIES)]
    mesh, part = generate_shape(category, np.random.default_rng(index))
    while abs(np.log(4 * len(mesh.faces) / faces)) < abs(np.log(len(mesh.faces) / faces)):
        # subdivide() splits every face into 4 children stored in order, so labels repeat 4x
        mesh = mesh.subdivide()
        part = np.repeat(part, 4)
    return mesh, part


class BenchMeshes(ShapeDataset):
    """An unregistered dataset over OFF files written from :func:`dense_mesh`, loaded with the real
    OFF reader, to time the real cache builder as it runs on ModelNet."""

    name = "bench-meshes"

    def __init__(self, off_dir: str, n_shapes: int, *args, **kwargs) -> None:
        self.off_dir = off_dir
        self.n_shapes = n_shapes
        super().__init__(*args, **kwargs)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(CATEGORIES)

    def index(self, split: str) -> list[ShapeInfo]:
        return [ShapeInfo(f"mesh_{i}", i % len(CATEGORIES), (i, FACE_BUDGETS[i % len(FACE_BUDGETS)]))
                for i in range(self.n_shapes)]

    def load_mesh(self, shape: ShapeInfo):
        index, _ = shape.source
        mesh = read_off(os.path.join(self.off_dir, f"{index}.off"))
        return mesh, np.load(os.path.join(self.off_dir, f"{index}.npy"))


def per_modality(repeats: int) -> None:
    print("per-modality cost, one process (seconds per shape):")
    print(f"{'faces':>8} {'points(2048)':>13} {'voxels(32)':>11} {'views(12x137)':>14}")
    cams = camera_rig("ring12")
    for budget in FACE_BUDGETS:
        times = np.zeros(3)
        n_faces = 0
        for r in range(repeats):
            mesh, part = dense_mesh(r, budget)
            n_faces += len(mesh.faces)
            rng = np.random.default_rng(r)
            t = time.perf_counter()
            sample_mesh_points(mesh, 2048, rng, face_part=part)
            times[0] += time.perf_counter() - t
            t = time.perf_counter()
            voxelize(mesh, 32)
            times[1] += time.perf_counter() - t
            t = time.perf_counter()
            render_views(mesh, cams, 137, "grey")
            times[2] += time.perf_counter() - t
        t_avg = times / repeats
        print(f"{n_faces // repeats:>8} {t_avg[0]:>13.3f} {t_avg[1]:>11.3f} {t_avg[2]:>14.3f}")


def end_to_end(n_shapes: int, workers: int) -> float:
    cfg = replace(DataConfig(), n_points=2048, voxel_resolution=32, view_rig="ring12", view_size=137, workers=workers)
    with tempfile.TemporaryDirectory() as root:
        off_dir = os.path.join(root, "off")
        os.makedirs(off_dir)
        for i in range(n_shapes):  # OFF files on disk, as in the ModelNet archive
            mesh, part = dense_mesh(i, FACE_BUDGETS[i % len(FACE_BUDGETS)])
            mesh.export(os.path.join(off_dir, f"{i}.off"))
            np.save(os.path.join(off_dir, f"{i}.npy"), part)
        faces = [len(dense_mesh(i, FACE_BUDGETS[i % len(FACE_BUDGETS)])[0].faces) for i in range(len(FACE_BUDGETS))]
        t = time.perf_counter()
        ds = BenchMeshes(off_dir, n_shapes, "train", ("points", "voxels", "views"), cfg, root, progress=True)
        elapsed = time.perf_counter() - t
    rate = n_shapes / elapsed
    print(f"end to end (OFF parsing + points + voxels + views, one pass per shape): {n_shapes} shapes "
          f"(face budgets {FACE_BUDGETS}, e.g. {faces} faces), {workers} workers: {elapsed:.1f}s = {rate:.2f} shapes/s")
    print(f"  ModelNet40 (12,311 meshes) at this rate: {12311 / rate / 60:.1f} min")
    del ds
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=24, help="shapes in the end-to-end build")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeats", type=int, default=2, help="shapes per face budget in the per-modality table")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    per_modality(args.repeats)
    end_to_end(args.shapes, args.workers)


if __name__ == "__main__":
    main()
