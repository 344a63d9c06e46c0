"""PointNet++ (Qi et al., NeurIPS 2017): classification, part and semantic segmentation.

Defaults are the published architectures (the authors' TensorFlow release):

- classification, SSG: SA(512 centres, r 0.2, 32, MLP 64-64-128), SA(128, r 0.4, 64,
  128-128-256), global SA(256-512-1024), FC 512-256 with batch norm and dropout 0.5;
- classification, MSG: SA(512, r 0.1/0.2/0.4, 16/32/128, [32-32-64, 64-64-128, 64-96-128]),
  SA(128, r 0.2/0.4/0.8, 32/64/128, [64-64-128, 128-128-256, 128-128-256]), global SA, FC;
- part segmentation (2048 points, normals as features): SSG SA(512, r 0.2, 64, 64-64-128),
  SA(128, r 0.4, 64, 128-128-256), global SA(256-512-1024); MSG SA(512, r 0.1/0.2/0.4,
  32/64/128), SA(128, r 0.4/0.8, 64/128, [128-128-256, 128-196-256]), global SA; feature
  propagation 256-256, 256-128, 128-128(-128) whose last level also receives the one-hot
  object category, the coordinates and the input features; head 128, dropout 0.5;
- semantic segmentation (4096-point blocks): four SA levels of 1024/256/64/16 centres
  (r 0.1/0.2/0.4/0.8, 32 samples, MLPs 32-32-64 ... 256-256-512), feature propagation
  256-256, 256-256, 256-128, 128-128-128, head 128, dropout 0.5. The MSG variant follows
  the widely used PyTorch port (Yan Xu, ``pointnet2_sem_seg_msg``).

Centre counts are given as fractions (``ratios``) of each cloud, which keeps variable-size
clouds meaningful: 0.5 then 0.25 of a 1024-point cloud are the paper's 512 and 128.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_pc.models.heads import (
    ClassificationHead,
    PointNetwork,
    SegmentationHead,
    category_onehot,
)
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point
from lightning_pc.nn.pointnet2 import (
    BallQuery,
    FeaturePropagation,
    GlobalSetAbstraction,
    SetAbstraction,
)

Task = Literal["classification", "part_segmentation", "semantic_segmentation"]
Grouping = Literal["ssg", "msg"]

# Per (task, grouping): ratios, radii, num_samples, sa_mlps, global_mlp, fp_mlps, head.
_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("classification", "ssg"): dict(
        ratios=[0.5, 0.25],
        radii=[[0.2], [0.4]],
        num_samples=[[32], [64]],
        sa_mlps=[[[64, 64, 128]], [[128, 128, 256]]],
        global_mlp=[256, 512, 1024],
        fp_mlps=[],
        head=[512, 256],
    ),
    ("classification", "msg"): dict(
        ratios=[0.5, 0.25],
        radii=[[0.1, 0.2, 0.4], [0.2, 0.4, 0.8]],
        num_samples=[[16, 32, 128], [32, 64, 128]],
        sa_mlps=[
            [[32, 32, 64], [64, 64, 128], [64, 96, 128]],
            [[64, 64, 128], [128, 128, 256], [128, 128, 256]],
        ],
        global_mlp=[256, 512, 1024],
        fp_mlps=[],
        head=[512, 256],
    ),
    ("part_segmentation", "ssg"): dict(
        ratios=[0.25, 0.25],
        radii=[[0.2], [0.4]],
        num_samples=[[64], [64]],
        sa_mlps=[[[64, 64, 128]], [[128, 128, 256]]],
        global_mlp=[256, 512, 1024],
        fp_mlps=[[256, 256], [256, 128], [128, 128, 128]],
        head=[128],
    ),
    ("part_segmentation", "msg"): dict(
        ratios=[0.25, 0.25],
        radii=[[0.1, 0.2, 0.4], [0.4, 0.8]],
        num_samples=[[32, 64, 128], [64, 128]],
        sa_mlps=[
            [[32, 32, 64], [64, 64, 128], [64, 96, 128]],
            [[128, 128, 256], [128, 196, 256]],
        ],
        global_mlp=[256, 512, 1024],
        fp_mlps=[[256, 256], [256, 128], [128, 128]],
        head=[128],
    ),
    ("semantic_segmentation", "ssg"): dict(
        ratios=[0.25, 0.25, 0.25, 0.25],
        radii=[[0.1], [0.2], [0.4], [0.8]],
        num_samples=[[32], [32], [32], [32]],
        sa_mlps=[[[32, 32, 64]], [[64, 64, 128]], [[128, 128, 256]], [[256, 256, 512]]],
        global_mlp=[],
        fp_mlps=[[256, 256], [256, 256], [256, 128], [128, 128, 128]],
        head=[128],
    ),
    ("semantic_segmentation", "msg"): dict(
        ratios=[0.25, 0.25, 0.25, 0.25],
        radii=[[0.05, 0.1], [0.1, 0.2], [0.2, 0.4], [0.4, 0.8]],
        num_samples=[[16, 32], [16, 32], [16, 32], [16, 32]],
        sa_mlps=[
            [[16, 16, 32], [32, 32, 64]],
            [[64, 64, 128], [64, 96, 128]],
            [[128, 196, 256], [128, 196, 256]],
            [[256, 256, 512], [256, 384, 512]],
        ],
        global_mlp=[],
        fp_mlps=[[256, 256], [256, 256], [256, 128], [128, 128, 128]],
        head=[128],
    ),
}


class PointNet2Backbone(nn.Module):
    """PointNet++ features: set abstraction levels, an optional global level, and feature
    propagation back to the input points when ``fp_mlps`` is given.

    Returns a :class:`~lightning_pc.nn.point.Point` of features: one row per cloud (the
    global level) without feature propagation, else one row per input point.

    Args:
        in_channels: per-point input features (0: coordinates only).
        ratios: fraction of points kept as centres at each level.
        radii: ball radii per level (one per scale).
        num_samples: most neighbours per ball, per level and scale.
        sa_mlps: MLP widths per level and scale.
        global_mlp: MLP of the global level (empty: none).
        fp_mlps: feature propagation MLPs, coarsest first (empty: encoder only).
        num_categories: object categories one-hot encoded into the finest propagation
            level with the coordinates (part segmentation); 0: none.
        random_start: random first centre of farthest point sampling in training.
        ball_query: which points a ball holding more than its ``num_samples`` keeps:
            ``"first"`` in storage order (the authors' kernel; default) or ``"nearest"``
            (independent of the point order; learned slower on real ModelNet10, see
            :mod:`lightning_pc.nn.pointnet2`).
    """

    def __init__(
        self,
        in_channels: int,
        ratios: Sequence[float],
        radii: Sequence[Sequence[float]],
        num_samples: Sequence[Sequence[int]],
        sa_mlps: Sequence[Sequence[Sequence[int]]],
        global_mlp: Sequence[int] = (),
        fp_mlps: Sequence[Sequence[int]] = (),
        num_categories: int = 0,
        random_start: bool = True,
        ball_query: BallQuery = "first",
    ) -> None:
        super().__init__()
        if not (len(ratios) == len(radii) == len(num_samples) == len(sa_mlps)):
            raise ValueError("ratios, radii, num_samples and sa_mlps need one entry per level")
        self.in_channels = in_channels
        self.num_categories = num_categories
        self.sa = nn.ModuleList()
        widths = [in_channels]  # feature width at each level, input first
        for ratio, r, k, mlps in zip(ratios, radii, num_samples, sa_mlps, strict=True):
            level = SetAbstraction(
                widths[-1], ratio, r, k, mlps, random_start=random_start, ball_query=ball_query
            )
            self.sa.append(level)
            widths.append(level.out_channels)
        self.global_sa = GlobalSetAbstraction(widths[-1], global_mlp) if global_mlp else None
        if self.global_sa is not None:
            widths.append(self.global_sa.out_channels)

        self.fp = nn.ModuleList()
        if not fp_mlps:
            if self.global_sa is None:
                raise ValueError("an encoder without feature propagation needs a global level")
            self.out_channels = widths[-1]
            return
        if len(fp_mlps) != len(widths) - 1:
            raise ValueError(f"segmentation needs {len(widths) - 1} feature propagation MLPs")
        coarse = widths[-1]
        for depth, mlp in enumerate(fp_mlps):
            skip = widths[-2 - depth]
            if depth == len(fp_mlps) - 1:  # finest level: input points
                if num_categories:
                    skip = num_categories + 3 + in_channels
                else:
                    skip = in_channels
            block = FeaturePropagation(coarse + skip, mlp)
            self.fp.append(block)
            coarse = block.out_channels
        self.out_channels = coarse

    def forward(self, point: Point) -> Point:
        """Features of the global level ``[B, C]`` or of every input point ``[N, C]``."""
        point = point.for_channels(self.in_channels)
        pos, x, batch, ptr = point.pos, point.x, point.batch, point.ptr
        levels = [(x, pos, batch, ptr)]
        for sa in self.sa:
            levels.append(sa(*levels[-1]))
        feats: list[Tensor | None] = [x] + [lv[0] for lv in levels[1:]]
        if self.global_sa is not None:
            x_l, pos_l, _, ptr_l = levels[-1]
            g = self.global_sa(x_l, pos_l, ptr_l)  # [B, C]
            if not self.fp:
                b = ptr.numel() - 1
                clouds = torch.arange(b + 1, device=pos.device)
                return Point(pos.new_zeros(b, 3), g, clouds[:-1], clouds)  # centred at 0
            h, pos_c, batch_c = g, None, torch.arange(ptr.numel() - 1, device=pos.device)
        else:
            h, pos_c, batch_c = levels[-1][0], levels[-1][1], levels[-1][2]
        for i, fp in enumerate(self.fp):
            target = len(self.sa) - 1 - i if self.global_sa is None else len(self.sa) - i
            _, pos_t, batch_t, _ = levels[target]
            skip = feats[target]
            if target == 0 and self.num_categories:
                onehot = category_onehot(point, self.num_categories, pos.dtype)
                parts = [onehot[batch], pos] + ([x] if x is not None else [])
                skip = torch.cat(parts, 1)  # [N, K + 3 + C_in]
            h = fp(h, pos_c, batch_c, skip, pos_t, batch_t)
            pos_c, batch_c = pos_t, batch_t
        return point.with_features(h)


_ARCH = ("ratios", "radii", "num_samples", "sa_mlps", "global_mlp", "fp_mlps")


def PointNet2(
    num_classes: int = 40,
    task: Task = "classification",
    grouping: Grouping = "ssg",
    head: list[int] | None = None,
    dropout: float = 0.5,
    num_categories: int = 16,
    **kwargs: Any,
) -> PointNetwork:
    """PointNet++ on packed batches: :class:`PointNet2Backbone` with the published
    architecture for ``task`` and ``grouping``, and a head.

    Args:
        num_classes: output classes (shape classes, or part / semantic labels).
        task: ``"classification"`` (logits ``[B, num_classes]``: the global level's row
            through :class:`ClassificationHead`), ``"part_segmentation"`` or
            ``"semantic_segmentation"`` (logits ``[N, num_classes]``:
            :class:`SegmentationHead`).
        grouping: ``"ssg"`` single-scale or ``"msg"`` multi-scale grouping.
        head: hidden widths of the head (each followed by batch norm, ReLU and dropout;
            ``None``: the published ones).
        dropout: dropout probability in the head.
        num_categories: object categories one-hot encoded into part segmentation
            (``batch.category``, 16 for ShapeNetPart); ignored by the other tasks.
        **kwargs: :class:`PointNet2Backbone` arguments (``in_channels``, ``ratios``,
            ``radii``, ``num_samples``, ``sa_mlps``, ``global_mlp``, ``fp_mlps``,
            ``random_start``, ``ball_query``); an architectural list left out or ``None``
            is the preset's.
            Classification has no feature propagation (``fp_mlps`` is ignored).

    Raises:
        ValueError: an unknown task or grouping, classification without a global level,
            segmentation without feature propagation.
    """
    if (task, grouping) not in _PRESETS:
        raise ValueError(f"unknown task/grouping {task!r}/{grouping!r}")
    preset = _PRESETS[(task, grouping)]
    arch: dict[str, Any] = {"in_channels": 0, **{k: preset[k] for k in _ARCH}}
    arch.update({k: v for k, v in kwargs.items() if v is not None or k not in _ARCH})
    if task == "classification":
        if not arch["global_mlp"]:
            raise ValueError("classification needs a global level (global_mlp)")
        arch["fp_mlps"] = []
    elif not arch["fp_mlps"]:
        raise ValueError("segmentation needs feature propagation MLPs (fp_mlps)")
    arch["num_categories"] = num_categories if task == "part_segmentation" else 0
    backbone = PointNet2Backbone(**arch)
    hidden = preset["head"] if head is None else head
    width = backbone.out_channels
    if task == "classification":  # one row per cloud already: no pooling
        return PointNetwork(
            backbone, ClassificationHead(width, num_classes, "none", hidden=hidden, dropout=dropout)
        )
    return PointNetwork(
        backbone, SegmentationHead(width, num_classes, hidden=hidden, dropout=dropout)
    )


@register_model("pointnet2_ssg")
def pointnet2_ssg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ SSG classifier (ModelNet40 shapes); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "classification", "ssg", **kwargs)


@register_model("pointnet2_msg")
def pointnet2_msg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ MSG classifier (ModelNet40 shapes); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "classification", "msg", **kwargs)


@register_model("pointnet2_ssg_part_seg")
def pointnet2_ssg_part_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ SSG part segmentation (ShapeNetPart); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "part_segmentation", "ssg", **kwargs)


@register_model("pointnet2_msg_part_seg")
def pointnet2_msg_part_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ MSG part segmentation (ShapeNetPart); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "part_segmentation", "msg", **kwargs)


@register_model("pointnet2_ssg_sem_seg")
def pointnet2_ssg_sem_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ SSG semantic segmentation (S3DIS blocks); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "semantic_segmentation", "ssg", **kwargs)


@register_model("pointnet2_msg_sem_seg")
def pointnet2_msg_sem_seg(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PointNet++ MSG semantic segmentation (S3DIS blocks); ``kwargs``: :func:`PointNet2` arguments."""
    return PointNet2(num_classes, "semantic_segmentation", "msg", **kwargs)
