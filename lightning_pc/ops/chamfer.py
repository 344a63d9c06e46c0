"""Chamfer distance between point clouds (squared L2, as PyTorch3D)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_pc.ops.neighbors import knn


def _nearest_sq(
    a: Tensor,
    b: Tensor,
    batch_a: Tensor | None,
    batch_b: Tensor | None,
    size: int,
    backend: str | None,
) -> Tensor:
    """Squared distance from each point of ``a`` to its nearest point of ``b`` (with grad)."""
    with torch.no_grad():
        row, col = knn(b, a, 1, batch_b, batch_a, batch_size=size, backend=backend)
    out = torch.full((a.size(0),), float("nan"), dtype=a.dtype, device=a.device)
    return out.index_put((row,), (a[row] - b[col]).square().sum(dim=-1))


def chamfer_distance(
    x: Tensor,
    y: Tensor,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    *,
    backend: str | None = None,
) -> Tensor:
    r"""Symmetric Chamfer distance, cloud by cloud.

    .. math::
        d(X, Y) = \frac{1}{|X|}\sum_{x \in X} \min_{y \in Y} \lVert x - y \rVert^2
                + \frac{1}{|Y|}\sum_{y \in Y} \min_{x \in X} \lVert x - y \rVert^2

    Squared distances and a mean over points, as PyTorch3D's ``chamfer_distance`` with its
    defaults. Differentiable with respect to both clouds.

    Args:
        x: ``[N, D]`` first clouds' points.
        y: ``[M, D]`` second clouds' points.
        batch_x, batch_y: cloud index per point; every cloud must be non-empty in both.
        reduction: over clouds: ``"mean"`` (PyTorch3D's default), ``"sum"``, or ``"none"`` for
            a ``[B]`` tensor.

    Returns:
        A scalar, or ``[B]`` with ``reduction="none"``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    size = max(
        int(batch_x.max()) + 1 if batch_x is not None and batch_x.numel() else 1,
        int(batch_y.max()) + 1 if batch_y is not None and batch_y.numel() else 1,
    )
    bx = (
        batch_x
        if batch_x is not None
        else torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    )
    by = (
        batch_y
        if batch_y is not None
        else torch.zeros(y.size(0), dtype=torch.long, device=y.device)
    )
    nx = torch.bincount(bx, minlength=size)
    ny = torch.bincount(by, minlength=size)
    if bool((nx == 0).any()) or bool((ny == 0).any()):
        raise ValueError("chamfer_distance needs every cloud to have points in both x and y")
    dx = _nearest_sq(x, y, bx, by, size, backend)
    dy = _nearest_sq(y, x, by, bx, size, backend)
    per_cloud = torch.zeros(size, dtype=x.dtype, device=x.device).index_add(0, bx, dx) / nx
    per_cloud = (
        per_cloud + torch.zeros(size, dtype=y.dtype, device=y.device).index_add(0, by, dy) / ny
    )
    if reduction == "mean":
        return per_cloud.mean()
    if reduction == "sum":
        return per_cloud.sum()
    return per_cloud
