"""Inverse-distance feature interpolation (PointNet++ feature propagation)."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_pc.ops._checks import require_tensors
from lightning_pc.ops.neighbors import knn_op


def knn_interpolate(
    x: Tensor,
    pos_x: Tensor,
    pos_y: Tensor,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    k: int = 3,
    num_workers: int = 1,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""Interpolates features ``x`` known at ``pos_x`` onto the points ``pos_y``.

    .. math::
        f(y) = \frac{\sum_{i \in \mathcal{N}_k(y)} w_i \, x_i}{\sum_{i \in \mathcal{N}_k(y)} w_i},
        \qquad w_i = \frac{1}{\max(\lVert p_i - y \rVert^2, 10^{-16})}

    over the ``k`` nearest known points of the same cloud (PyG's ``knn_interpolate``).
    Gradients flow to ``x`` and to both position tensors.

    Args:
        x: ``[N, C]`` features at ``pos_x``.
        pos_x: ``[N, D]`` positions with known features.
        pos_y: ``[M, D]`` positions to interpolate at.
        batch_x: ``[N]`` cloud index of ``pos_x``.
        batch_y: ``[M]`` cloud index of ``pos_y``; every cloud of ``pos_y`` needs points in
            ``pos_x``.
        k: neighbours used.

    Returns:
        ``[M, C]`` interpolated features.
    """
    if x.size(0) != pos_x.size(0):
        raise ValueError(f"x has {x.size(0)} rows but pos_x has {pos_x.size(0)} points")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    require_tensors(x=x, pos_x=pos_x, pos_y=pos_y, batch_x=batch_x, batch_y=batch_y)
    # every cloud of pos_y (the op's y) needs points in pos_x (its x): checked in the op
    edges = knn_op(
        pos_x.detach(),
        pos_y.detach(),
        batch_x,
        batch_y,
        int(k),
        cosine=False,
        batch_size=None,
        exclude_self=False,
        flip=False,
        need_all=True,
        backend=backend,
    )
    y_idx, x_idx = edges[0], edges[1]
    diff = pos_x[x_idx] - pos_y[y_idx]
    w = 1.0 / diff.square().sum(dim=-1, keepdim=True).clamp_min(1e-16)  # [E, 1]
    num = torch.zeros(pos_y.size(0), x.size(1), dtype=x.dtype, device=x.device)
    den = torch.zeros(pos_y.size(0), 1, dtype=w.dtype, device=x.device)
    num = num.index_add(0, y_idx, x[x_idx] * w)
    den = den.index_add(0, y_idx, w)
    return num / den
