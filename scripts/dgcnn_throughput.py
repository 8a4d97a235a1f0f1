"""DGCNN throughput and peak memory: memory-aware EdgeConv vs the dense textbook form.

Compares :class:`ssl3d.methods.backbones.dgcnn.DGCNN` with
:class:`DenseDGCNNReference` below (the original formulation: edge features
gathered as ``[B, 2C, N, k]``, ``Conv2d`` + BatchNorm2d + LeakyReLU, max over
``k``; full ``N x N`` k-NN; global feature repeated and concatenated for the
head). Both models get the same parameters; the script first checks that their
outputs agree, then times forward + backward (training mode) on random clouds.

Measurement, documented so the numbers can be trusted:

* throughput: clouds/s = ``B * iters / wall time`` over ``iters`` timed
  forward+backward steps after ``warmup`` untimed ones (CUDA synchronised);
* peak memory: every variant runs in its own fresh subprocess. ``peak_mib``
  on CPU is the resident high-water mark (``VmHWM`` from ``/proc/self/status``,
  reset through ``/proc/self/clear_refs`` just before the timed steps; Linux
  only) minus the resident size at that moment (model, data, Python runtime
  and one priming step on a 64-point cloud already done): what the OS saw the
  training steps add at their worst moment. ``ru_maxrss`` is not used because
  a child inherits its parent's size at fork time. The subprocesses run with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so large freed blocks go back to the OS at
  once (glibc's dynamic threshold otherwise parks them on the heap and RSS
  overstates live memory). On CUDA it is ``torch.cuda.max_memory_allocated``
  minus the allocation before the first step.
* ``tensor_peak_mib`` (CPU): one extra step under ``torch.profiler`` with
  ``profile_memory=True``; the running sum of its allocation/free records gives
  the peak of live tensor bytes during that step (allocator-level, no malloc
  overhead).

Usage::

    python scripts/dgcnn_throughput.py --batch-size 16 --points 1024 --k 20 --iters 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ssl3d.methods.backbones.dgcnn import DGCNN, DGCNN_PRESETS


def _dense_knn(x: Tensor, k: int) -> Tensor:
    """The original DGCNN k-NN: full [B, N, N] negative squared distances + topk."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    sq = (x**2).sum(dim=1, keepdim=True)
    neg_dist = -sq - inner - sq.transpose(2, 1)
    return neg_dist.topk(k=k, dim=-1).indices


def _graph_feature(x: Tensor, k: int, idx: Tensor | None = None) -> Tensor:
    """Edge features [x_i, x_j - x_i] as [B, 2C, N, k] (channels-first, as in DGCNN)."""
    b, c, n = x.shape
    if idx is None:
        idx = _dense_knn(x, k)
    base = torch.arange(b, device=x.device).view(-1, 1, 1) * n
    flat = (idx + base).view(-1)
    pts = x.transpose(2, 1).contiguous()
    neigh = pts.view(b * n, -1)[flat].view(b, n, k, c)
    centre = pts.view(b, n, 1, c).expand(-1, -1, k, -1)
    return torch.cat((centre, neigh - centre), dim=3).permute(0, 3, 1, 2).contiguous()


