"""spconv's kernel layout in ours, for the key maps of official checkpoints.

spconv 2.x stores a ``SubMConv3d`` / ``SparseConv3d`` kernel as ``[C_out, kx, ky, kz, C_in]``
(its kernel dimensions follow the order of the index columns ``x, y, z``); ours
(:class:`~lightning_pc.nn.sparse.conv.SparseConv3d`) is ``[K, C_in, C_out]`` with the offsets
``x`` slowest. A module of its own (torch only) so that the PT-v3m1 key map
(:mod:`lightning_pc.models.pretrained.keymaps`), the Sonata-family converter
(:mod:`lightning_pc.models.sonata`) and the oracle scripts share it without importing the
pretrained package (whose cards need ``lightning``).
"""

from __future__ import annotations

from torch import Tensor


def spconv_kernel(w: Tensor) -> Tensor:
    """spconv ``[C_out, kx, ky, kz, C_in]`` -> ours ``[kx * ky * kz, C_in, C_out]`` (x slowest)."""
    if w.dim() != 5:
        raise ValueError(f"an spconv kernel is [C_out, kx, ky, kz, C_in], got {tuple(w.shape)}")
    return w.permute(1, 2, 3, 4, 0).reshape(-1, w.size(4), w.size(0))
