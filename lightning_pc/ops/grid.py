"""Voxel-grid clustering with torch-cluster's ``grid_cluster`` semantics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_pc.ops._backend import Call, resolve
from lightning_pc.ops._checks import check_points, require_tensors


def _per_dim(name: str, v: float | list[float] | Tensor | None, like: Tensor) -> Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(like.size(1))
    if t.numel() != like.size(1):
        raise ValueError(f"{name} needs 1 or {like.size(1)} values, got {t.numel()}")
    return t


def grid_cluster(
    pos: Tensor,
    size: float | list[float] | Tensor,
    start: float | list[float] | Tensor | None = None,
    end: float | list[float] | Tensor | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""Assigns each point the id of the voxel of edge ``size`` that holds it.

    Voxel coordinates are ``trunc((pos - start) / size)`` per axis, flattened with the
    first axis fastest over a grid spanning ``start`` to ``end`` (defaults: the points'
    minimum and maximum), exactly as torch-cluster. Ids are not consecutive; pass them
    through ``torch.unique(..., return_inverse=True)`` for that.

    Args:
        pos: ``[N, D]`` points, floating-point or integer (append the batch index as a
            coordinate with a size of 1 to keep clouds apart). Half precision is computed in
            float32, integers in float64.
        size: voxel edge, one value or one per axis; must be positive.
        start: grid origin per axis.
        end: grid end per axis.
        backend: force a backend.

    Returns:
        ``[N]`` long voxel ids.
    """
    require_tensors(pos=pos)
    return grid_op(pos, _as_tensor(size), _as_tensor(start), _as_tensor(end), backend)


def _as_tensor(v: float | list[float] | Tensor | None) -> Tensor | None:
    """A Python number or list as a (float64, CPU) tensor for the custom op."""
    return v if v is None or isinstance(v, Tensor) else torch.tensor(v, dtype=torch.float64)


@torch.library.custom_op("lightning_pc::grid_cluster", mutates_args=())
def grid_op(
    pos: Tensor, size: Tensor, start: Tensor | None, end: Tensor | None, backend: str | None
) -> Tensor:
    """The custom op behind :func:`grid_cluster`: checks and the backend's kernel."""
    pos = check_points("pos", pos, integer=True)
    sz = _per_dim("size", size, pos)
    assert sz is not None
    if bool((sz <= 0).any()):
        raise ValueError(f"voxel size must be positive, got {sz.tolist()}")
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    st = _per_dim("start", start, pos)
    en = _per_dim("end", end, pos)
    return resolve("grid", Call(pos.device, pos.dtype, pos.numel()), backend)(pos, sz, st, en)


@grid_op.register_fake
def _grid_fake(pos: Tensor, *_: Any) -> Tensor:
    return pos.new_empty((pos.size(0),), dtype=torch.long)