class DenseDGCNNReference(nn.Module):
    """The textbook DGCNN with the same configuration knobs as :class:`DGCNN`."""

    def __init__(self, model: DGCNN) -> None:
        super().__init__()
        self.k, self.pooling, self.slope = model.k, model.pooling, model.negative_slope
        self.blocks = nn.ModuleList()
        for conv in model.convs:
            layers, prev = [], 2 * conv.in_channels
            for width in conv.channels:
                layers += [nn.Conv2d(prev, width, 1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(self.slope)]
                prev = width
            self.blocks.append(nn.Sequential(*layers))
        emb = model.aggregate.out_features
        self.aggregate = nn.Sequential(
            nn.Conv1d(model.point_dim, emb, 1, bias=False), nn.BatchNorm1d(emb), nn.LeakyReLU(self.slope)
        )
        self.head = None
        if model.head is not None:
            widths = [model.head.local_in.out_features]
            widths += [m.out_features for m in model.head.rest if isinstance(m, nn.Linear)]
            p = next((m.p for m in model.head.modules() if isinstance(m, nn.Dropout)), 0.0)
            layers, prev = [], model.point_dim + model.global_dim
            for width in widths[:-1]:
                layers += [nn.Conv1d(prev, width, 1, bias=False), nn.BatchNorm1d(width), nn.LeakyReLU(self.slope)]
                if p > 0:
                    layers.append(nn.Dropout(p))
                prev = width
            layers.append(nn.Conv1d(prev, widths[-1], 1))
            self.head = nn.Sequential(*layers)
        self.load_from(model)

    @torch.no_grad()
    def load_from(self, model: DGCNN) -> None:
        """Copy ``model``'s parameters and buffers into the dense layout."""
        for block, conv in zip(self.blocks, model.convs):
            convs = [m for m in block if isinstance(m, nn.Conv2d)]
            norms = [m for m in block if isinstance(m, nn.BatchNorm2d)]
            weights = [conv.weight] + [lin.weight for lin in conv.linears]
            for dst, w in zip(convs, weights):
                dst.weight.copy_(w[:, :, None, None])
            for dst, src in zip(norms, conv.norms):
                dst.load_state_dict(src.state_dict())
        self.aggregate[0].weight.copy_(model.aggregate.weight[:, :, None])
        self.aggregate[1].load_state_dict(model.aggregate_norm.state_dict())
        if self.head is not None:
            src = [model.head.local_in, model.head.global_in]
            src_lin = [m for m in model.head.rest if isinstance(m, nn.Linear)]
            src_bn = [m for m in model.head.first if isinstance(m, nn.BatchNorm1d)]
            src_bn += [m for m in model.head.rest if isinstance(m, nn.BatchNorm1d)]
            dst_conv = [m for m in self.head if isinstance(m, nn.Conv1d)]
            dst_bn = [m for m in self.head if isinstance(m, nn.BatchNorm1d)]
            dst_conv[0].weight.copy_(torch.cat([src[0].weight, src[1].weight], dim=1)[:, :, None])
            for dst, lin in zip(dst_conv[1:], src_lin):
                dst.weight.copy_(lin.weight[:, :, None])
                if lin.bias is not None:
                    dst.bias.copy_(lin.bias)
            for dst, bn in zip(dst_bn, src_bn):
                dst.load_state_dict(bn.state_dict())

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor | None]:
        x = points.transpose(1, 2)  # [B, C, N]
        n = x.shape[2]
        feats = []
        for i, block in enumerate(self.blocks):
            idx = _dense_knn(x[:, :3] if i == 0 else x, self.k)
            x = block(_graph_feature(x, self.k, idx)).max(dim=-1).values
            feats.append(x)
        local = torch.cat(feats, dim=1)
        h = self.aggregate(local)
        g = h.max(dim=-1).values
        if self.pooling == "max+avg":
            g = torch.cat([g, h.mean(dim=-1)], dim=1)
        logits = None
        if self.head is not None:
            logits = self.head(torch.cat([local, g.unsqueeze(-1).expand(-1, -1, n)], dim=1)).transpose(1, 2)
        return g, logits


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> None:
    """Reset this process's resident high-water mark (Linux >= 4.0; best effort)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss_bytes() -> int:
    """Resident high-water mark of this process image (``VmHWM``).

    Unlike ``ru_maxrss``, which a child inherits from its parent's size at
    fork time, ``VmHWM`` belongs to the exec'd image only.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _build(args: argparse.Namespace, dropout: float = 0.5) -> tuple[DGCNN, DenseDGCNNReference]:
    torch.manual_seed(0)
    ours = DGCNN.from_preset(args.preset, k=args.k, num_point_outputs=args.outputs or None, dropout=dropout)
    with torch.no_grad():  # non-trivial BN affine so the equivalence check means something
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.uniform_(-1.0, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return ours, DenseDGCNNReference(ours)


def _check(args: argparse.Namespace) -> dict[str, float]:
    """Max |ours - dense| of global features and logits, in train and eval mode.

    Dropout is off here so both modes are deterministic and comparable.
    """
    ours, ref = _build(args, dropout=0.0)
    pts = torch.randn(2, min(args.points, 512), 3)
    pts = pts / pts.norm(dim=-1, keepdim=True).amax()
    out: dict[str, float] = {}
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        a = ours(pts)
        g, logits = ref(pts)
        out[f"global_max_abs_diff_{mode}"] = (a.global_feature - g).abs().max().item()
        if logits is not None:
            out[f"logits_max_abs_diff_{mode}"] = (a.logits - logits).abs().max().item()
    return out


def _worker(args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, ref = _build(args)
    model = (ours if args.variant == "ours" else ref).to(device).train()
    pts = torch.randn(args.batch_size, args.points, 3, device=device)
    pts = pts / pts.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)

    def step() -> None:
        out = model(pts)
        g, logits = out if isinstance(out, tuple) else (out.global_feature, out.logits)
        loss = g.square().mean() + (logits.square().mean() if logits is not None else 0.0)
        loss.backward()
        model.zero_grad(set_to_none=True)

    # Prime lazily initialised runtime pieces (kernels, thread pools) on a tiny
    # cloud so their one-off resident memory is not counted against the variant.
    tiny = pts[:1, : min(args.points, 64)]
    out = model(tiny)
    (out[0] if isinstance(out, tuple) else out.global_feature).sum().backward()
    model.zero_grad(set_to_none=True)

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss_before = _rss_bytes()
    _reset_peak_rss()
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss_bytes() - rss_before
    result = {"clouds_per_s": args.batch_size * args.iters / elapsed, "peak_mib": peak / 2**20}
    if not cuda:
        tensor_peak = _profiled_tensor_peak(step)
        if tensor_peak is not None:
            result["tensor_peak_mib"] = tensor_peak / 2**20
    return result


def _profiled_tensor_peak(step: Callable[[], None]) -> int | None:
    """Peak live tensor bytes of one ``step()`` from the profiler's memory records."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        return None
    records = sorted((ev.start_ns(), ev.nbytes()) for ev in results.events() if ev.name() == "[memory]")
    live = peak = 0
    for _, nbytes in records:  # frees are negative
        live += nbytes
        peak = max(peak, live)
    return peak


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--iters", type=int, default=5, help="timed forward+backward steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--preset", default="parae", choices=sorted(DGCNN_PRESETS))
    p.add_argument("--outputs", type=int, default=32, help="per-point outputs J (0: no head)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variant", choices=("ours", "dense"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:  # inside a subprocess
        print(json.dumps(_worker(args)))
        return
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {"config": {k: v for k, v in vars(args).items() if k != "variant"}}
    report["equivalence"] = _check(args)
    for variant in ("ours", "dense"):
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--variant", variant]
        # A fixed mmap threshold stops glibc from parking freed blocks on its
        # heap (its dynamic threshold otherwise inflates RSS with dead memory).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"{variant} run failed:\n{res.stderr}")
        report[variant] = json.loads(res.stdout.strip().splitlines()[-1])
    ours, dense = report["ours"], report["dense"]
    report["speedup"] = ours["clouds_per_s"] / dense["clouds_per_s"]  # type: ignore[index]
    report["memory_ratio"] = ours["peak_mib"] / dense["peak_mib"]  # type: ignore[index]
    if "tensor_peak_mib" in ours and "tensor_peak_mib" in dense:  # type: ignore[operator]
        report["tensor_memory_ratio"] = ours["tensor_peak_mib"] / dense["tensor_peak_mib"]  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
