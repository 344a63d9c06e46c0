"""Chamfer distance between point clouds (squared L2, as PyTorch3D)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_pc.ops._checks import require_tensors
from lightning_pc.ops.neighbors import knn


@torch.library.custom_op("lightning_pc::chamfer_pairs", mutates_args=())
def chamfer_pairs(
    x: Tensor, y: Tensor, batch_x: Tensor | None, batch_y: Tensor | None, backend: str | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest point of the other cloud for every point, and the points per cloud.

    Returns:
        ``[N]`` index into ``y`` of each point of ``x``, ``[M]`` index into ``x`` of each
        point of ``y``, and ``[B]`` point counts of ``x`` and of ``y`` per cloud.

    Raises:
        ValueError: if a cloud (up to the largest index) is empty in ``x`` or in ``y``.
    """
    size = max(
        int(batch_x.max()) + 1 if batch_x is not None and batch_x.numel() else 1,
        int(batch_y.max()) + 1 if batch_y is not None and batch_y.numel() else 1,
    )
    bx = batch_x if batch_x is not None else x.new_zeros(x.size(0), dtype=torch.long)
    by = batch_y if batch_y is not None else y.new_zeros(y.size(0), dtype=torch.long)
    nx = torch.bincount(bx, minlength=size)
    ny = torch.bincount(by, minlength=size)
    if bool((nx == 0).any()) or bool((ny == 0).any()):
        raise ValueError("chamfer_distance needs every cloud to have points in both x and y")
    return (
        _nearest(x, y, bx, by, size, backend),
        _nearest(y, x, by, bx, size, backend),
        nx,
        ny,
    )


@chamfer_pairs.register_fake
def _chamfer_pairs_fake(x: Tensor, y: Tensor, *_: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    clouds = torch.library.get_ctx().new_dynamic_size()
    long = torch.long
    return (
        x.new_empty((x.size(0),), dtype=long),
        y.new_empty((y.size(0),), dtype=long),
        x.new_empty((clouds,), dtype=long),
        x.new_empty((clouds,), dtype=long),
    )


def _nearest(
    a: Tensor, b: Tensor, batch_a: Tensor, batch_b: Tensor, size: int, backend: str | None
) -> Tensor:
    """Index into ``b`` of the nearest point of each point of ``a`` (same cloud)."""
    row, col = knn(b, a, 1, batch_b, batch_a, batch_size=size, backend=backend)
    out = torch.empty(a.size(0), dtype=torch.long, device=a.device)
    out[row] = col
    return out


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
    require_tensors(x=x, y=y, batch_x=batch_x, batch_y=batch_y)
    nn_x, nn_y, nx, ny = chamfer_pairs(x.detach(), y.detach(), batch_x, batch_y, backend)
    dx = (x - y[nn_x]).square().sum(dim=-1)  # [N], differentiable in both clouds
    dy = (y - x[nn_y]).square().sum(dim=-1)  # [M]
    bx = batch_x if batch_x is not None else nn_x.new_zeros(x.size(0))
    by = batch_y if batch_y is not None else nn_y.new_zeros(y.size(0))
    per_cloud = torch.zeros(nx.size(0), dtype=x.dtype, device=x.device).index_add(0, bx, dx) / nx
    per_cloud = (
        per_cloud
        + torch.zeros(ny.size(0), dtype=y.dtype, device=y.device).index_add(0, by, dy) / ny
    )
    if reduction == "mean":
        return per_cloud.mean()
    if reduction == "sum":
        return per_cloud.sum()
    return per_cloud
