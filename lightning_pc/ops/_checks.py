"""Input validation and batch bookkeeping shared by every op.

Every public op funnels its inputs through here, so that all backends see the same
canonical form: 2-D point tensors, finite coordinates, and clouds stored contiguously in
ascending cloud order, described by CSR offsets (``ptr``). Unsorted ``batch`` vectors are
accepted: the points are stably sorted by cloud and the results mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def check_points(name: str, pos: Tensor, dim: int | None = None) -> Tensor:
    """Returns ``pos`` as a 2-D tensor, raising ``ValueError`` on bad shape or values."""
    if not isinstance(pos, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pos).__name__}")
    if pos.dim() == 1:
        pos = pos.view(-1, 1)
    if pos.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {pos.dtype}")
    if dim is not None and pos.size(1) != dim:
        raise ValueError(f"{name} has {pos.size(1)} coordinates per point, expected {dim}")
    if pos.numel() > 0 and not bool(torch.isfinite(pos).all()):
        bad = int((~torch.isfinite(pos)).any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{name} contains NaN or infinite coordinates (first at point {bad}); "
            "clean the cloud before calling neighbour ops"
        )
    return pos


@dataclass
class Packed:
    """Points sorted by cloud.

    Attributes:
        pos: ``[N, D]`` points, clouds contiguous and in ascending order.
        ptr: ``[B + 1]`` CPU offsets of each cloud in ``pos``.
        perm: ``[N]`` original index of each sorted point, or ``None`` when the input was
            already sorted (the common case, which then costs no copy).
    """

    pos: Tensor
    ptr: Tensor
    perm: Tensor | None

    @property
    def num_clouds(self) -> int:
        return self.ptr.numel() - 1

    def counts(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def original(self, index: Tensor) -> Tensor:
        """Maps indices into the sorted points back to the caller's indexing."""
        return index if self.perm is None else self.perm[index]


def num_clouds(*batches: Tensor | None, batch_size: int | None = None) -> int:
    """Number of clouds described by one or more batch vectors."""
    if batch_size is not None:
        return int(batch_size)
    sizes = [int(b.max()) + 1 for b in batches if b is not None and b.numel() > 0]
    return max(sizes, default=1)


def pack(name: str, pos: Tensor, batch: Tensor | None, size: int) -> Packed:
    """Sorts ``pos`` by ``batch`` (stable) and computes offsets for ``size`` clouds."""
    n = pos.size(0)
    if batch is None:
        ptr = torch.tensor([0, n], dtype=torch.long)
        if size > 1:  # a cloud with no batch vector is cloud 0; the others are empty
            ptr = torch.cat([ptr, torch.full((size - 1,), n, dtype=torch.long)])
        return Packed(pos, ptr, None)
    if batch.dim() != 1 or batch.numel() != n:
        raise ValueError(
            f"batch vector of {name} must have shape [{n}] (one cloud index per point), "
            f"got {tuple(batch.shape)}"
        )
    if batch.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"batch vector of {name} must hold integers, got {batch.dtype}")
    if batch.device != pos.device:
        raise ValueError(f"batch vector of {name} is on {batch.device} but {name} on {pos.device}")
    batch = batch.long()
    perm = None
    if n > 0:
        if int(batch.min()) < 0:
            raise ValueError(f"batch vector of {name} holds negative cloud indices")
        if int(batch.max()) >= size:
            raise ValueError(
                f"batch vector of {name} refers to cloud {int(batch.max())} but batch_size is {size}"
            )
        if n > 1 and not bool((batch[1:] >= batch[:-1]).all()):
            perm = torch.sort(batch, stable=True).indices
            batch = batch[perm]
            pos = pos[perm]
    counts = torch.bincount(batch.cpu(), minlength=size)
    ptr = torch.zeros(size + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=ptr[1:])
    return Packed(pos, ptr, perm)


def restore_rows(row: Tensor, col: Tensor, y: Packed, x: Packed) -> tuple[Tensor, Tensor]:
    """Maps ``(row, col)`` from sorted space back, keeping rows ascending.

    Within one row the backend's neighbour order (by distance) is kept: the re-sort is stable.
    """
    row, col = y.original(row), x.original(col)
    if y.perm is not None:
        order = torch.sort(row, stable=True).indices
        row, col = row[order], col[order]
    return row, col


def same_device(a: Tensor, b: Tensor, names: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{names} must be on the same device, got {a.device} and {b.device}")
