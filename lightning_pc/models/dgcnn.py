"""DGCNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", TOG 2019).

Defaults are the published architectures (the authors' PyTorch release):

- classification: EdgeConv 64, 64, 128, 256 on kNN graphs (k = 20) rebuilt from the
  features of the previous layer; concatenation (512) -> shared layer 1024; max and mean
  pooling (2048); FC 512 (no bias) and 256, each with batch norm, LeakyReLU(0.2) and dropout
  0.5; final linear layer;
- part segmentation: a spatial transformer on the coordinates, EdgeConv 64-64, 64-64, 64;
  concatenation (192) -> 1024, max pooled, with the object category (one-hot 16 -> 64)
  appended and broadcast to the points beside the three EdgeConv outputs (1280);
  shared layers 256, 256, 128 (dropout 0.5 after the first two) and a linear classifier;
- semantic segmentation: EdgeConv 64-64, 64-64, 64 on ``[pos, x]`` (the first graph in
  coordinate space); 1024 max pooled and broadcast beside the EdgeConv outputs (1216);
  shared layers 512, 256, dropout 0.5, linear classifier.

The first graph is built on the coordinates (identical to the reference for xyz input);
later graphs on the features of the previous EdgeConv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from lightning_pc.models.heads import (
    CategoryEmbedding,
    ClassificationHead,
    PointNetwork,
    SegmentationHead,
)
from lightning_pc.models.registry import register_model
from lightning_pc.nn.edge_conv import EdgeConv
from lightning_pc.nn.knn_graph import KnnMode, knn_table
from lightning_pc.nn.mlp import LinearBNAct
from lightning_pc.nn.point import Point
from lightning_pc.nn.segment import segment_max
from lightning_pc.nn.transform_net import TransformNet

Task = Literal["classification", "part_segmentation", "semantic_segmentation"]

# Per task: edge_mlps, head, dropout_layers (head layers followed by dropout), transform.
_PRESETS: dict[str, dict[str, Any]] = {
    "classification": dict(
        edge_mlps=[[64], [64], [128], [256]],
        head=[512, 256],
        dropout_layers=[0, 1],
        transform=False,
    ),
    "part_segmentation": dict(
        edge_mlps=[[64, 64], [64, 64], [64]],
        head=[256, 256, 128],
        dropout_layers=[0, 1],
        transform=True,
    ),
    "semantic_segmentation": dict(
        edge_mlps=[[64, 64], [64, 64], [64]], head=[512, 256], dropout_layers=[1], transform=False
    ),
}


class DGCNNBackbone(nn.Module):
    """DGCNN features: an optional spatial transformer, EdgeConvs on kNN graphs rebuilt from
    each layer's features, their concatenation through a shared layer (``emb_dims``).

    Returns a :class:`~lightning_pc.nn.point.Point` whose ``x`` is, per point, the shared
    layer's output ``[N, emb_dims]`` (``local=False``) or the cloud's max-pooled shared
    layer, the cloud's category embedding (part segmentation) and the point's EdgeConv
    outputs side by side ``[N, emb_dims + category_channels + sum C_i]`` (``local=True``, as
    the segmentation networks read it).

    Args:
        in_channels: per-point features appended to the coordinates (0: coordinates only).
        edge_mlps: widths of each EdgeConv's edge MLP.
        k: neighbours per point (self included).
        emb_dims: width of the shared layer.
        negative_slope: LeakyReLU slope.
        transform: spatial transformer on the coordinates.
        knn: ``"padded"`` (dense distances + top-k per cloud) or ``"packed"``
            (:func:`lightning_pc.ops.knn`); same graphs.
        local: segmentation output (see above).
        num_categories: object categories embedded beside the pooled features (part
            segmentation, ``batch.category``; needs ``local``); 0: none.
        category_channels: width of the category embedding.
    """

    def __init__(
        self,
        in_channels: int,
        edge_mlps: Sequence[Sequence[int]],
        k: int = 20,
        emb_dims: int = 1024,
        negative_slope: float = 0.2,
        transform: bool = False,
        knn: KnnMode = "padded",
        local: bool = False,
        num_categories: int = 0,
        category_channels: int = 64,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.k = k
        self.knn = knn
        self.local = local
        self.negative_slope = negative_slope
        self.num_categories = num_categories
        self.transform = TransformNet(negative_slope) if transform else None
        self.convs = nn.ModuleList()
        width, cat_width = 3 + in_channels, 0
        for mlp in edge_mlps:
            conv = EdgeConv(width, mlp, negative_slope)
            self.convs.append(conv)
            width = conv.out_channels
            cat_width += width
        self.embed = LinearBNAct(
            cat_width, emb_dims, bias=False, act="leaky_relu", negative_slope=negative_slope
        )
        self.out_channels = emb_dims + cat_width if local else emb_dims
        self.category = None
        if num_categories:
            if not local:
                raise ValueError("the category embedding needs local=True (part segmentation)")
            self.category = CategoryEmbedding(
                num_categories,
                category_channels,
                bias=False,
                act="leaky_relu",
                negative_slope=negative_slope,
            )
            self.out_channels += category_channels

    def forward(self, point: Point) -> Point:
        """Per-point features (see the class docstring)."""
        point = point.for_channels(self.in_channels)
        pos, x, batch, ptr = point.pos, point.x, point.batch, point.ptr
        neighbours = knn_table(pos, batch, ptr, self.k, self.knn)  # [N, k]
        if self.transform is not None:
            t = self.transform(pos, neighbours, ptr)  # [B, 3, 3]
            pos = torch.bmm(pos.unsqueeze(1), t[batch]).squeeze(1)  # [N, 3]
            neighbours = knn_table(pos, batch, ptr, self.k, self.knn)
        h = pos if x is None else torch.cat([pos, x], 1)  # [N, 3 + C_in]
        outs = []
        for i, conv in enumerate(self.convs):
            if i > 0:
                neighbours = knn_table(h, batch, ptr, self.k, self.knn)
            h = conv(h, neighbours)  # [N, C_i]
            outs.append(h)
        cat = torch.cat(outs, 1)  # [N, sum C_i]
        emb = self.embed(cat)  # [N, emb]
        if not self.local:
            return point.with_features(emb)
        g = segment_max(emb, ptr)  # [B, emb]
        if self.category is not None:
            g = torch.cat([g, self.category(point)], 1)  # [B, emb + 64]
        return point.with_features(torch.cat([g[batch], cat], 1))  # [N, emb (+ 64) + sum C_i]


def DGCNN(
    num_classes: int = 40,
    task: Task = "classification",
    head: list[int] | None = None,
    dropout: float = 0.5,
    dropout_layers: list[int] | None = None,
    num_categories: int = 16,
    **kwargs: Any,
) -> PointNetwork:
    """DGCNN on packed batches: :class:`DGCNNBackbone` with the published architecture for
    ``task``, and a head.

    Args:
        num_classes: output classes (shape classes, or part / semantic labels).
        task: ``"classification"`` (logits ``[B, num_classes]``: max and mean pooling, then
            :class:`ClassificationHead`), ``"part_segmentation"`` or
            ``"semantic_segmentation"`` (logits ``[N, num_classes]``: :class:`SegmentationHead`).
        head: hidden widths of the head (``None``: the paper's).
        dropout: dropout probability in the head.
        dropout_layers: indices of the head's hidden layers followed by dropout
            (``None``: the paper's placement).
        num_categories: object categories one-hot encoded for part segmentation; ignored by
            the other tasks.
        **kwargs: :class:`DGCNNBackbone` arguments (``in_channels`` (e.g. 6 for S3DIS colour
            + normalised room coordinates), ``k``, ``edge_mlps``, ``emb_dims``,
            ``negative_slope`` (the head's too), ``transform``, ``category_channels``,
            ``knn``); ``edge_mlps`` and ``transform`` left out or ``None`` are the paper's
            for ``task`` (the spatial transformer only for part segmentation).

    Raises:
        ValueError: an unknown task.
    """
    if task not in _PRESETS:
        raise ValueError(f"unknown task {task!r}")
    preset = _PRESETS[task]
    arch: dict[str, Any] = {"in_channels": 0, **kwargs}
    for key in ("edge_mlps", "transform"):
        if arch.get(key) is None:
            arch[key] = preset[key]
    arch["local"] = task != "classification"
    arch["num_categories"] = num_categories if task == "part_segmentation" else 0
    backbone = DGCNNBackbone(**arch)
    hidden = preset["head"] if head is None else head
    options: dict[str, Any] = dict(
        hidden=hidden,
        dropout=dropout,
        dropout_layers=preset["dropout_layers"] if dropout_layers is None else dropout_layers,
        act="leaky_relu",
        negative_slope=backbone.negative_slope,
    )
    width = backbone.out_channels
    if task == "classification":
        # max and mean pooling; the paper's classifier has a bias from its second FC on
        bias = [i > 0 for i in range(len(hidden))]
        return PointNetwork(
            backbone, ClassificationHead(width, num_classes, "max+mean", bias=bias, **options)
        )
    return PointNetwork(
        backbone, SegmentationHead(width, num_classes, bias=False, final_bias=False, **options)
    )


@register_model("dgcnn")
def dgcnn(num_classes: int, **kwargs: Any) -> PointNetwork:
    """DGCNN classifier (ModelNet40 shapes); ``kwargs``: :func:`DGCNN` arguments."""
    return DGCNN(num_classes, "classification", **kwargs)


@register_model("dgcnn_part_seg")
def dgcnn_part_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """DGCNN part segmentation (ShapeNetPart); ``kwargs``: :func:`DGCNN` arguments."""
    return DGCNN(num_classes, "part_segmentation", **kwargs)


@register_model("dgcnn_sem_seg")
def dgcnn_sem_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """DGCNN semantic segmentation (S3DIS blocks); ``kwargs``: :func:`DGCNN` arguments."""
    return DGCNN(num_classes, "semantic_segmentation", **kwargs)
