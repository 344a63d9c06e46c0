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
from torch import nn

from lightning_pc.models.heads import PointNetwork, SegmentationHead
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point
from lightning_pc.nn.sparse.blocks import ConvBNReLU, SparseBasicBlock
from lightning_pc.nn.sparse.tensor import Reduce


class SparseUNetBackbone(nn.Module):
    """Voxelise, SpUNet: the stride-1 voxels and their decoder features, as a
    :class:`~lightning_pc.nn.point.Point` whose ``inverse`` maps the input points to them.

    Args:
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
        self.out_channels = width

    def forward(self, point: Point) -> Point:
        """Decoder features of the stride-1 voxels."""
        point = point.for_channels(self.in_channels)
        voxels = point.voxelize(self.voxel_size, self.reduce)
        x = self.stem(voxels.sparse_tensor())  # [V, stem] at stride 1
        skips = [x]
        for down, enc in zip(self.down, self.enc, strict=True):
            x = enc(down(x))
            skips.append(x)
        skips.pop()  # the deepest level is the decoder's input, not a skip
        for up, dec in zip(self.up, self.dec, strict=True):
            x = up(x)
            s = skips.pop()
            x = dec(x.replace(torch.cat([x.feats, s.feats], dim=1)))
        return voxels.with_features(x.feats)  # [V, C]


def SparseUNet(num_classes: int = 13, **kwargs: Any) -> PointNetwork:
    """Voxelise, SpUNet (:class:`SparseUNetBackbone`), a linear
    :class:`SegmentationHead`: per-point logits [N, num_classes] (each point its voxel's).

    Args:
        num_classes: classes of the per-point logits.
        **kwargs: :class:`SparseUNetBackbone` arguments (``in_channels``, ``voxel_size``,
            ``stem_channels``, ``channels``, ``layers``, ``reduce``).
    """
    backbone = SparseUNetBackbone(**kwargs)
    return PointNetwork(backbone, SegmentationHead(backbone.out_channels, num_classes))


@register_model("sparse_unet")
def sparse_unet(num_classes: int, **kwargs: Any) -> PointNetwork:
    """Sparse U-Net semantic segmentation; ``kwargs``: :func:`SparseUNet` arguments."""
    return SparseUNet(num_classes, **kwargs)
