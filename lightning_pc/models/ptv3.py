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

Pointcept's released PT-v3m1 weights (ScanNet, ScanNet200, S3DIS Area 5) need four options,
set by :data:`PRESETS` / :func:`ptv3_preset`: ``stem_xyz=False`` (the stem reads Pointcept's
``in_channels`` features alone), ``grid_origin="pointcept"`` (its ``GridSample`` grid),
``legacy=True`` (the block wiring of Pointcept v1.5.1, which trained them) and, for S3DIS,
``enable_rpe`` (relative position encoding). They were evaluated on one-point-per-voxel
fragments: :func:`lightning_pc.nn.grid_sample.predict_fragments`.

Equal to Pointcept's model file on the same weights and input (max abs difference of the
logits about 2e-6, ``benchmarks/ptv3_oracle.py``; the presets to its v1.5.1 file with
``legacy`` and to the current one without), including one of its quirks that trained
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
from lightning_pc.nn.grid_sample import pointcept_grid
from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.ptv3 import Block, Embedding, GridPooling, GridUnpooling
from lightning_pc.nn.segment import ptr_from_index
from lightning_pc.nn.serialization import ORDERS
from lightning_pc.nn.sparse.tensor import SparseTensor, voxel_sites

GRID_ORIGINS = ("cloud_min", "pointcept")


def ptv3_input(
    data: Any, in_channels: int, grid_size: float, grid_origin: str = "cloud_min"
) -> Point:
    """The voxels PTv3's stem takes, from a :class:`~lightning_pc.nn.point.Point` or a PyG
    batch, with the mean of ``[pos, x]`` per voxel.

    ``grid_origin`` places the grid: ``"cloud_min"`` (default) at each cloud's minimum,
    ``floor((pos - min_cloud(pos)) / grid_size)`` (:meth:`Point.voxelize`); ``"pointcept"``
    as Pointcept's ``GridSample``, ``floor(pos / grid_size) - min_cloud(floor(pos /
    grid_size))`` in float64 (the same cells up to a whole-voxel shift only when the
    minimum sits on a cell boundary), or, when the input :class:`Point` carries
    ``grid_coord`` (the fragments of :func:`lightning_pc.nn.grid_sample.predict_fragments`),
    those coordinates as given.

    Raises:
        ValueError: bad fields (see :func:`lightning_pc.nn.point.as_point`), an unknown
            ``grid_origin``, or non-finite coordinates.
    """
    point = as_point(data).for_channels(in_channels)
    if grid_origin == "cloud_min":
        return point.voxelize(grid_size, "mean", "cloud_min")
    if grid_origin != "pointcept":
        raise ValueError(f"grid_origin must be one of {GRID_ORIGINS}, got {grid_origin!r}")
    return pointcept_voxels(point, grid_size)


def pointcept_voxels(point: Point, grid_size: float) -> Point:
    """:func:`ptv3_input` with ``grid_origin="pointcept"``: voxels on Pointcept's
    ``GridSample`` grid (or on ``point.grid_coord`` when given), ``pos`` and ``x`` the mean
    of their points', sorted by cloud then cell; ``inverse`` the voxel of every point."""
    if point.grid_coord is not None:
        grid = point.grid_coord.long()
    else:
        grid = pointcept_grid(point.pos, point.batch, point.num_clouds, grid_size)
    coords = torch.cat([point.batch.long().view(-1, 1), grid], 1)
    sites, inverse = voxel_sites(coords)
    feats = point.pos_x
    m = sites.size(0)
    reduced = feats.new_zeros(m, feats.size(1)).scatter_reduce(
        0, inverse.view(-1, 1).expand_as(feats), feats, reduce="mean", include_self=False
    )
    batch = sites[:, 0].contiguous()
    return Point(
        reduced[:, :3],
        None if point.x is None else reduced[:, 3:],
        batch,
        ptr_from_index(batch, point.num_clouds),
        category=point.category,
        grid_coord=sites[:, 1:],
        grid_size=float(grid_size),
        inverse=inverse,
        sparse=SparseTensor(sites, reduced),
    )


def _tuple(v: Sequence[Any], name: str, n: int) -> list[Any]:
    v = list(v)
    if len(v) != n:
        raise ValueError(f"{name} needs {n} entries, got {len(v)}")
    return v


