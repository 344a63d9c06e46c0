"""Sparse-convolution ResNet classifier on packed point batches.

In the spirit of MinkowskiEngine's ModelNet40 example: points are voxelised (voxel size
0.05 of normalised clouds), a submanifold stem is followed by stages of a kernel-2 stride-2
convolution and residual blocks, then global max and mean pooling and an MLP head. The
augmentations of that recipe (random rotation, scale, shear, translation) belong to the
data layer's transforms, applied before the batch reaches the network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_pc.models._batch import unpack
from lightning_pc.nn.mlp import RowBatchNorm1d
from lightning_pc.nn.sparse.blocks import ConvBNReLU, SparseBasicBlock
from lightning_pc.nn.sparse.pool import global_max_pool, global_mean_pool
from lightning_pc.nn.sparse.tensor import Reduce, voxelize


class SparseResNet(nn.Module):
    """Voxelise, sparse ResNet encoder, global max + mean pooling, MLP.

    Voxel features are the mean of the points' ``pos`` (3) and ``x`` (``in_channels``).

    Args:
        num_classes: classes of the output logits [B, num_classes].
        in_channels: width of ``batch.x`` (0: coordinates only).
        voxel_size: voxel edge in the units of ``pos``.
        channels: widths of the stem and of each downsampling stage.
        layers: residual blocks per stage (one entry per stage after the stem).
        head: hidden widths of the MLP head (BN, ReLU, dropout after each).
        dropout: dropout of the head.
        reduce: how points are reduced into a voxel (``mean``, ``max``, ``first``).
    """

    def __init__(
        self,
        num_classes: int = 40,
        in_channels: int = 0,
        voxel_size: float = 0.05,
        channels: list[int] | None = None,
        layers: list[int] | None = None,
        head: list[int] | None = None,
        dropout: float = 0.5,
        reduce: Reduce = "mean",
    ) -> None:
        super().__init__()
        channels = list(channels) if channels is not None else [32, 64, 128, 256]
        layers = list(layers) if layers is not None else [1, 1, 1]
        head = list(head) if head is not None else [512, 256]
        if len(layers) != len(channels) - 1:
            raise ValueError("layers needs one entry per stage: len(channels) - 1")
        self.in_channels = in_channels
        self.voxel_size = voxel_size
        self.reduce: Reduce = reduce
        self.stem = ConvBNReLU(3 + in_channels, channels[0], 3)
        stages = []
        for i, n in enumerate(layers):
            blocks: list[nn.Module] = [ConvBNReLU(channels[i], channels[i + 1], 2, stride=2)]
            blocks += [SparseBasicBlock(channels[i + 1], channels[i + 1]) for _ in range(n)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        mlp: list[nn.Module] = []
        width = 2 * channels[-1]
        for h in head:
            mlp += [nn.Linear(width, h, bias=False), RowBatchNorm1d(h), nn.ReLU(True)]
            mlp += [nn.Dropout(dropout)]
            width = h
        mlp.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*mlp)

    def forward(self, data: Any) -> Tensor:
        """Logits [B, num_classes] of a packed batch (``pos``, optional ``x``, ``batch``)."""
        p = unpack(data, self.in_channels)
        feats = p.pos if p.x is None else torch.cat([p.pos, p.x], dim=1)  # [N, 3 + C]
        x, _ = voxelize(p.pos, feats, p.batch, self.voxel_size, self.reduce)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        b = p.num_clouds
        pooled = torch.cat([global_max_pool(x, b), global_mean_pool(x, b)], dim=1)  # [B, 2C]
        return self.head(pooled)  # type: ignore[no-any-return]
