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

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.models._batch import unpack
from lightning_pc.nn.edge_conv import EdgeConv
from lightning_pc.nn.knn_graph import KnnMode, knn_table
from lightning_pc.nn.mlp import LinearBNAct
from lightning_pc.nn.segment import segment_max, segment_mean
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


class DGCNN(nn.Module):
    """DGCNN on packed batches.

    Args:
        num_classes: output classes (shape classes, or part / semantic labels).
        task: ``"classification"`` (logits ``[B, num_classes]``), ``"part_segmentation"``
            or ``"semantic_segmentation"`` (logits ``[N, num_classes]``).
        in_channels: per-point features in ``batch.x`` appended to the coordinates
            (e.g. 6 for S3DIS colour + normalised room coordinates); 0: coordinates only.
        k: neighbours per point (self included).
        edge_mlps: widths of each EdgeConv's edge MLP (``None``: the paper's for ``task``).
        emb_dims: width of the shared layer before global pooling.
        head: hidden widths of the head (``None``: the paper's).
        dropout: dropout probability in the head.
        dropout_layers: indices of the head's hidden layers followed by dropout
            (``None``: the paper's placement).
        negative_slope: LeakyReLU slope.
        transform: spatial transformer on the coordinates (``None``: only for part
            segmentation, as the paper).
        num_categories: object categories one-hot encoded for part segmentation.
        category_channels: width of the category embedding (part segmentation).
        knn: ``"padded"`` (dense distances + top-k per cloud) or ``"packed"``
            (:func:`lightning_pc.ops.knn`); same graphs.
    """

    def __init__(
        self,
        num_classes: int = 40,
        task: Task = "classification",
        in_channels: int = 0,
        k: int = 20,
        edge_mlps: list[list[int]] | None = None,
        emb_dims: int = 1024,
        head: list[int] | None = None,
        dropout: float = 0.5,
        dropout_layers: list[int] | None = None,
        negative_slope: float = 0.2,
        transform: bool | None = None,
        num_categories: int = 16,
        category_channels: int = 64,
        knn: KnnMode = "padded",
    ) -> None:
        super().__init__()
        if task not in _PRESETS:
            raise ValueError(f"unknown task {task!r}")
        preset = _PRESETS[task]
        edge_mlps = preset["edge_mlps"] if edge_mlps is None else edge_mlps
        head = preset["head"] if head is None else head
        dropout_layers = preset["dropout_layers"] if dropout_layers is None else dropout_layers
        transform = preset["transform"] if transform is None else transform
        self.task = task
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.k = k
        self.knn = knn
        self.num_categories = num_categories
        slope = negative_slope

        self.transform = TransformNet(slope) if transform else None
        self.convs = nn.ModuleList()
        width, cat_width = 3 + in_channels, 0
        for mlp in edge_mlps:
            conv = EdgeConv(width, mlp, slope)
            self.convs.append(conv)
            width = conv.out_channels
            cat_width += width
        self.embed = LinearBNAct(
            cat_width, emb_dims, bias=False, act="leaky_relu", negative_slope=slope
        )

        self.category = None
        if task == "classification":
            top = 2 * emb_dims  # max and mean pooling
        else:
            top = emb_dims + cat_width
            if task == "part_segmentation":
                self.category = LinearBNAct(
                    num_categories,
                    category_channels,
                    bias=False,
                    act="leaky_relu",
                    negative_slope=slope,
                )
                top += category_channels
        layers: list[nn.Module] = []
        for i, width in enumerate(head):
            # the paper's classifier has a bias from its second FC on; seg heads have none
            bias = task == "classification" and i > 0
            layers.append(
                LinearBNAct(top, width, bias=bias, act="leaky_relu", negative_slope=slope)
            )
            if i in dropout_layers:
                layers.append(nn.Dropout(dropout))
            top = width
        layers.append(nn.Linear(top, num_classes, bias=task == "classification"))
        self.head = nn.Sequential(*layers)

    def forward(self, data: Any) -> Tensor:
        """Logits: ``[B, num_classes]`` (classification) or ``[N, num_classes]``."""
        pos, x, batch, ptr = unpack(data, self.in_channels)
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
        if self.task == "classification":
            g = torch.cat([segment_max(emb, ptr), segment_mean(emb, ptr)], 1)  # [B, 2 emb]
            return self.head(g)
        g = segment_max(emb, ptr)  # [B, emb]
        if self.category is not None:
            category = getattr(data, "category", None)
            if category is None:
                raise ValueError("part segmentation needs batch.category ([B] category index)")
            onehot = F.one_hot(category.view(-1).long(), self.num_categories).to(emb.dtype)
            g = torch.cat([g, self.category(onehot)], 1)  # [B, emb + 64]
        return self.head(torch.cat([g[batch], cat], 1))  # [N, num_classes]