def encoder_stage_args(
    order: str | Sequence[str],
    enc_depths: Sequence[int],
    stride: Sequence[int],
    enc_channels: Sequence[int],
    enc_num_head: Sequence[int],
    enc_patch_size: Sequence[int],
) -> tuple[tuple[str, ...], int, list[int], list[int], list[int], list[int]]:
    """The encoder arguments of a PTv3 (:class:`PTv3Backbone`, and the Sonata-family
    :class:`~lightning_pc.models.sonata.PTv3EncoderBackbone`), checked: the orders as a
    tuple, the number of stages ``n = len(enc_depths)``, then ``stride`` (``n - 1``
    entries), ``enc_channels``, ``enc_num_head`` and ``enc_patch_size`` (``n`` each) as lists.

    Raises:
        ValueError: an unknown order (the known ones listed) or a list of the wrong length
            (named, with the lengths).
    """
    orders = (order,) if isinstance(order, str) else tuple(order)
    for o in orders:
        if o not in ORDERS:
            raise ValueError(f"unknown serialisation order {o!r}; known: {', '.join(ORDERS)}")
    n = len(enc_depths)
    return (
        orders,
        n,
        _tuple(stride, "stride", n - 1),
        _tuple(enc_channels, "enc_channels", n),
        _tuple(enc_num_head, "enc_num_head", n),
        _tuple(enc_patch_size, "enc_patch_size", n),
    )


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
        stem_xyz: the stem reads the voxel coordinates before the features
            (``3 + in_channels`` channels); ``False``: the features alone, so that
            ``in_channels`` is Pointcept's (its ``feat_keys``: 6 for ScanNet's and S3DIS's
            colour and normal, which its released PTv3 weights read).
        grid_origin: ``"cloud_min"`` or ``"pointcept"`` (its ``GridSample`` grid, or the
            input's ``grid_coord``), see :func:`ptv3_input`.
        enable_rpe: relative position encoding in every attention (:class:`RPE
            <lightning_pc.nn.ptv3.RPE>`; Pointcept's ``enable_rpe``, its S3DIS ``-rpe``
            model).
        legacy: Pointcept v1.5.1's model, which trained the released PT-v3m1 weights: in
            each stage, every block after the first convolves, in its positional encoding,
            the previous block's MLP branch instead of that block's output (its blocks
            dropped the result of ``sparse_conv_feat.replace_feature``; Pointcept fixed it
            in commit 74c4fc1, March 2024; see :meth:`Block.run
            <lightning_pc.nn.ptv3.Block.run>`). The first block of a stage reads what it
            reads in both versions (the stem's or the pooling's output, the projected skip
            features after an unpooling).
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
        stem_xyz: bool = True,
        grid_origin: str = "cloud_min",
        enable_rpe: bool = False,
        legacy: bool = False,
    ) -> None:
        super().__init__()
        if grid_size <= 0:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        if grid_origin not in GRID_ORIGINS:
            raise ValueError(f"grid_origin must be one of {GRID_ORIGINS}, got {grid_origin!r}")
        if not stem_xyz and in_channels <= 0:
            raise ValueError("stem_xyz=False needs point features (in_channels > 0)")
        self.in_channels = in_channels
        self.grid_size = grid_size
        self.stem_xyz = stem_xyz
        self.grid_origin = grid_origin
        self.legacy = legacy
        self.order, n, stride, enc_channels, enc_num_head, enc_patch_size = encoder_stage_args(
            order, enc_depths, stride, enc_channels, enc_num_head, enc_patch_size
        )
        self.num_stages = n
        self.enc_mode = enc_mode
        self.shuffle_orders = shuffle_orders
        self.out_channels = enc_channels[-1] if enc_mode else dec_channels[0]

        def block(c: int, h: int, p: int, dp: float, i: int) -> Block:
            return Block(
                c, h, p, mlp_ratio, qkv_bias, qk_scale, attn_drop, proj_drop, dp, pre_norm,
                i % len(self.order), layer_scale, enable_rpe,
            )  # fmt: skip

        self.embedding = Embedding((3 if stem_xyz else 0) + in_channels, enc_channels[0])
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
        voxels = ptv3_input(point, self.in_channels, self.grid_size, self.grid_origin)
        shuffle = self.shuffle_orders and self.training
        level = voxels.with_serialization(voxels.serialization(self.order, shuffle=shuffle))
        feat = self.embedding(level.pos_x if self.stem_xyz else cast(Tensor, level.x), level)
        stack: list[tuple[Tensor, Point, Tensor]] = []
        for s, blocks in enumerate(self.enc):
            if s > 0:
                pooled, coarse, cluster = self.down[s - 1](feat, level, shuffle)
                stack.append((feat, level, cluster))
                feat, level = pooled, coarse
            feat = self._stage(cast(nn.ModuleList, blocks), feat, level, None)
        for up, blocks in zip(self.up, self.dec, strict=True):
            skip, parent, cluster = stack.pop()
            feat, cpe_input = up(feat, skip, cluster)
            level = parent
            feat = self._stage(cast(nn.ModuleList, blocks), feat, level, cpe_input)
        return level.with_features(feat)

    def _stage(
        self, blocks: nn.ModuleList, feat: Tensor, level: Point, cpe_input: Tensor | None
    ) -> Tensor:
        """The blocks of one stage; ``cpe_input``: what the first block's positional
        encoding reads (``None``: its input); with ``legacy`` each later block's reads what
        :meth:`Block.run <lightning_pc.nn.ptv3.Block.run>` returned before it."""
        for blk in blocks:
            if self.legacy:
                feat, cpe_input = cast(Block, blk).run(feat, level, cpe_input)
            else:
                feat, cpe_input = blk(feat, level, cpe_input), None
        return feat


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


