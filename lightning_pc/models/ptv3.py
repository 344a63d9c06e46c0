"""Point Transformer V3 (Wu et al., CVPR 2024), Pointcept's PT-v3m1, in pure PyTorch.

Defaults are PT-v3m1 base as Pointcept's S3DIS / ScanNet semantic segmentation configs set
it: four serialisations (z, z-trans, hilbert, hilbert-trans) shuffled per level in training,
four pooling strides of 2, encoder depths 2, 2, 2, 6, 2 with widths 32 ... 512 and heads
2 ... 32, decoder depths 2, 2, 2, 2 with widths 64, 64, 128, 256, patches of 1024 voxels,
MLP ratio 4, drop path 0.3, pre-norm, no layer scale, no relative position encoding.
:func:`PTv3` joins :class:`PTv3Backbone` to Pointcept's segmentation head (one linear
layer on the 64 decoder channels, ``DefaultSegmentorV2``: a :class:`SegmentationHead`);
:func:`PTv3Cls` joins the encoder to the per-cloud mean and Pointcept's
``DefaultClassifier`` head (512-256-128 with BatchNorm, ReLU, dropout 0.5: a
:class:`ClassificationHead` with ``pool="mean"``).
Parameter counts equal Pointcept's for the same stem width and classes (pinned in
``tests/models/test_ptv3.py``).

Input: the :class:`~lightning_pc.nn.point.Point` (or PyG batch) the other networks take;
the backbone turns it into voxels with :func:`ptv3_input` (grid ``grid_size``, per-cloud origin at the cloud's
minimum, mean of ``[pos, x]`` per voxel: the stem sees ``3 + in_channels`` channels, so
``in_channels=3`` (colours) matches Pointcept's ``in_channels=6``). Segmentation logits are
given on every input point (its voxel's).

Equal to Pointcept's model file on the same weights and input (max abs difference of the
logits about 2e-6, ``benchmarks/ptv3_oracle.py``), including one of its quirks that trained
weights depend on: the first block after each unpooling convolves the projected skip
features alone in its positional encoding. Differences by design: the serialisations are
shuffled only in training (Pointcept's pooling layers shuffle them in evaluation too,
whatever ``shuffle_orders`` says, so its predictions change between calls);
attention always follows the flash-attention patching (Pointcept's non-flash path instead
shrinks every patch to the smallest cloud of the batch, which couples the clouds); the
sparse convolutions are ours (``lightning_pc.nn.sparse``), not spconv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from lightning_pc.models.heads import ClassificationHead, PointNetwork, SegmentationHead
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.ptv3 import Block, Embedding, GridPooling, GridUnpooling
from lightning_pc.nn.serialization import ORDERS


def ptv3_input(data: Any, in_channels: int, grid_size: float) -> Point:
    """The voxels PTv3's stem takes, from a :class:`~lightning_pc.nn.point.Point` or a PyG
    batch: :meth:`Point.voxelize` with each cloud's grid starting at its minimum
    (``floor((pos - min_cloud(pos)) / grid_size)``, as Pointcept's ``GridSample`` per sample)
    and the mean of ``[pos, x]`` per voxel.

    Raises:
        ValueError: bad fields (see :func:`lightning_pc.nn.point.as_point`), or
            non-finite coordinates.
    """
    return as_point(data).for_channels(in_channels).voxelize(grid_size, "mean", "cloud_min")


def _tuple(v: Sequence[Any], name: str, n: int) -> list[Any]:
    v = list(v)
    if len(v) != n:
        raise ValueError(f"{name} needs {n} entries, got {len(v)}")
    return v


class PTv3Backbone(nn.Module):
    """PT-v3m1: voxelise (:func:`ptv3_input`), serialise, stem, encoder stages (pooling then
    blocks), decoder stages (unpooling then blocks). See the module docstring for the
    defaults.

    Returns the voxels of the last level as a :class:`~lightning_pc.nn.point.Point` carrying
    their features: the finest level (whose ``inverse`` maps the input points to them) for
    segmentation, the coarsest with ``enc_mode``.

    Args:
        in_channels: width of ``batch.x`` (3 for colours or normals; 0: coordinates only);
            the stem sees ``3 + in_channels`` channels (Pointcept's ``in_channels``).
        grid_size: voxel edge in the units of ``pos``.
        order: serialisation orders (``z``, ``z-trans``, ``hilbert``, ``hilbert-trans``);
            block ``i`` of a stage reads order ``i % len(order)``.
        stride: pooling factor before each encoder stage after the first.
        enc_depths, enc_channels, enc_num_head, enc_patch_size: per encoder stage.
        dec_depths, dec_channels, dec_num_head, dec_patch_size: per decoder stage, finest
            first (as Pointcept).
        mlp_ratio: MLP hidden width over the block width.
        qkv_bias: bias on the query/key/value projection.
        qk_scale: attention logit scale (``head_dim ** -0.5`` when ``None``).
        attn_drop: attention dropout.
        proj_drop: dropout after the attention projection and in the MLP.
        drop_path: largest drop path rate (linear from 0 over the encoder blocks, and over
            the decoder blocks).
        pre_norm: LayerNorm before attention and MLP (else after the sums).
        shuffle_orders: shuffle the orders at every level in training.
        layer_scale: initial layer scale, ``None`` for none (PT-v3m1).
        enc_mode: encoder only (classification).
    """

    def __init__(
        self,
        in_channels: int = 3,
        grid_size: float = 0.02,
        order: Sequence[str] = ("z", "z-trans", "hilbert", "hilbert-trans"),
        stride: Sequence[int] = (2, 2, 2, 2),
        enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
        enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
        enc_num_head: Sequence[int] = (2, 4, 8, 16, 32),
        enc_patch_size: Sequence[int] = (1024, 1024, 1024, 1024, 1024),
        dec_depths: Sequence[int] = (2, 2, 2, 2),
        dec_channels: Sequence[int] = (64, 64, 128, 256),
        dec_num_head: Sequence[int] = (4, 4, 8, 16),
        dec_patch_size: Sequence[int] = (1024, 1024, 1024, 1024),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.3,
        pre_norm: bool = True,
        shuffle_orders: bool = True,
        layer_scale: float | None = None,
        enc_mode: bool = False,
    ) -> None:
        super().__init__()
        if grid_size <= 0:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        self.in_channels = in_channels
        self.grid_size = grid_size
        self.order = (order,) if isinstance(order, str) else tuple(order)
        for o in self.order:
            if o not in ORDERS:
                raise ValueError(f"unknown serialisation order {o!r}; known: {', '.join(ORDERS)}")
        n = len(enc_depths)
        stride = _tuple(stride, "stride", n - 1)
        enc_channels = _tuple(enc_channels, "enc_channels", n)
        enc_num_head = _tuple(enc_num_head, "enc_num_head", n)
        enc_patch_size = _tuple(enc_patch_size, "enc_patch_size", n)
        self.num_stages = n
        self.enc_mode = enc_mode
        self.shuffle_orders = shuffle_orders
        self.out_channels = enc_channels[-1] if enc_mode else dec_channels[0]

        def block(c: int, h: int, p: int, dp: float, i: int) -> Block:
            return Block(
                c, h, p, mlp_ratio, qkv_bias, qk_scale, attn_drop, proj_drop, dp, pre_norm,
                i % len(self.order), layer_scale,
            )  # fmt: skip

        self.embedding = Embedding(3 + in_channels, enc_channels[0])
        rates = torch.linspace(0, drop_path, sum(enc_depths)).tolist()
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for s in range(n):
            r = rates[sum(enc_depths[:s]) : sum(enc_depths[: s + 1])]
            if s > 0:
                self.down.append(GridPooling(enc_channels[s - 1], enc_channels[s], stride[s - 1]))
            self.enc.append(
                nn.ModuleList(
                    block(enc_channels[s], enc_num_head[s], enc_patch_size[s], r[i], i)
                    for i in range(enc_depths[s])
                )
            )
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        if not enc_mode:
            dec_depths = _tuple(dec_depths, "dec_depths", n - 1)
            dec_num_head = _tuple(dec_num_head, "dec_num_head", n - 1)
            dec_patch_size = _tuple(dec_patch_size, "dec_patch_size", n - 1)
            widths = _tuple(dec_channels, "dec_channels", n - 1) + [enc_channels[-1]]
            rates = torch.linspace(0, drop_path, sum(dec_depths)).tolist()
            for s in reversed(range(n - 1)):  # coarsest decoder stage first
                r = rates[sum(dec_depths[:s]) : sum(dec_depths[: s + 1])][::-1]
                self.up.append(GridUnpooling(widths[s + 1], enc_channels[s], widths[s]))
                self.dec.append(
                    nn.ModuleList(
                        block(widths[s], dec_num_head[s], dec_patch_size[s], r[i], i)
                        for i in range(dec_depths[s])
                    )
                )

    def forward(self, point: Point) -> Point:
        """Features of the last level (the finest for segmentation, the coarsest with
        ``enc_mode``), as that level's voxel :class:`Point`."""
        voxels = ptv3_input(point, self.in_channels, self.grid_size)
        shuffle = self.shuffle_orders and self.training
        level = voxels.with_serialization(voxels.serialization(self.order, shuffle=shuffle))
        feat = self.embedding(level.pos_x, level)
        stack: list[tuple[Tensor, Point, Tensor]] = []
        for s, blocks in enumerate(self.enc):
            if s > 0:
                pooled, coarse, cluster = self.down[s - 1](feat, level, shuffle)
                stack.append((feat, level, cluster))
                feat, level = pooled, coarse
            for blk in cast(nn.ModuleList, blocks):
                feat = blk(feat, level)
        for up, blocks in zip(self.up, self.dec, strict=True):
            skip, parent, cluster = stack.pop()
            feat, cpe_input = up(feat, skip, cluster)
            level = parent
            for i, blk in enumerate(cast(nn.ModuleList, blocks)):
                feat = blk(feat, level, cpe_input if i == 0 else None)
        return level.with_features(feat)


def PTv3(
    num_classes: int = 13, in_channels: int = 3, grid_size: float = 0.02, **kwargs: Any
) -> PointNetwork:
    """Point Transformer V3 for semantic segmentation: per-point logits [N, num_classes]
    (:class:`PTv3Backbone` and a linear :class:`SegmentationHead`).

    Args:
        num_classes: classes of the logits.
        in_channels: width of ``batch.x`` (3 for colours; 0: coordinates only).
        grid_size: voxel edge in the units of ``pos`` (0.02 m as Pointcept's S3DIS/ScanNet).
        **kwargs: :class:`PTv3Backbone` hyperparameters (defaults: PT-v3m1 base).
    """
    kwargs.setdefault("enc_mode", False)
    backbone = PTv3Backbone(in_channels, grid_size, **kwargs)
    return PointNetwork(backbone, SegmentationHead(backbone.out_channels, num_classes))


def PTv3Cls(
    num_classes: int = 40,
    in_channels: int = 3,
    grid_size: float = 0.01,
    dropout: float = 0.5,
    **kwargs: Any,
) -> PointNetwork:
    """Point Transformer V3 encoder, per-cloud mean, MLP head: logits [B, num_classes]
    (:class:`PTv3Backbone` with ``enc_mode`` and a :class:`ClassificationHead`).

    Args:
        num_classes: classes.
        in_channels: width of ``batch.x`` (3 for normals: stem width 6 as Pointcept's
            ModelNet40 config, which feeds coordinates and normals).
        grid_size: voxel edge (0.01 as Pointcept's ModelNet40 config, on unit-sphere shapes).
        dropout: dropout of the head.
        **kwargs: :class:`PTv3Backbone` hyperparameters (``enc_mode`` is forced on).
    """
    kwargs["enc_mode"] = True
    backbone = PTv3Backbone(in_channels, grid_size, **kwargs)
    head = ClassificationHead(
        backbone.out_channels, num_classes, "mean", hidden=[256, 128], dropout=dropout
    )
    return PointNetwork(backbone, head)


@register_model("ptv3")
def ptv3(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PTv3 semantic segmentation; ``kwargs``: :func:`PTv3` arguments."""
    return PTv3(num_classes, **kwargs)


@register_model("ptv3_cls")
def ptv3_cls(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PTv3 classifier; ``kwargs``: :func:`PTv3Cls` arguments."""
    return PTv3Cls(num_classes, **kwargs)
