"""Batch norm over the sites' features of a sparse tensor."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_pc.nn.mlp import batch_norm_rows
from lightning_pc.nn.sparse.tensor import SparseTensor


class SparseBatchNorm(nn.Module):
    """``nn.BatchNorm1d`` over the sites' features [N, C].

    The norm is a plain ``torch.nn.BatchNorm1d`` child, so ``sync_batchnorm=True``
    (``SyncBatchNorm.convert_sync_batchnorm``) converts it like any other. A single site in
    training is normalised with the running statistics (see
    :func:`lightning_pc.nn.mlp.batch_norm_rows`), also in compiled graphs.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        bn = self.bn
        if (
            torch.compiler.is_compiling()
            and type(bn) is nn.BatchNorm1d
            and bn.running_mean is not None
        ):
            return x.replace(_site_batch_norm(bn, x.feats))
        return x.replace(batch_norm_rows(bn, x.feats))  # one site: running statistics


def _site_batch_norm(bn: nn.BatchNorm1d, h: Tensor) -> Tensor:
    """``batch_norm_rows(bn, h)`` with no branch on the number of rows ``h`` [N, C].

    The site count of a sparse level is data-dependent, so a compiled graph cannot branch
    on ``N == 1`` (nor can ``torch.batch_norm``'s own checks on it): the choice between
    batch and running statistics is a ``torch.where`` on the count instead. Same outputs,
    gradients and running-statistics updates as ``nn.BatchNorm1d`` (running statistics kept
    as they are for a single site, as in eager).
    """
    rm, rv = bn.running_mean, bn.running_var
    assert rm is not None and rv is not None
    if not bn.training:
        mean, var = rm, rv
    else:
        count = torch.ones_like(h[:, 0]).sum()  # N as a tensor
        lone = count < 2  # no batch statistics: use the running ones
        bmean = h.mean(0)
        bvar = h.var(0, correction=0)
        mean = torch.where(lone, rm, bmean)
        var = torch.where(lone, rv, bvar)
        with torch.no_grad():
            tracked = bn.num_batches_tracked
            assert tracked is not None
            tracked.add_((~lone).long())
            if bn.momentum is None:  # cumulative moving average
                m = 1.0 / tracked.clamp_min(1).to(h.dtype)
            else:
                m = torch.full_like(count, bn.momentum)
            unbiased = bvar * (count / (count - 1).clamp_min(1))
            rm.copy_(torch.where(lone, rm, torch.lerp(rm, bmean.detach(), m)))
            rv.copy_(torch.where(lone, rv, torch.lerp(rv, unbiased.detach(), m)))
    out = (h - mean) * torch.rsqrt(var + bn.eps)
    if bn.weight is not None and bn.bias is not None:
        out = out * bn.weight + bn.bias
    return out
