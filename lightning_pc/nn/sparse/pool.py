"""Per-cloud pooling of the features of a sparse tensor."""

from __future__ import annotations

from torch import Tensor

from lightning_pc.nn.sparse.tensor import SparseTensor


def global_pool(x: SparseTensor, batch_size: int, reduce: str = "max") -> Tensor:
    """Per-cloud pooling of the features: [N, C] -> [B, C] (``"max"`` or ``"mean"``).

    Clouds without sites get zeros.
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    feats = x.feats
    idx = x.batch.view(-1, 1).expand_as(feats)
    out = feats.new_zeros(batch_size, feats.size(1))
    return out.scatter_reduce(
        0, idx, feats, reduce="amax" if reduce == "max" else "mean", include_self=False
    )


def global_max_pool(x: SparseTensor, batch_size: int) -> Tensor:
    """[B, C] maximum of each cloud's site features."""
    return global_pool(x, batch_size, "max")


def global_mean_pool(x: SparseTensor, batch_size: int) -> Tensor:
    """[B, C] mean of each cloud's site features."""
    return global_pool(x, batch_size, "mean")
