"""Reading the packed batch contract (``pos``, ``x``, ``batch``, ``ptr``, ``category``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_pc.nn.segment import ptr_from_index


class Packed(NamedTuple):
    pos: Tensor  # [N, 3]
    x: Tensor | None  # [N, C]
    batch: Tensor  # [N]
    ptr: Tensor  # [B + 1]

    @property
    def num_clouds(self) -> int:
        return self.ptr.numel() - 1


def unpack(data: Any, in_channels: int) -> Packed:
    """Checked fields of a PyG ``Batch`` (or ``Data``, or anything with the same attributes).

    Args:
        data: the batch; ``x`` is required when ``in_channels > 0`` and ignored otherwise.
        in_channels: the feature width the model was built for.
    """
    pos = data.pos
    if pos is None or pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"expected batch.pos of shape [N, 3], got {getattr(pos, 'shape', None)}")
    x = getattr(data, "x", None) if in_channels > 0 else None
    if in_channels > 0:
        if x is None or x.dim() != 2 or x.size(1) != in_channels:
            raise ValueError(
                f"the model was built for in_channels={in_channels} point features, "
                f"got batch.x of shape {getattr(x, 'shape', None)}"
            )
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    ptr = getattr(data, "ptr", None)
    if ptr is None:
        num_clouds = int(batch.max()) + 1 if batch.numel() else 0
        ptr = ptr_from_index(batch, num_clouds)
    return Packed(pos, x, batch, ptr)
