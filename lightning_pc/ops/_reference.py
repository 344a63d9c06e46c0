"""Pure-torch reference backend: runs on any device, is exact, and is the oracle in tests.

Distances are squared Euclidean, computed as explicit sums of squared differences (not the
``|a|^2 - 2ab + |b|^2`` matrix trick, whose rounding reorders near neighbours), in chunks
that bound the temporary memory to about ``_CHUNK_ELEMS`` elements.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds, grid_frame, without_self

_CHUNK_ELEMS = 1 << 24


def pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared distances ``[len(a), len(b)]`` summed over coordinates in a fixed order."""
    out = (a[:, None, 0] - b[None, :, 0]).square()
    for d in range(1, a.size(1)):
        out += (a[:, None, d] - b[None, :, d]).square()
    return out


def cosine_dist(a: Tensor, b: Tensor) -> Tensor:
    """``1 - cos(a, b)`` for every pair, as torch-cluster's ``cosine=True``."""
    an = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    bn = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 1.0 - an @ bn.t()


def smallest(d: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest entries of each row, ascending.

    A stable sort (ties go to the lower index) where ``k`` is a sizeable share of the row,
    ``topk`` otherwise.
    """
    if 8 * k >= d.size(1):
        vals, idx = torch.sort(d, dim=1, stable=True)
        return vals[:, :k], idx[:, :k]
    return torch.topk(d, k, dim=1, largest=False, sorted=True)


def _chunk_step(n: int, dims: int) -> int:
    """Queries per chunk so that one chunk's temporaries hold about ``_CHUNK_ELEMS`` values."""
    return max(1, _CHUNK_ELEMS // max(1, n * dims))


def knn(
    x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
) -> tuple[Tensor, Tensor]:
    """For each point of ``y``, its ``k`` nearest points of ``x`` in the same cloud
    (see :class:`~lightning_pc.ops._backend.KnnKernel`)."""
    row, col = _knn(x, y, k, cosine)
    return without_self(row, col, k) if skip_self else (row, col)


def _query_chunks(
    x: SortedClouds, y: SortedClouds, k: int
) -> Iterator[tuple[Tensor, Tensor, int, int, int]]:
    """``(q, xs, kk, row0, col0)`` for every chunk of queries of every cloud with points in
    both ``x`` and ``y``: the queries ``q`` (rows ``row0:`` of ``y``), their cloud's points
    ``xs`` (rows ``col0:`` of ``x``) and ``kk = min(k, len(xs))``."""
    px, py = x.ptr.tolist(), y.ptr.tolist()
    for b in range(x.num_clouds):
        xs = x.pos[px[b] : px[b + 1]]
        ys = y.pos[py[b] : py[b + 1]]
        if xs.size(0) == 0 or ys.size(0) == 0:
            continue
        kk = min(k, xs.size(0))
        step = _chunk_step(xs.size(0), xs.size(1))
        for s in range(0, ys.size(0), step):
            yield ys[s : s + step], xs, kk, py[b] + s, px[b]


def _knn(x: SortedClouds, y: SortedClouds, k: int, cosine: bool) -> tuple[Tensor, Tensor]:
    rows, cols = [], []
    for q, xs, kk, row0, col0 in _query_chunks(x, y, k):
        d = cosine_dist(q, xs) if cosine else pairwise_sq_dist(q, xs)
        _, idx = smallest(d, kk)
        rows.append(torch.arange(row0, row0 + q.size(0), device=q.device).repeat_interleave(kk))
        cols.append(idx.reshape(-1) + col0)
    return _cat(rows, x.pos.device), _cat(cols, x.pos.device)


def radius(
    x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int, first: bool = False
) -> tuple[Tensor, Tensor]:
    """For each point of ``y``, its ``max_num_neighbors`` nearest points of ``x`` strictly
    within ``r`` (same cloud), ascending by distance; with ``first``, the first ones by
    index, ascending by index."""
    rows, cols = [], []
    r2 = float(r) * float(r)
    for q, xs, kk, row0, col0 in _query_chunks(x, y, max_num_neighbors):
        d = pairwise_sq_dist(q, xs)
        if first:  # rank the points within r by their index (exact in float64)
            rank = torch.arange(xs.size(0), device=d.device, dtype=torch.float64)
            d = torch.where(d < r2, rank.view(1, -1), float("inf"))
        else:
            d.masked_fill_(d >= r2, float("inf"))
        vals, idx = smallest(d, kk)
        keep = torch.isfinite(vals)
        local_row = torch.arange(q.size(0), device=q.device).view(-1, 1).expand_as(idx)
        rows.append(local_row[keep] + row0)
        cols.append(idx[keep] + col0)
    return _cat(rows, x.pos.device), _cat(cols, x.pos.device)


def fps(src: SortedClouds, num_samples: Tensor, ratio: float | Tensor, start: Tensor) -> Tensor:
    """Farthest point sampling of every cloud at once on a padded ``[B, Nmax, D]`` view
    (see :class:`~lightning_pc.ops._backend.FpsKernel`; ``ratio`` is not needed)."""
    counts = src.counts()
    bsz = src.num_clouds
    nmax = int(counts.max()) if bsz else 0
    mmax = int(num_samples.max()) if bsz else 0
    device = src.pos.device
    if mmax == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    counts_d = counts.to(device)
    ptr_d = src.ptr.to(device)
    local = torch.arange(nmax, device=device)
    valid = local.view(1, -1) < counts_d.view(-1, 1)  # [B, Nmax]
    gather = (ptr_d[:-1].view(-1, 1) + local.view(1, -1)).clamp_max(max(src.pos.size(0) - 1, 0))
    padded = src.pos[gather]  # [B, Nmax, D]
    dist = torch.full((bsz, nmax), float("inf"), dtype=src.pos.dtype, device=device)
    dist.masked_fill_(~valid, -1.0)
    out = torch.empty(bsz, mmax, dtype=torch.long, device=device)
    cur = start.to(device).clone()
    arange_b = torch.arange(bsz, device=device)
    for i in range(mmax):
        out[:, i] = cur
        centre = padded[arange_b, cur]  # [B, D]
        d = (padded[:, :, 0] - centre[:, 0:1]).square()
        for c in range(1, padded.size(2)):
            d += (padded[:, :, c] - centre[:, c : c + 1]).square()
        torch.minimum(dist, d, out=dist)
        cur = dist.argmax(dim=1)
    keep = torch.arange(mmax, device=device).view(1, -1) < num_samples.to(device).view(-1, 1)
    return (out + ptr_d[:-1].view(-1, 1))[keep]


def grid(pos: Tensor, size: Tensor, start: Tensor | None, end: Tensor | None) -> Tensor:
    """Voxel ids ``sum(trunc((pos - start) / size) * stride)``, as torch-cluster."""
    start, _, stride = grid_frame(pos, size, start, end)
    return (((pos - start) / size).long() * stride).sum(dim=1)


def _cat(parts: list[Tensor], device: torch.device) -> Tensor:
    if not parts:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(parts)
