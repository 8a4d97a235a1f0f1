"""Throughput of the scene pipeline: block cutting (blocks/s) and DGCNN segmentation training (blocks/s).

Two measurements, each on this machine's CPU threads (``--threads``):

* **block cutting**: rooms of ``synth-scenes`` generated at ``--density``
  points per square metre; the timer covers cutting every room into
  training blocks (:func:`~ssl3d.datasets.scene_blocks.training_blocks`) or
  evaluation blocks (:func:`~ssl3d.datasets.scene_blocks.evaluation_blocks`)
  *and* building each block's 9-channel input
  (:func:`~ssl3d.datasets.scene_blocks.block_input`); generation is not timed;
* **segmentation training**: the ``parae-dgcnn`` encoder (``--preset``,
  9 input channels) + the semseg head, one Adam step of forward + backward +
  update on random ``[B, P, 9]`` blocks; ``--warmup`` untimed steps, then
  ``--iters`` timed ones; blocks/s = ``B * iters / wall time``; and the same
  network's prediction (eval mode, no grad).

Usage::

    python scripts/scene_throughput.py --points 128 --batch-size 8 --threads 2
    python scripts/scene_throughput.py --points 4096 --batch-size 4 --density 600 --iters 2   # S3DIS-sized

Prints one JSON object (machine facts, settings, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from ssl3d.bench.protocols.semseg_train import SceneHead
from ssl3d.datasets.scene_blocks import block_input, evaluation_blocks, training_blocks
from ssl3d.datasets.synth_scenes.rooms import generate_room
from ssl3d.methods import METHODS


def cutting(rooms: list[np.ndarray], points: int, evaluation: bool) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    n = 0
    for room in rooms:
        xyz, rgb = room[:, :3], room[:, 3:6]
        cut = evaluation_blocks(xyz, 1.0, 1.0, points, rng) if evaluation else training_blocks(xyz, 1.0, 1.0, points, rng)
        for block in cut:
            block_input(xyz, rgb, block)
        n += len(cut)
    seconds = time.perf_counter() - t0
    return {"blocks": n, "seconds": round(seconds, 3), "blocks_per_s": round(n / seconds, 1)}


def training(preset: str, points: int, batch: int, warmup: int, iters: int) -> dict:
    torch.manual_seed(0)
    method = METHODS.get("parae-dgcnn").from_preset(preset, {"in_channels": "9"})
    encoder = method.build_model().encoder
    head = SceneHead(encoder.point_dim, 13, linear=False)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(batch, points, 9)
    y = torch.randint(0, 13, (batch, points))

    def step() -> None:
        logits = head(encoder(x).point_features)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 13), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    encoder.train(), head.train()
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    train_s = time.perf_counter() - t0
    encoder.eval(), head.eval()
    with torch.no_grad():
        head(encoder(x).point_features)
        t0 = time.perf_counter()
        for _ in range(iters):
            head(encoder(x).point_features)
        eval_s = time.perf_counter() - t0
    return {"preset": preset, "k": method.config.k, "train_blocks_per_s": round(batch * iters / train_s, 2),
            "predict_blocks_per_s": round(batch * iters / eval_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=128, help="points per block (synth-scenes 128, S3DIS 4096)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--density", type=float, default=60.0, help="room surface points per m^2 (synth-scenes: 60)")
    parser.add_argument("--rooms", type=int, default=6, help="rooms cut (one per area, then cycling)")
    parser.add_argument("--presets", nargs="+", default=["quick"], help="parae-dgcnn presets to time")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rooms = [generate_room(1 + i % 6, i // 6, density=args.density)[0] for i in range(args.rooms)]
    out = {
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "settings": vars(args),
        "room_points_mean": int(np.mean([len(r) for r in rooms])),
        "cut_train": cutting(rooms, args.points, evaluation=False),
        "cut_eval": cutting(rooms, args.points, evaluation=True),
        "dgcnn": [training(p, args.points, args.batch_size, args.warmup, args.iters) for p in args.presets],
    }
    out["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
