"""``bench perf``: pretraining and feature-extraction throughput, peak memory, data-pipeline speed.

Each (method, preset) is measured in its own subprocess so that its peak memory
(CPU: the child's maximum resident set size; CUDA: ``max_memory_allocated``)
is its own. Batches are random tensors shaped like the data contract under the
method's own data settings, so the numbers measure the networks and the
optimiser, not disk I/O. The data pipeline is measured separately on synth
meshes (shapes/s per modality group, one process).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl3d.core.io import atomic_write_text


def measure_method(name: str, preset: str, device: str, steps: int, batch_size: int | None) -> dict[str, Any]:
    """Throughput and peak memory of one (method, preset) in this process."""
    from ssl3d.methods import get_method
    from ssl3d.methods.testing import fake_batch

    torch.manual_seed(0)
    dev = torch.device(device)
    method = get_method(name).from_preset(preset)
    bs = batch_size or method.config.train.batch_size
    method.model = model = method.build_model().to(dev)
    batch = fake_batch(method, bs, device=device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    row: dict[str, Any] = {"method": name, "preset": preset, "device": device, "batch_size": bs}
    if method.pretrains:
        optimizer = method.configure_optimizer(model)
        model.train()

        def step(i: int) -> None:
            loss = method.training_step(batch, i)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step(0)  # warm-up (allocations, cudnn autotune)
        _sync(dev)
        t = time.perf_counter()
        for i in range(steps):
            step(i + 1)
        _sync(dev)
        row["pretrain_samples_per_s"] = round(steps * bs / (time.perf_counter() - t), 3)
    for modality in sorted(method.embed_modalities):
        method.embed(batch, modality)
        _sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            method.embed(batch, modality)
        _sync(dev)
        row[f"embed_{modality}_samples_per_s"] = round(steps * bs / (time.perf_counter() - t), 3)
    if dev.type == "cuda":
        row["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    else:
        row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_data_pipeline(n_shapes: int = 8) -> list[dict[str, Any]]:
    """Shapes/s of each modality group on synth meshes (one process)."""
    from ssl3d.datasets.base import DataConfig
    from ssl3d.datasets.modalities.registry import MODALITY_GROUPS, MeshShape
    from ssl3d.datasets.synth.shapes import CATEGORIES, generate_shape

    cfg = DataConfig()
    meshes = [generate_shape(CATEGORIES[i % len(CATEGORIES)], np.random.default_rng(i)) for i in range(n_shapes)]
    rows = []
    for group in ("points", "voxels", "views", "image"):
        build = MODALITY_GROUPS.get(group).build
        t = time.perf_counter()
        for i, (mesh, part) in enumerate(meshes):
            build(MeshShape(mesh, part, f"shape {i}"), cfg, np.random.default_rng(i))
        rows.append({"modality": group, "shapes_per_s": round(n_shapes / (time.perf_counter() - t), 2),
                     "settings": {"points": f"N={cfg.n_points}", "voxels": f"R={cfg.voxel_resolution}",
                                  "views": f"{cfg.view_rig} {cfg.view_size}px", "image": f"{cfg.image_size}px"}[group]})
    return rows


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_perf(methods: str = "*", presets: tuple[str, ...] = ("quick", "paper"), device: str = "cpu", steps: int = 3,
             batch_size: int | None = None, out_dir: str | os.PathLike[str] = "results/local/perf",
             data: bool = True) -> Path:
    """Measure every matching (method, preset) in a subprocess; write a CSV + markdown table."""
    from ssl3d.methods import list_methods

    rows = []
    for name in list_methods(methods):
        for preset in presets:
            cmd = [sys.executable, "-m", "ssl3d.bench.run.perf", name, preset, device, str(steps), str(batch_size or 0)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                rows.append({"method": name, "preset": preset, "device": device, "error": out.stderr.strip()[-300:]})
            else:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(_format_row(rows[-1]), flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = Path(out_dir)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("method", "preset", "device", "batch_size"), k))
    atomic_write_text(out / f"perf-{stamp}.csv", _to_csv(rows, keys))
    lines = [f"# bench perf {stamp}", "", f"machine: `{json.dumps(machine())}`", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    if data:
        pipeline = measure_data_pipeline()
        lines += ["", "Data pipeline (synth meshes, one process):", "", "| modality | settings | shapes/s |",
                  "|---|---|---|"] + [f"| {r['modality']} | {r['settings']} | {r['shapes_per_s']} |" for r in pipeline]
    path = out / f"perf-{stamp}.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines[-8:] if data else []))
    print(f"written: {path} and {path.with_suffix('.csv')}")
    return path


def _format_row(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in row.items())


def _to_csv(rows: list[dict[str, Any]], keys: list[str]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


if __name__ == "__main__":  # one measurement, in its own process (called by run_perf)
    _name, _preset, _device, _steps, _bs = sys.argv[1:6]
    print(json.dumps(measure_method(_name, _preset, _device, int(_steps), int(_bs) or None)))
