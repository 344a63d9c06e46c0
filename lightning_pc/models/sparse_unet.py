"""Sparse-convolution U-Net (SpUNet / MinkUNet layout) for semantic segmentation.

A 5x5x5 submanifold stem; four encoder stages, each a kernel-2 stride-2 convolution then
residual blocks of 3x3x3 submanifold convolutions; four decoder stages, each a transposed
kernel-2 stride-2 convolution that reuses the encoder's map, a concatenated skip from the
encoder level it returns to, and residual blocks; a 1x1 head. Channels
32, 64, 128, 256 | 256, 128, 96, 96 and blocks 2, 3, 4, 6 | 2, 2, 2, 2 by default.
Predictions are given on every original point (each point takes its voxel's logits).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_pc.models._batch import unpack
from lightning_pc.nn.sparse.blocks import ConvBNReLU, SparseBasicBlock
from lightning_pc.nn.sparse.tensor import Reduce, devoxelize, voxelize


class SparseUNet(nn.Module):
    """Voxelise, SpUNet, per-point logits [N, num_classes].

    Args:
        num_classes: classes of the per-point logits.
        in_channels: width of ``batch.x`` (e.g. 3 for colours; 0: coordinates only). Voxel
            features are the mean of the points' ``pos`` and ``x``.
        voxel_size: voxel edge in the units of ``pos`` (metres for scenes).
        stem_channels: width of the 5x5x5 stem.
        channels: encoder widths then decoder widths (same number of each).
        layers: residual blocks per encoder stage then per decoder stage.
        reduce: how points are reduced into a voxel (``mean``, ``max``, ``first``).
    """

    def __init__(
        self,
        num_classes: int = 13,
        in_channels: int = 0,
        voxel_size: float = 0.05,
        stem_channels: int = 32,
        channels: list[int] | None = None,
        layers: list[int] | None = None,
        reduce: Reduce = "mean",
    ) -> None:
        super().__init__()
        channels = list(channels) if channels is not None else [32, 64, 128, 256, 256, 128, 96, 96]
        layers = list(layers) if layers is not None else [2, 3, 4, 6, 2, 2, 2, 2]
        if len(channels) % 2 or len(layers) != len(channels):
            raise ValueError("channels and layers need one entry per encoder and decoder stage")
        depth = len(channels) // 2
        self.in_channels = in_channels
        self.voxel_size = voxel_size
        self.reduce: Reduce = reduce
        self.stem = ConvBNReLU(3 + in_channels, stem_channels, 5)
        enc_widths = [stem_channels] + channels[:depth]  # width at stride 2**i
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i in range(depth):
            c = channels[i]
            self.down.append(ConvBNReLU(enc_widths[i], c, 2, stride=2))
            self.enc.append(nn.Sequential(*[SparseBasicBlock(c, c) for _ in range(layers[i])]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        width = channels[depth - 1]
        for j in range(depth):
            c = channels[depth + j]
            skip = enc_widths[depth - 1 - j]
            self.up.append(ConvBNReLU(width, c, 2, stride=2, transposed=True))
            blocks = [SparseBasicBlock(c + skip, c)]
            blocks += [SparseBasicBlock(c, c) for _ in range(layers[depth + j] - 1)]
            self.dec.append(nn.Sequential(*blocks))
            width = c
        self.head = nn.Linear(width, num_classes)

    def forward(self, data: Any) -> Tensor:
        """Logits [N, num_classes] for every point of a packed batch."""
        p = unpack(data, self.in_channels)
        feats = p.pos if p.x is None else torch.cat([p.pos, p.x], dim=1)  # [N, 3 + C]
        x, inverse = voxelize(p.pos, feats, p.batch, self.voxel_size, self.reduce)
        x = self.stem(x)  # [V, stem] at stride 1
        skips = [x]
        for down, enc in zip(self.down, self.enc, strict=True):
            x = enc(down(x))
            skips.append(x)
        skips.pop()  # the deepest level is the decoder's input, not a skip
        for up, dec in zip(self.up, self.dec, strict=True):
            x = up(x)
            s = skips.pop()
            x = dec(x.replace(torch.cat([x.feats, s.feats], dim=1)))
        x = x.replace(self.head(x.feats))  # [V, num_classes]
        return devoxelize(x, inverse)  # [N, num_classes]
