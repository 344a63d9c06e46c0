"""Pointcept's grid sampling at test time: one point per voxel, in fragments.

Pointcept's ``GridSample`` (``mode="test"``) does not average the points of a voxel: it
cuts a scan into fragments, fragment ``i`` holding, of every voxel with ``c`` points, the
point number ``i % c``, so that ``max c`` fragments cover every point; its tester runs the
network on each fragment alone and sums the softmax of the logits per point. The released
PT-v3m1 checkpoints were evaluated so (``lightning_pc.models.ptv3.PRESETS``).

- :func:`pointcept_grid`: the grid coordinates ``GridSample`` gives a scan
  (``floor(pos / grid_size)`` in float64 minus the scan's minimum cell); fragments keep the
  scan's grid, not their own.
- :func:`grid_fragments`: the fragments of one scan, as indices of its points.
- :func:`predict_fragments`: a segmentation network's mean class probabilities per point
  over the fragments that hold it (Pointcept's sum divided by the number of fragments
  holding the point: the same arg max), for each cloud of a batch.

The points of a voxel are taken in their input order (Pointcept takes them in numpy's
``argsort`` order of the voxel hashes, which is not stable and so varies with numpy's sort
kernels); every point is covered either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.sparse.tensor import voxel_sites


def pointcept_grid(pos: Tensor, batch: Tensor, num_clouds: int, grid_size: float) -> Tensor:
    """[N, 3] ``int64`` grid coordinates as Pointcept's ``GridSample`` computes them per
    sample: ``floor(pos / grid_size)`` in float64 (numpy promotes its float32 coordinates
    by the float64 size) minus each cloud's minimum cell.

    Raises:
        ValueError: a non-positive ``grid_size`` or non-finite coordinates.
    """
    if not grid_size > 0:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("batch.pos holds NaN or infinite coordinates")
    grid = torch.floor(pos.double() / grid_size).long()
    lo = grid.new_full((num_clouds, 3), torch.iinfo(torch.long).max)
    lo = lo.scatter_reduce(0, batch.view(-1, 1).expand_as(grid), grid, reduce="amin")
    return grid - lo[batch]


def grid_fragments(grid: Tensor) -> list[Tensor]:
    """The test-time fragments of one scan whose points lie in cells ``grid`` [N, 3].

    Returns:
        ``F`` index tensors (``F`` the most points of a voxel), each holding one point of
        every voxel (voxels in increasing cell order): fragment ``i`` takes, of a voxel
        of ``c`` points (in input order), the one numbered ``i % c``.
    """
    if grid.dim() != 2 or grid.size(1) != 3:
        raise ValueError(f"expected grid coordinates [N, 3], got {tuple(grid.shape)}")
    if grid.size(0) == 0:
        return []
    coords = torch.cat([grid.new_zeros(grid.size(0), 1), grid], 1).long()
    _, voxel = voxel_sites(coords)  # [N] voxel of every point
    counts = torch.bincount(voxel)  # [M], all positive
    starts = torch.cumsum(counts, 0) - counts
    by_voxel = torch.argsort(voxel, stable=True)  # points grouped by voxel, input order
    return [by_voxel[starts + i % counts] for i in range(int(counts.max()))]


def predict_fragments(
    model: nn.Module, data: Any, grid_size: float, fragments_per_batch: int = 1
) -> Tensor:
    """Mean class probabilities [N, K] of a segmentation network on every point of
    ``data`` (a :class:`~lightning_pc.nn.point.Point` or PyG batch), each cloud cut into
    :func:`grid_fragments` on :func:`pointcept_grid` at ``grid_size``.

    The network gets each fragment as a :class:`Point` carrying ``grid_coord`` (the scan's
    grid), which PTv3 with ``grid_origin="pointcept"`` uses as given (Pointcept's test
    input); ``fragments_per_batch`` fragments of a cloud go through it together, as
    separate clouds (PTv3's attention never mixes clouds, so the result is that of one
    fragment at a time). The model runs as it is (call ``model.eval()`` and wrap in
    ``torch.no_grad()`` for inference).

    Raises:
        ValueError: ``fragments_per_batch`` below 1, or what :func:`pointcept_grid` raises.
    """
    if fragments_per_batch < 1:
        raise ValueError(f"fragments_per_batch must be at least 1, got {fragments_per_batch}")
    point = as_point(data)
    grid = pointcept_grid(point.pos, point.batch, point.num_clouds, grid_size)
    ptr = point.ptr.tolist()
    total: Tensor | None = None
    hits = torch.zeros(point.num_rows, dtype=point.pos.dtype, device=point.pos.device)
    for lo, hi in zip(ptr[:-1], ptr[1:], strict=True):
        frags = [f + lo for f in grid_fragments(grid[lo:hi])]
        for j in range(0, len(frags), fragments_per_batch):
            group = frags[j : j + fragments_per_batch]
            idx = torch.cat(group)
            batch = torch.repeat_interleave(
                torch.arange(len(group), device=idx.device),
                torch.tensor([g.numel() for g in group], device=idx.device),
            )
            part = Point(
                point.pos[idx],
                None if point.x is None else point.x[idx],
                batch,
                grid_coord=grid[idx],
                grid_size=float(grid_size),
            )
            prob = torch.softmax(model(part), dim=-1)
            if total is None:
                total = prob.new_zeros(point.num_rows, prob.size(1))
            total.index_add_(0, idx, prob)
            hits.index_add_(0, idx, torch.ones_like(idx, dtype=hits.dtype))
    if total is None:
        raise ValueError("predict_fragments got no points")
    return total / hits.to(total.dtype).unsqueeze(1)
