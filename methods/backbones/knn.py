r"""Exact k-nearest-neighbour indices in plain PyTorch, chunked to bound memory.

torch-cluster / pyg-lib are not dependencies, so DGCNN's dynamic graphs are
built here. The full :math:`N \times N` distance matrix of a batch costs
:math:`4 B N^2` bytes (1 GiB at B=16, N=4096); query points are therefore
processed in row chunks so peak memory stays under a budget whatever N is.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DEFAULT_KNN_MEMORY_BUDGET", "knn_indices", "neighbour_argmax"]

#: Bytes of scratch memory one chunk of the distance computation may use.
DEFAULT_KNN_MEMORY_BUDGET = 256 * 2**20

# Scratch bytes per (query, candidate) pair: the float32 distance itself plus
# the operands of the fused add and top-k's workspace.
_BYTES_PER_PAIR = 12


def _auto_chunk(batch: int, n: int, budget: int) -> int:
    return max(1, min(n, budget // max(1, batch * n * _BYTES_PER_PAIR)))


@torch.no_grad()
def knn_indices(
    x: Tensor,
    k: int,
    *,
    chunk_size: int | None = None,
    include_self: bool = True,
    memory_budget: int | None = None,
    query_index: Tensor | None = None,
) -> Tensor:
    r"""Indices of the :math:`k` nearest points (Euclidean) of every point (or of ``query_index``'s), per cloud.

    Squared distances are expanded as
    :math:`\lVert q_i - x_j \rVert^2 = \lVert q_i \rVert^2 - 2 q_i^\top x_j +
    \lVert x_j \rVert^2` (one batched GEMM per chunk of query rows) and the
    :math:`k` smallest are taken with ``topk``. Results are sorted by distance.
    With ``include_self=True`` each point is forced to be its own first
    neighbour (as in DGCNN, whose edge :math:`(i, i)` carries :math:`x_i`);
    with ``include_self=False`` it is excluded by index, so exact duplicates of
    a point still count as neighbours. Among equidistant candidates the choice
    is arbitrary. No gradient flows through indices.

    Args:
        x: points or features.
        k: neighbours per point; at most :math:`N` (:math:`N-1` without self).
        chunk_size: query rows per chunk; ``None`` picks the largest chunk whose
            scratch memory fits ``memory_budget``.
        include_self: whether a point is its own (first) neighbour.
        memory_budget: scratch bytes per chunk for the automatic chunk size
            (default :data:`DEFAULT_KNN_MEMORY_BUDGET`, 256 MiB).
        query_index: indices into dimension 1 of ``x`` of the points whose neighbours are wanted
            (``None``: every point); only those rows are computed (Point-MAE's patches: the
            neighbours of the farthest-point centres, :math:`M/N` of the cost).

    Returns:
        ``torch.long`` neighbour indices into dimension 1 of ``x``.

    Shapes:
        - **x:** :math:`(B, N, C)`; **query_index:** :math:`(B, M)`
        - **output:** :math:`(B, N, k)`, or :math:`(B, M, k)` with ``query_index``
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, C]; got shape {tuple(x.shape)}")
    b, n, _ = x.shape
    limit = n if include_self else n - 1
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
        raise ValueError(
            f"k must be an int in [1, {limit}] for N={n} points "
            f"({'including' if include_self else 'excluding'} the point itself); got {k!r}"
        )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    if memory_budget is not None and memory_budget < 1:
        raise ValueError(f"memory_budget must be a positive number of bytes; got {memory_budget!r}")
    if query_index is not None and (query_index.dim() != 2 or query_index.shape[0] != b
                                    or query_index.dtype != torch.long
                                    or bool(((query_index < 0) | (query_index >= n)).any())):
        raise ValueError(f"query_index must be a long tensor [B={b}, M] of indices in [0, {n}); "
                         f"got {query_index.dtype} {tuple(query_index.shape)}")
    if chunk_size is None:
        chunk_size = _auto_chunk(b, n, memory_budget or DEFAULT_KNN_MEMORY_BUDGET)

    # Half precision loses the ordering of nearby points; rank in float32 at least.
    pts = x.detach()
    if pts.dtype in (torch.float16, torch.bfloat16) or not pts.is_floating_point():
        pts = pts.float()
    sq = pts.pow(2).sum(dim=-1)  # [B, N]
    pts_t = pts.transpose(1, 2)  # [B, C, N]
    fill = float("-inf") if include_self else float("inf")
    own = torch.arange(n, device=x.device).expand(b, n) if query_index is None else query_index
    queries = pts if query_index is None else pts.gather(1, own.unsqueeze(-1).expand(-1, -1, pts.shape[-1]))
    m = own.shape[1]
    out = torch.empty(b, m, k, dtype=torch.long, device=x.device)
    with torch.autocast(x.device.type, enabled=False):  # autocast would undo the float32 ranking
        for start in range(0, m, chunk_size):
            stop = min(m, start + chunk_size)
            # ||x_j||^2 - 2 q_i.x_j; the query's own ||q_i||^2 is constant per
            # row and cannot change the ranking, so it is never added.
            dist = torch.baddbmm(sq[:, None, :], queries[:, start:stop], pts_t, alpha=-2.0)
            dist.scatter_(2, own[:, start:stop, None], fill)  # each query's own column
            out[:, start:stop] = dist.topk(k, dim=-1, largest=False, sorted=True).indices
    return out


@torch.no_grad()
def neighbour_argmax(values: Tensor, neighbours: Tensor, *, memory_budget: int = 32 * 2**20) -> Tensor:
    r"""Per row :math:`i` and channel :math:`c`, the neighbour :math:`j \in \mathcal{N}(i)` maximising ``values[j, c]``.

    Rows of neighbours are gathered in chunks of at most ``memory_budget``
    bytes, so the ``[M, k, C]`` gather is never materialised whole. Ties go to
    the earliest neighbour in ``neighbours[i]``.

    Args:
        values: per-point values, points flattened over the batch.
        neighbours: flat indices into dimension 0 of ``values``.
        memory_budget: scratch bytes per chunk.

    Returns:
        ``torch.long`` indices into dimension 0 of ``values``.

    Shapes:
        - **values:** :math:`(M, C)`; **neighbours:** :math:`(M, k)`
        - **output:** :math:`(M, C)`
    """
    rows, k = neighbours.shape
    out = torch.empty(rows, values.shape[1], dtype=torch.long, device=values.device)
    step = max(1, memory_budget // max(1, k * values.shape[1] * values.element_size()))
    for start in range(0, rows, step):
        block = neighbours[start : start + step]
        best = values[block].argmax(dim=1)  # [chunk, C] positions in 0..k-1
        out[start : start + step] = block.gather(1, best)
    return out
