"""Sparse-convolution ResNet classifier on packed point batches.

In the spirit of MinkowskiEngine's ModelNet40 example: points are voxelised (voxel size
0.05 of normalised clouds), a submanifold stem is followed by stages of a kernel-2 stride-2
convolution and residual blocks, then global max and mean pooling and an MLP head. The
augmentations of that recipe (random rotation, scale, shear, translation) belong to the
data layer's transforms, applied before the batch reaches the network.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor, nn

from lightning_pc.models._compat import rename_on_load, unfused_head_key
from lightning_pc.models.heads import ClassificationHead
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point, as_point
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


class SparseResNet(SparseResNetBackbone):
    """Voxelise, sparse ResNet encoder, global max + mean pooling, MLP: logits [B, num_classes].

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
        super().__init__(in_channels, voxel_size, channels, layers, reduce)
        hidden = list(head) if head is not None else [512, 256]
        self.head = ClassificationHead(
            self.out_channels, num_classes, "max+mean", hidden=hidden, dropout=dropout, bias=False
        )
        # checkpoints from before the shared heads: Linear, BatchNorm1d, ReLU, Dropout
        rename_on_load(self, partial(unfused_head_key, hidden=len(hidden)), "head.0.lin.weight")

    def forward(self, data: Any) -> Tensor:  # type: ignore[override]
        """Logits [B, num_classes] of a packed batch (``pos``, optional ``x``, ``batch``)."""
        return self.head(super().forward(as_point(data)))  # type: ignore[no-any-return]


@register_model("sparse_resnet")
def sparse_resnet(num_classes: int, **kwargs: Any) -> SparseResNet:
    """Sparse ResNet classifier; ``kwargs``: :class:`SparseResNet` arguments."""
    return SparseResNet(num_classes, **kwargs)
