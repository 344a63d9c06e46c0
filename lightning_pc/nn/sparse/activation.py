"""Activations on the features of a sparse tensor."""

from __future__ import annotations

import torch
from torch import nn

from lightning_pc.nn.sparse.tensor import SparseTensor


class SparseReLU(nn.Module):
    """ReLU on the features."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(torch.relu_(x.feats) if self.inplace else torch.relu(x.feats))
