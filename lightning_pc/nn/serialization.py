"""Space-filling-curve codes of integer grid coordinates (Point Transformer V3 serialisation).

A code orders the voxels of a batch along a curve: the cloud index in the high bits, then the
curve index of the voxel in the low ``3 * depth`` bits, so sorting the codes of a packed
batch keeps the clouds apart and walks each cloud along the curve. Four orders, as in
PTv3: ``"z"`` (Morton: bit ``i`` of ``x, y, z`` goes to bit ``3i + 2, 3i + 1, 3i``),
``"hilbert"`` (Skilling's transform, "Programming the Hilbert curve", 2004), and their
``"-trans"`` variants, which swap ``x`` and ``y`` before encoding. Codes equal Pointcept's
``pointcept.models.utils.serialization.encode`` bit for bit (checked by
``benchmarks/ptv3_oracle.py``).

Truncating a code by ``3`` bits gives the code of the parent voxel at half the resolution
(for both curves), which is what grid pooling uses.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Order = Literal["z", "z-trans", "hilbert", "hilbert-trans"]
ORDERS: tuple[str, ...] = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16
"""Bits per axis a code may use (as Pointcept; 48 bits for the three axes)."""


def _check(grid_coord: Tensor, depth: int) -> None:
    if grid_coord.dim() != 2 or grid_coord.size(1) != 3:
        raise ValueError(f"expected grid_coord of shape [N, 3], got {tuple(grid_coord.shape)}")
    if grid_coord.dtype.is_floating_point:
        raise ValueError(f"grid_coord must be an integer tensor, got {grid_coord.dtype}")
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must lie in [0, {MAX_DEPTH}], got {depth}")
    if grid_coord.numel():
        lo, hi = int(grid_coord.min()), int(grid_coord.max())
        if lo < 0 or hi >= 1 << depth:
            raise ValueError(
                f"grid coordinates must lie in [0, 2**depth) = [0, {1 << depth}), got [{lo}, {hi}]"
            )


def z_order(grid_coord: Tensor, depth: int) -> Tensor:
    """Morton code [N] of ``grid_coord`` [N, 3] (``x`` most significant within a triple)."""
    x, y, z = grid_coord.long().unbind(1)
    code = torch.zeros_like(x)
    for i in range(depth):
        code |= ((x >> i) & 1) << (3 * i + 2)
        code |= ((y >> i) & 1) << (3 * i + 1)
        code |= ((z >> i) & 1) << (3 * i)
    return code


def hilbert(grid_coord: Tensor, depth: int) -> Tensor:
    """Hilbert index [N] of ``grid_coord`` [N, 3] on a ``2**depth`` cube.

    Skilling's "axes to transpose" on integers: from the top bit down, for each axis ``i``,
    where bit ``q`` of ``X[i]`` is set the lower bits of ``X[0]`` are inverted, elsewhere the
    lower bits of ``X[0]`` and ``X[i]`` are exchanged; the transposed index is then read
    interleaved (``x`` first, top bit first) and turned from Gray code to binary.
    """
    axes = [c.clone() for c in grid_coord.long().unbind(1)]
    for bit in range(depth - 1, 0, -1):
        low = (1 << bit) - 1
        for i in range(3):
            on = ((axes[i] >> bit) & 1).bool()
            flip = torch.where(on, torch.full_like(axes[0], low), torch.zeros_like(axes[0]))
            swap = torch.where(on, torch.zeros_like(axes[0]), (axes[0] ^ axes[i]) & low)
            axes[0] = axes[0] ^ flip ^ swap
            if i:
                axes[i] = axes[i] ^ swap
    gray = torch.zeros_like(axes[0])
    for bit in range(depth):  # bit ``bit`` of axis ``i`` -> bit ``3 * bit + 2 - i``
        for i in range(3):
            gray |= ((axes[i] >> bit) & 1) << (3 * bit + 2 - i)
    code = gray
    shift = 1
    while shift < 3 * depth:  # binary = prefix XOR of the Gray bits from the top
        code = code ^ (code >> shift)
        shift <<= 1
    return code


def encode(grid_coord: Tensor, batch: Tensor | None, depth: int, order: str = "z") -> Tensor:
    """Serialisation codes [N] ``int64``: ``batch << 3 * depth | curve(grid_coord)``.

    Args:
        grid_coord: [N, 3] non-negative integer voxel coordinates, each below ``2**depth``.
        batch: [N] cloud index of each voxel, or ``None`` for one cloud.
        depth: bits per axis (at most 16).
        order: ``"z"``, ``"z-trans"``, ``"hilbert"`` or ``"hilbert-trans"``.

    Raises:
        ValueError: for an unknown order, float or out-of-range coordinates, or a batch
            index that does not fit in the 63 bits left.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown serialisation order {order!r}; known: {', '.join(ORDERS)}")
    _check(grid_coord, depth)
    if order.endswith("-trans"):
        grid_coord = grid_coord[:, [1, 0, 2]]
    code = z_order(grid_coord, depth) if order.startswith("z") else hilbert(grid_coord, depth)
    if batch is None:
        return code
    if batch.numel() and int(batch.max()).bit_length() + 3 * depth > 63:
        raise ValueError(
            f"{int(batch.max()) + 1} clouds at depth {depth} do not fit in a 63-bit code"
        )
    return (batch.long() << (3 * depth)) | code


def serialize(
    grid_coord: Tensor, batch: Tensor, depth: int, orders: tuple[str, ...] | list[str]
) -> tuple[Tensor, Tensor, Tensor]:
    """Codes, sort orders and inverse orders of every serialisation in ``orders``.

    Returns:
        ``code`` [K, N], ``order`` [K, N] (``code[k, order[k]]`` is sorted) and ``inverse``
        [K, N] (``order[k, inverse[k]] == arange(N)``).
    """
    code = torch.stack([encode(grid_coord, batch, depth, o) for o in orders])  # [K, N]
    order = torch.argsort(code, dim=1)
    return code, order, inverse_permutation(order)


@torch.library.custom_op("lightning_pc::ptv3_serialize", mutates_args=())
def serialize_voxels(
    grid: Tensor, batch: Tensor, orders: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`serialize` at the smallest depth that holds ``grid`` (what
    :meth:`Point.serialization <lightning_pc.nn.point.Point.serialization>` runs without a
    ``depth``).

    A custom op: the depth is read from the data (and the curve loops run ``depth`` times),
    which its kernel does eagerly, so ``torch.compile`` traces it without a graph break.

    Args:
        grid: [N, 3] non-negative ``int64`` grid coordinates.
        batch: [N] cloud index.
        orders: the serialisation orders, comma-separated.

    Returns:
        ``code``, ``order``, ``inverse`` [K, N] (see :func:`serialize`) and the depth, a
        0-d ``int64`` tensor.

    Raises:
        ValueError: see :func:`encode`.
    """
    depth = int(grid.max() + 1).bit_length() if grid.numel() else 0
    code, order, inverse = serialize(grid, batch, depth, tuple(orders.split(",")))
    return code, order, inverse, torch.tensor(depth, device=grid.device)


@serialize_voxels.register_fake
def _serialize_voxels_fake(
    grid: Tensor, batch: Tensor, orders: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    k, n = len(orders.split(",")), grid.size(0)
    rows = grid.new_empty((k, n), dtype=torch.long)
    return (
        rows,
        torch.empty_like(rows),
        torch.empty_like(rows),
        grid.new_empty((), dtype=torch.long),
    )


def inverse_permutation(order: Tensor) -> Tensor:
    """Inverse of each row of ``order`` [K, N] (a permutation per row)."""
    ar = torch.arange(order.size(-1), device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)
