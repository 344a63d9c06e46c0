"""Residual blocks of sparse networks: conv-BN-ReLU and the ResNet basic block."""

from __future__ import annotations

from torch import nn

from lightning_pc.nn.sparse.activation import SparseReLU
from lightning_pc.nn.sparse.conv import SparseConv3d, SparseConvTranspose3d
from lightning_pc.nn.sparse.norm import SparseBatchNorm
from lightning_pc.nn.sparse.tensor import SparseTensor


class ConvBNReLU(nn.Sequential):
    """``SparseConv3d`` (or its transpose) without bias, ``BatchNorm1d``, ``ReLU``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        transposed: bool = False,
    ) -> None:
        conv_cls = SparseConvTranspose3d if transposed else SparseConv3d
        super().__init__(
            conv_cls(in_channels, out_channels, kernel_size, stride),
            SparseBatchNorm(out_channels),
            SparseReLU(),
        )


class SparseBasicBlock(nn.Module):
    """ResNet basic block on submanifold 3x3x3 convolutions.

    ``y = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with a 1x1 conv + BN shortcut
    when the widths differ.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = SparseConv3d(in_channels, out_channels, kernel_size)
        self.bn1 = SparseBatchNorm(out_channels)
        self.conv2 = SparseConv3d(out_channels, out_channels, kernel_size)
        self.bn2 = SparseBatchNorm(out_channels)
        self.relu = SparseReLU()
        self.shortcut: nn.Module
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                SparseConv3d(in_channels, out_channels, 1), SparseBatchNorm(out_channels)
            )

    def forward(self, x: SparseTensor) -> SparseTensor:
        h = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        s = self.shortcut(x)
        return h.replace(self.relu(h.replace(h.feats + s.feats)).feats)