_V3M1_BASE: dict[str, Any] = {
    "in_channels": 6,
    "grid_size": 0.02,
    "order": ["z", "z-trans", "hilbert", "hilbert-trans"],
    "stride": [2, 2, 2, 2],
    "enc_depths": [2, 2, 2, 6, 2],
    "enc_channels": [32, 64, 128, 256, 512],
    "enc_num_head": [2, 4, 8, 16, 32],
    "enc_patch_size": [1024, 1024, 1024, 1024, 1024],
    "dec_depths": [2, 2, 2, 2],
    "dec_channels": [64, 64, 128, 256],
    "dec_num_head": [4, 4, 8, 16],
    "dec_patch_size": [1024, 1024, 1024, 1024],
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "qk_scale": None,
    "attn_drop": 0.0,
    "proj_drop": 0.0,
    "drop_path": 0.3,
    "pre_norm": True,
    "shuffle_orders": True,
    "enable_rpe": False,
    "stem_xyz": False,
    "grid_origin": "pointcept",
    "legacy": True,
}

PRESETS: dict[str, dict[str, Any]] = {
    "scannet-semseg-pt-v3m1-0-base": {**_V3M1_BASE, "num_classes": 20},
    "scannet200-semseg-pt-v3m1-0-base": {**_V3M1_BASE, "num_classes": 200},
    "s3dis-semseg-pt-v3m1-0-rpe": {
        **_V3M1_BASE,
        "num_classes": 13,
        "enc_patch_size": [128, 128, 128, 128, 128],
        "dec_patch_size": [128, 128, 128, 128],
        "enable_rpe": True,
    },
}
""":func:`PTv3` arguments (``num_classes`` included) of the architectures of Pointcept's
released PT-v3m1 checkpoints, named as their configs and Hugging Face folders
(``Pointcept/PointTransformerV3``): the backbone of each config (Pointcept v1.5.1), with
``in_channels=6`` read without coordinates (``stem_xyz=False``: colour in [-1, 1] as its
``NormalizeColor`` gives it, then the normal), its ``GridSample`` grid of 0.02
(``grid_origin="pointcept"``) and v1.5.1's block wiring (``legacy=True``).
``benchmarks/ptv3_oracle.py`` checks each against its config and against the v1.5.1 model
file. The checkpoints were evaluated on one-point-per-voxel fragments
(:func:`lightning_pc.nn.grid_sample.predict_fragments`)."""


def ptv3_preset(name: str, **overrides: Any) -> PointNetwork:
    """The PTv3 of a released checkpoint's architecture (:data:`PRESETS`); ``overrides``
    replace its arguments (e.g. ``legacy=False`` to fine-tune with Pointcept's fixed
    wiring, ``num_classes`` for another head).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown PTv3 preset {name!r}; known: {', '.join(PRESETS)}")
    return PTv3(**{**PRESETS[name], **overrides})


@register_model("ptv3")
def ptv3(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PTv3 semantic segmentation; ``kwargs``: :func:`PTv3` arguments."""
    return PTv3(num_classes, **kwargs)


@register_model("ptv3_cls")
def ptv3_cls(num_classes: int, **kwargs: Any) -> PointNetwork:
    """PTv3 classifier; ``kwargs``: :func:`PTv3Cls` arguments."""
    return PTv3Cls(num_classes, **kwargs)
