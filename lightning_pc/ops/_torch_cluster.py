"""torch-cluster backend: thin wrappers that give its kernels our exact semantics."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds, grid_frame, without_self


def _batch(p: SortedClouds) -> Tensor:
    counts = p.counts().to(p.pos.device)
    return torch.repeat_interleave(torch.arange(p.num_clouds, device=p.pos.device), counts)


def knn(
    x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
) -> tuple[Tensor, Tensor]:
    row, col = _knn(x, y, k, cosine)
    return without_self(row, col, k) if skip_self else (row, col)


def _knn(x: SortedClouds, y: SortedClouds, k: int, cosine: bool) -> tuple[Tensor, Tensor]:
    import torch_cluster

    out = torch_cluster.knn(
        x.pos, y.pos, k, _batch(x), _batch(y), cosine=cosine, num_workers=torch.get_num_threads()
    )
    return out[0], out[1]


def radius(
    x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int, first: bool = False
) -> tuple[Tensor, Tensor]:
    """The ``max_num_neighbors`` nearest points strictly within ``r``.

    torch-cluster's own ``radius`` truncates differently on CPU (whatever its kd-tree visits
    first) and CUDA (first by index); its ``knn`` followed by a distance filter gives the
    nearest-first rule on both. The first-by-index rule (``first``) is declined in the
    registry and runs elsewhere.
    """
    if first:
        raise ValueError("torch_cluster ops backend: radius keeps the nearest points only")
    row, col = _knn(x, y, max_num_neighbors, False)
    d = (x.pos[col] - y.pos[row]).square().sum(dim=1)
    keep = d < float(r) * float(r)
    return row[keep], col[keep]


def fps(src: SortedClouds, num_samples: Tensor, ratio: float | Tensor, start: Tensor) -> Tensor:
    """torch-cluster's FPS, started at ``start`` by rotating each cloud so it comes first.

    torch-cluster counts the samples from ``ratio`` itself (``num_samples`` holds the same
    counts, computed as it does).
    """
    import torch_cluster

    device = src.pos.device
    counts = src.counts().to(device)
    ptr = src.ptr.to(device)
    batch = torch.repeat_interleave(torch.arange(src.num_clouds, device=device), counts)
    local = torch.arange(src.pos.size(0), device=device) - ptr[:-1][batch]
    rotated = ptr[:-1][batch] + (local + start.to(device)[batch]) % counts[batch]
    # torch-cluster indexes the first point of every cloud, empty ones included: number the
    # non-empty clouds consecutively and hand it only those
    nonempty = counts > 0
    dense = (torch.cumsum(nonempty.long(), 0) - 1)[batch]
    if isinstance(ratio, Tensor):
        ratio = ratio.to(device)
        if ratio.numel() > 1:
            ratio = ratio[nonempty]
    idx = torch_cluster.fps(src.pos[rotated], dense, ratio, random_start=False)
    return rotated[idx]


def grid(pos: Tensor, size: Tensor, start: Tensor | None, end: Tensor | None) -> Tensor:
    import torch_cluster

    start, end, _ = grid_frame(pos, size, start, end)  # refuses an overflowing grid
    return torch_cluster.grid_cluster(pos, size.contiguous(), start.contiguous(), end.contiguous())
