"""Sparse-convolution ResNet classifier on packed point batches.

In the spirit of MinkowskiEngine's ModelNet40 example: points are voxelised (voxel size
0.05 of normalised clouds), a submanifold stem is followed by stages of a kernel-2 stride-2
convolution and residual blocks, then global max and mean pooling and an MLP head. The
augmentations of that recipe (random rotation, scale, shear, translation) belong to the
data layer's transforms, applied before the batch reaches the network.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_pc.models.heads import ClassificationHead, PointNetwork
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point
from lightning_pc.nn.sparse.blocks import ConvBNReLU, SparseBasicBlock
from lightning_pc.nn.sparse.tensor import Reduce


class SparseResNetBackbone(nn.Module):
    """Voxelise, submanifold stem, downsampling stages of residual blocks.

    Voxel features are the mean of the points' ``pos`` (3) and ``x`` (``in_channels``).
    Returns the voxels of the coarsest stage as a :class:`~lightning_pc.nn.point.Point`.

    Args:
        in_channels: width of ``batch.x`` (0: coordinates only).
        voxel_size: voxel edge in the units of ``pos``.
        channels: widths of the stem and of each downsampling stage.
        layers: residual blocks per stage (one entry per stage after the stem).
        reduce: how points are reduced into a voxel (``mean``, ``max``, ``first``).
    """

    def __init__(
        self,
        in_channels: int = 0,
        voxel_size: float = 0.05,
        channels: list[int] | None = None,
        layers: list[int] | None = None,
        reduce: Reduce = "mean",
    ) -> None:
        super().__init__()
        channels = list(channels) if channels is not None else [32, 64, 128, 256]
        layers = list(layers) if layers is not None else [1, 1, 1]
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
        self.out_channels = channels[-1]

    def forward(self, point: Point) -> Point:
        """The coarsest voxels and their features."""
        point = point.for_channels(self.in_channels)
        voxels = point.voxelize(self.voxel_size, self.reduce)
        x = self.stem(voxels.sparse_tensor())
        for stage in self.stages:
            x = stage(x)
        return Point.from_sparse(x, point.num_clouds, self.voxel_size)


def SparseResNet(
    num_classes: int = 40, head: list[int] | None = None, dropout: float = 0.5, **kwargs: Any
) -> PointNetwork:
    """Voxelise, sparse ResNet encoder (:class:`SparseResNetBackbone`), global max + mean
    pooling, MLP (:class:`ClassificationHead`): logits [B, num_classes].

    Args:
        num_classes: classes of the output logits [B, num_classes].
        head: hidden widths of the MLP head (BN, ReLU, dropout after each; ``None``:
            512, 256).
        dropout: dropout of the head.
        **kwargs: :class:`SparseResNetBackbone` arguments (``in_channels``, ``voxel_size``,
            ``channels``, ``layers``, ``reduce``).
    """
    backbone = SparseResNetBackbone(**kwargs)
    hidden = list(head) if head is not None else [512, 256]
    return PointNetwork(
        backbone,
        ClassificationHead(
            backbone.out_channels,
            num_classes,
            "max+mean",
            hidden=hidden,
            dropout=dropout,
            bias=False,
        ),
    )


@register_model("sparse_resnet")
def sparse_resnet(num_classes: int, **kwargs: Any) -> PointNetwork:
    """Sparse ResNet classifier; ``kwargs``: :func:`SparseResNet` arguments."""
    return SparseResNet(num_classes, **kwargs)
