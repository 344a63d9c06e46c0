"""Norms, activations and pooling on the features of a sparse tensor."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_pc.nn.mlp import batch_norm_rows
from lightning_pc.nn.sparse.tensor import SparseTensor


class SparseBatchNorm(nn.Module):
    """``nn.BatchNorm1d`` over the sites' features [N, C].

    The norm is a plain ``torch.nn.BatchNorm1d`` child, so ``sync_batchnorm=True``
    (``SyncBatchNorm.convert_sync_batchnorm``) converts it like any other.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(batch_norm_rows(self.bn, x.feats))  # one site: running statistics


class SparseReLU(nn.Module):
    """ReLU on the features."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(torch.relu_(x.feats) if self.inplace else torch.relu(x.feats))


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
