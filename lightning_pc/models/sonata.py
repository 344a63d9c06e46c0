"""The self-supervised PTv3 encoders Sonata (CVPR 2025), Concerto (NeurIPS 2025) and Utonia
(2026), Pointcept's PT-v3m2 / PT-v3m3 in encoder mode, in pure PyTorch.

:class:`PTv3EncoderBackbone` is the encoder (:mod:`lightning_pc.nn.ptv3_encoder`: linear
stem, PTv3 blocks, LayerNorm grid pooling keeping each level's map to the next, Utonia's 3D
RoPE) and returns per-point features: the features of every stage read back at the finest
voxels and concatenated (:func:`~lightning_pc.nn.ptv3_encoder.upcast`), with the voxel of
each input point as ``inverse``. The registered builders join it to a linear
:class:`SegmentationHead`, the shape of the published linear-probe heads (ScanNet, 20
classes: ``nn.Linear(sum(enc_channels), 20)``).

Presets (encoder depths, widths, heads; patches of 1024 voxels, MLP ratio 4, four orders
``z, z-trans, hilbert, hilbert-trans``, pooling strides 2):

==================  =================  ==========================  ====================  =====
name                depths             widths                      heads                 RoPE
==================  =================  ==========================  ====================  =====
``sonata_small``    2, 2, 2, 6, 2      32, 64, 128, 256, 512       2, 4, 8, 16, 32       no
``sonata_base``     3, 3, 3, 12, 3     48, 96, 192, 384, 512       3, 6, 12, 24, 32      no
``concerto_tiny``   1, 1, 1, 3, 1      16, 32, 64, 128, 256        1, 2, 4, 8, 16        no
``concerto_small``  2, 2, 2, 6, 2      32, 64, 128, 256, 512       2, 4, 8, 16, 32       no
``concerto_base``   3, 3, 3, 12, 3     48, 96, 192, 384, 512       3, 6, 12, 24, 32      no
``concerto_large``  3, 3, 3, 12, 3     64, 128, 256, 512, 768      4, 8, 16, 32, 48      no
``utonia_tiny``     2, 2, 2, 6, 2      18, 36, 72, 144, 216        1, 2, 4, 8, 12        10
``utonia_small``    2, 2, 2, 6, 2      36, 72, 144, 288, 432       2, 4, 8, 16, 24       10
``utonia_base``     3, 3, 3, 12, 3     54, 108, 216, 432, 576      3, 6, 12, 24, 32      10
==================  =================  ==========================  ====================  =====

Sources: Pointcept's configs (``configs/sonata``, ``configs/concerto`` base/large,
``configs/utonia`` tiny/small/base); Concerto tiny/small from the published checkpoints'
sizes; Sonata small as Concerto small (the checkpoint's 39M parameters). A checkpoint's own
``config`` (Sonata's ``.pth`` files carry one) builds the matching encoder through
:func:`backbone_kwargs_from_config`.

Expected input (the :class:`~lightning_pc.nn.point.Point` or PyG batch every network takes):
``pos`` [N, 3] in metres and ``x`` [N, 6] = colour in [0, 1] (Pointcept's ``color / 255``)
then unit normals; the stem sees ``[centred pos, x]``, the 9 channels of ``coord, color,
normal``. The backbone centres each cloud as Pointcept's ``CenterShift(apply_z=True)``
(bounding-box middle in x, y; minimum in z), multiplies by ``coord_scale`` (Utonia, whose
``grid_size`` is 0.01 in scaled units: 0.5 for indoor scans as its ScanNet and S3DIS configs,
the preset's default; 0.2 for outdoor LiDAR as its nuScenes, Waymo and KITTI configs; 1 for
objects), voxelises at ``grid_size`` (0.02 m for Sonata and
Concerto) on Pointcept's ``GridSample`` grid (``floor(pos / grid) - min``) keeping one point
per voxel (``voxel_reduce="first"``; Pointcept's training mode picks a random one) or the
mean (``"mean"``).

Equal to Pointcept's model files on shared weights (``benchmarks/sonata_oracle.py``;
evaluation, CPU). Differences by design: the serialisation orders are shuffled in training
only (Pointcept's pooling layers shuffle them in evaluation too, so its outputs change
between calls); attention always follows the flash-attention patching (Pointcept's
non-flash path shrinks every patch to the smallest cloud of the batch); the sparse
convolutions are ours, not spconv. :func:`convert_pointcept_state_dict` maps official state
dicts (Pointcept, the standalone ``sonata`` package, the probe heads) to this model's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from lightning_pc.models.heads import PointNetwork, SegmentationHead
from lightning_pc.models.pointcept_keys import block_key, spconv_kernel
from lightning_pc.models.ptv3 import encoder_stage_args
from lightning_pc.models.registry import register_model
from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.ptv3 import Block
from lightning_pc.nn.ptv3_encoder import (
    LayerNormGridPooling,
    LinearEmbedding,
    RoPEBlock,
    check_grid,
    cloud_center_shift,
    upcast,
)

ORDER4 = ("z", "z-trans", "hilbert", "hilbert-trans")

#: encoder presets: depths, widths, heads, RoPE base (None: none), grid size, coordinate scale
PRESETS: dict[str, dict[str, Any]] = {
    "sonata_small": dict(
        enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512),
        enc_num_head=(2, 4, 8, 16, 32),
    ),
    "sonata_base": dict(
        enc_depths=(3, 3, 3, 12, 3), enc_channels=(48, 96, 192, 384, 512),
        enc_num_head=(3, 6, 12, 24, 32),
    ),
    "concerto_tiny": dict(
        enc_depths=(1, 1, 1, 3, 1), enc_channels=(16, 32, 64, 128, 256),
        enc_num_head=(1, 2, 4, 8, 16),
    ),
    "concerto_small": dict(
        enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512),
        enc_num_head=(2, 4, 8, 16, 32),
    ),
    "concerto_base": dict(
        enc_depths=(3, 3, 3, 12, 3), enc_channels=(48, 96, 192, 384, 512),
        enc_num_head=(3, 6, 12, 24, 32),
    ),
    "concerto_large": dict(
        enc_depths=(3, 3, 3, 12, 3), enc_channels=(64, 128, 256, 512, 768),
        enc_num_head=(4, 8, 16, 32, 48),
    ),
    "utonia_tiny": dict(
        enc_depths=(2, 2, 2, 6, 2), enc_channels=(18, 36, 72, 144, 216),
        enc_num_head=(1, 2, 4, 8, 12), rope_base=10.0, grid_size=0.01, coord_scale=0.5,
    ),
    "utonia_small": dict(
        enc_depths=(2, 2, 2, 6, 2), enc_channels=(36, 72, 144, 288, 432),
        enc_num_head=(2, 4, 8, 16, 24), rope_base=10.0, grid_size=0.01, coord_scale=0.5,
    ),
    "utonia_base": dict(
        enc_depths=(3, 3, 3, 12, 3), enc_channels=(54, 108, 216, 432, 576),
        enc_num_head=(3, 6, 12, 24, 32), rope_base=10.0, grid_size=0.01, coord_scale=0.5,
    ),
}  # fmt: skip


class PTv3EncoderBackbone(nn.Module):
    """Sonata / Concerto (PT-v3m2) and Utonia (PT-v3m3, ``rope_base`` set) encoder giving
    per-point features (see the module docstring for inputs and presets).

    Returns the finest voxels as a :class:`~lightning_pc.nn.point.Point` whose ``x`` holds
    the upcast features (``out_channels`` wide) and whose ``inverse`` maps the input points
    to them.

    Args:
        in_channels: width of ``batch.x`` (6: colour and normal); the stem sees
            ``3 + in_channels`` (Pointcept's ``in_channels``, 9).
        grid_size: voxel edge, in the units of the scaled coordinates.
        order: serialisation orders; block ``i`` of a stage reads order ``i % len(order)``.
        stride: pooling factor before each stage after the first.
        enc_depths, enc_channels, enc_num_head, enc_patch_size: per stage.
        mlp_ratio: MLP hidden width over the block width.
        qkv_bias: bias on the query/key/value projection.
        qk_scale: attention logit scale (``head_dim ** -0.5`` when ``None``).
        attn_drop: attention dropout.
        proj_drop: dropout after the attention projection and in the MLP.
        drop_path: largest drop path rate (linear from 0 over the blocks).
        pre_norm: LayerNorm before attention and MLP (else after the sums).
        layer_scale: initial layer scale, ``None`` for none (the released models).
        shuffle_orders: shuffle the orders at every level in training.
        mask_token: hold the stem's mask token (pretraining checkpoints carry it; unused at
            inference).
        rope_base: Utonia's 3D RoPE frequency base (10), ``None`` for none.
        coord_scale: factor on the (centred) coordinates before everything (Utonia).
        center: centre each cloud as Pointcept's ``CenterShift(apply_z=True)``.
        voxel_reduce: one point per voxel (``"first"``, as ``GridSample``) or the mean.
        upcast_levels: how many levels are concatenated on the way down to the finest
            (``None``: all, the probe heads' input; 2: Sonata's PCA demo).
    """

    def __init__(
        self,
        in_channels: int = 6,
        grid_size: float = 0.02,
        order: Sequence[str] = ORDER4,
        stride: Sequence[int] = (2, 2, 2, 2),
        enc_depths: Sequence[int] = (3, 3, 3, 12, 3),
        enc_channels: Sequence[int] = (48, 96, 192, 384, 512),
        enc_num_head: Sequence[int] = (3, 6, 12, 24, 32),
        enc_patch_size: Sequence[int] = (1024, 1024, 1024, 1024, 1024),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.3,
        pre_norm: bool = True,
        layer_scale: float | None = None,
        shuffle_orders: bool = True,
        mask_token: bool = False,
        rope_base: float | None = None,
        coord_scale: float = 1.0,
        center: bool = True,
        voxel_reduce: Literal["first", "mean"] = "first",
        upcast_levels: int | None = None,
    ) -> None:
        super().__init__()
        if grid_size <= 0:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        if coord_scale <= 0:
            raise ValueError(f"coord_scale must be positive, got {coord_scale}")
        if voxel_reduce not in ("first", "mean"):
            raise ValueError(f"voxel_reduce must be 'first' or 'mean', got {voxel_reduce!r}")
        self.in_channels = in_channels
        self.grid_size = grid_size
        self.order, n, stride, enc_channels, enc_num_head, enc_patch_size = encoder_stage_args(
            order, enc_depths, stride, enc_channels, enc_num_head, enc_patch_size
        )
        if upcast_levels is not None and not 0 <= upcast_levels <= n - 1:
            raise ValueError(f"upcast_levels must lie in [0, {n - 1}], got {upcast_levels}")
        self.num_stages = n
        self.shuffle_orders = shuffle_orders
        self.rope_base = rope_base
        self.coord_scale = coord_scale
        self.center = center
        self.voxel_reduce = voxel_reduce
        self.upcast_levels = upcast_levels
        k = n - 1 if upcast_levels is None else upcast_levels
        self.out_channels = sum(enc_channels[n - 1 - k :])

        self.embedding = LinearEmbedding(3 + in_channels, enc_channels[0], mask_token)
        rates = torch.linspace(0, drop_path, sum(enc_depths), device="cpu").tolist()
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for s in range(n):
            r = rates[sum(enc_depths[:s]) : sum(enc_depths[: s + 1])]
            if s > 0:
                self.down.append(
                    LayerNormGridPooling(enc_channels[s - 1], enc_channels[s], stride[s - 1])
                )
            blocks = nn.ModuleList()
            for i in range(enc_depths[s]):
                kw: dict[str, Any] = dict(
                    channels=enc_channels[s], num_heads=enc_num_head[s],
                    patch_size=enc_patch_size[s], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=proj_drop,
                    drop_path=r[i], pre_norm=pre_norm, order_index=i % len(self.order),
                    layer_scale=layer_scale,
                )  # fmt: skip
                if rope_base is None:
                    blocks.append(Block(**kw))
                else:
                    blocks.append(RoPEBlock(**kw, rope_base=rope_base))
            self.enc.append(blocks)

    def voxels(self, data: Any) -> Point:
        """The finest level: the input centred, scaled and voxelised on Pointcept's
        ``GridSample`` grid, serialised (orders shuffled in training)."""
        point = as_point(data).for_channels(self.in_channels)
        pos = point.pos
        if self.center:
            pos = cloud_center_shift(pos, point.batch, point.num_clouds)
        if self.coord_scale != 1.0:
            pos = pos * self.coord_scale
        if not bool(torch.isfinite(pos).all()):
            raise ValueError("batch.pos holds NaN or infinite coordinates")
        shifted = Point(pos, point.x, point.batch, point.ptr, category=point.category)
        vox = shifted.voxelize(self.grid_size, self.voxel_reduce, "zero")
        grid = cast(Tensor, vox.grid_coord)
        # GridSample: floor(pos / grid) minus its per-cloud minimum
        lo = grid.new_full((vox.num_clouds, 3), torch.iinfo(grid.dtype).max)
        lo = lo.scatter_reduce(0, vox.batch.view(-1, 1).expand_as(grid), grid, "amin")
        grid = grid - lo[vox.batch]
        check_grid(grid)
        level = Point(
            vox.pos,
            vox.x,
            vox.batch,
            vox.ptr,
            category=vox.category,
            grid_coord=grid,
            grid_size=self.grid_size,
            inverse=vox.inverse,
        )
        shuffle = self.shuffle_orders and self.training
        return level.with_serialization(level.serialization(self.order, shuffle=shuffle))

    def forward(self, point: Point, mask: Tensor | None = None) -> Point:
        """Per-voxel upcast features of the finest level (``inverse``: voxel of each input
        point); ``mask`` [voxels] replaces masked voxels by the mask token (pretraining)."""
        level = self.voxels(point)
        shuffle = self.shuffle_orders and self.training
        feat = self.embedding(level.pos_x, mask)
        finest = level
        feats: list[Tensor] = []
        clusters: list[Tensor] = []
        for s, blocks in enumerate(self.enc):
            if s > 0:
                feats.append(feat)
                feat, level, cluster = self.down[s - 1](feat, level, self.order, shuffle)
                clusters.append(cluster)
            for blk in cast(nn.ModuleList, blocks):
                feat = blk(feat, level)
        feats.append(feat)
        return finest.with_features(upcast(feats, clusters, self.upcast_levels))


def backbone_kwargs_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`PTv3EncoderBackbone` arguments from a Pointcept PT-v3m2/m3 backbone config
    (the ``config`` a Sonata ``.pth`` carries, or a config file's ``model.backbone``).

    Pointcept's ``in_channels`` counts the coordinates (9 -> ours 6). Options with no
    effect at inference (flash attention, upcasting, traceability, RoPE augmentations) are
    dropped.

    Raises:
        ValueError: a decoder (``enc_mode`` false) or relative position encoding, which
            these encoders do not have.
    """
    if not config.get("enc_mode", True):
        raise ValueError("the config has a decoder (enc_mode=False); this encoder has none")
    if config.get("enable_rpe", False):
        raise ValueError("the config enables relative position encoding (enable_rpe)")
    out: dict[str, Any] = {"in_channels": int(config.get("in_channels", 9)) - 3}
    for key in (
        "order", "stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size",
        "mlp_ratio", "qkv_bias", "qk_scale", "attn_drop", "proj_drop", "drop_path",
        "pre_norm", "layer_scale", "shuffle_orders", "mask_token",
    ):  # fmt: skip
        if key in config:
            v = config[key]
            out[key] = list(v) if isinstance(v, list | tuple) else v
    if "rope_base" in config:
        out["rope_base"] = float(config["rope_base"]) if config["rope_base"] else None
    return out


_PREFIXES = ("module.", "model.", "student.backbone.", "backbone.")


def convert_pointcept_state_dict(
    state_dict: Mapping[str, Tensor], mask_token: bool | None = None
) -> dict[str, Tensor]:
    """An official Sonata / Concerto / Utonia state dict in this model's keys.

    Takes the encoder keys of Pointcept's ``PT-v3m2`` / ``PT-v3m3`` (and of the standalone
    ``sonata`` package, the same names), bare or behind ``module.`` / ``backbone.``
    prefixes, and the linear-probe head (``seg_head.weight`` / ``.bias``, from
    ``DefaultSegmentorV2`` or Sonata's ``sonata_linear_prob_head_sc.pth``); returns the keys
    of the registered :class:`PointNetwork` (``backbone.`` and ``head.0.``), spconv kernels
    ``[C_out, 3, 3, 3, C_in]`` turned into ours ``[27, C_in, C_out]``. Other keys (a
    pretraining teacher, projection heads) raise ``KeyError``: pass the backbone's.

    Mapping (``s``: stage, ``i``: block)::

        embedding.stem.linear.*         -> backbone.embedding.linear.*
        embedding.stem.norm.*           -> backbone.embedding.norm.*
        embedding.mask_token            -> backbone.embedding.mask_token
        enc.enc{s}.down.proj.*          -> backbone.down.{s-1}.proj.*
        enc.enc{s}.down.norm.0.*        -> backbone.down.{s-1}.norm.*
        enc.enc{s}.block{i}.cpe.0.*     -> backbone.enc.{s}.{i}.cpe.conv.*  (kernel permuted)
        enc.enc{s}.block{i}.cpe.1/2.*   -> backbone.enc.{s}.{i}.cpe.linear/norm.*
        enc.enc{s}.block{i}.norm1.0.*   -> backbone.enc.{s}.{i}.norm1.*   (norm2 alike)
        enc.enc{s}.block{i}.attn.*      -> backbone.enc.{s}.{i}.attn.*    (rope.inv_freq too)
        enc.enc{s}.block{i}.mlp.0.fc*.* -> backbone.enc.{s}.{i}.mlp.fc*.*
        enc.enc{s}.block{i}.ls1.0.gamma -> backbone.enc.{s}.{i}.gamma1    (ls2 alike)
        seg_head.*                      -> head.0.*

    Args:
        state_dict: the official keys (a checkpoint's ``state_dict``).
        mask_token: ``False`` drops ``embedding.mask_token`` (to load a pretraining
            checkpoint into an encoder built without it), ``True`` requires it, ``None``
            keeps what is there.

    Raises:
        KeyError: a key of no known place, or a missing mask token asked for.
    """
    out: dict[str, Tensor] = {}
    for full, v in state_dict.items():
        k = full
        if k.startswith("seg_head."):
            out["head.0." + k[len("seg_head.") :]] = v
            continue
        for pre in _PREFIXES:
            if k.startswith(pre):
                k = k[len(pre) :]
        if k.startswith("seg_head."):
            out["head.0." + k[len("seg_head.") :]] = v
            continue
        p = k.split(".")
        if p[0] == "embedding":
            if p[1] == "mask_token":
                if mask_token is False:
                    continue
                key = "embedding.mask_token"
            elif p[1] == "stem" and p[2] in ("linear", "norm"):
                key = f"embedding.{p[2]}.{p[-1]}"
            else:
                raise KeyError(f"no place for {full!r}")
        elif p[0] == "enc" and p[1].startswith("enc"):
            s = int(p[1][3:])
            if p[2] == "down":
                part = {"proj": "proj", "norm": "norm"}.get(p[3])
                if part is None:
                    raise KeyError(f"no place for {full!r}")
                key = f"down.{s - 1}.{part}.{p[-1]}"
            elif p[2].startswith("block"):
                tail = block_key(p[3:])
                if tail is None:
                    raise KeyError(f"no place for {full!r}")
                key = f"enc.{s}.{int(p[2][5:])}.{tail}"
                if key.endswith("cpe.conv.weight"):
                    v = spconv_kernel(v)
            else:
                raise KeyError(f"no place for {full!r}")
        else:
            raise KeyError(f"no place for {full!r}")
        out["backbone." + key] = v
    if mask_token and "backbone.embedding.mask_token" not in out:
        raise KeyError("the state dict holds no embedding.mask_token")
    return out


def _inverse_block_key(p: list[str]) -> str:
    if p[0] == "cpe":
        return "cpe." + {"conv": "0", "linear": "1", "norm": "2"}[p[1]] + "." + p[-1]
    if p[0] in ("norm1", "norm2"):
        return f"{p[0]}.0.{p[-1]}"
    if p[0] == "attn":
        return ".".join(p)
    if p[0] == "mlp":
        return f"mlp.0.{p[1]}.{p[-1]}"
    if p[0] in ("gamma1", "gamma2"):
        return f"ls{p[0][-1]}.0.gamma"
    raise KeyError(".".join(p))


def to_pointcept_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`convert_pointcept_state_dict`: this model's keys (a
    :class:`PointNetwork`'s, ``backbone.`` / ``head.0.``) in Pointcept's PT-v3m2/m3 names, the
    positional-convolution kernels in spconv's ``[C_out, 3, 3, 3, C_in]`` layout, the head as
    ``seg_head.*``. For writing checkpoints in the official layout (tests, export).

    Raises:
        KeyError: a key of no official place (a head with hidden layers).
    """
    out: dict[str, Tensor] = {}
    for full, v in state_dict.items():
        if full.startswith("head.0."):
            out["seg_head." + full[len("head.0.") :]] = v
            continue
        if not full.startswith("backbone."):
            raise KeyError(f"no official place for {full!r}")
        p = full[len("backbone.") :].split(".")
        if p[0] == "embedding":
            key = (
                "embedding.mask_token" if p[1] == "mask_token" else f"embedding.stem.{p[1]}.{p[-1]}"
            )
        elif p[0] == "down":
            s = int(p[1]) + 1
            key = f"enc.enc{s}.down." + ("proj." if p[2] == "proj" else "norm.0.") + p[-1]
        elif p[0] == "enc":
            key = f"enc.enc{int(p[1])}.block{int(p[2])}." + _inverse_block_key(p[3:])
            if key.endswith("cpe.0.weight"):
                k3 = round(v.size(0) ** (1 / 3))
                v = v.reshape(k3, k3, k3, v.size(1), v.size(2)).permute(4, 0, 1, 2, 3)
        else:
            raise KeyError(f"no official place for {full!r}")
        out[key] = v.contiguous()
    return out


def _build(preset: str, num_classes: int, in_channels: int, **kwargs: Any) -> PointNetwork:
    args = {**PRESETS[preset], **kwargs}
    backbone = PTv3EncoderBackbone(in_channels, **args)
    return PointNetwork(backbone, SegmentationHead(backbone.out_channels, num_classes))


@register_model("sonata_small")
def sonata_small(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Sonata small encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("sonata_small", num_classes, in_channels, **kwargs)


@register_model("sonata_base")
def sonata_base(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Sonata base encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("sonata_base", num_classes, in_channels, **kwargs)


@register_model("concerto_tiny")
def concerto_tiny(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Concerto tiny encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("concerto_tiny", num_classes, in_channels, **kwargs)


@register_model("concerto_small")
def concerto_small(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Concerto small encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("concerto_small", num_classes, in_channels, **kwargs)


@register_model("concerto_base")
def concerto_base(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Concerto base encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("concerto_base", num_classes, in_channels, **kwargs)


@register_model("concerto_large")
def concerto_large(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Concerto large encoder (PT-v3m2) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("concerto_large", num_classes, in_channels, **kwargs)


@register_model("utonia_tiny")
def utonia_tiny(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Utonia tiny encoder (PT-v3m3, 3D RoPE) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("utonia_tiny", num_classes, in_channels, **kwargs)


@register_model("utonia_small")
def utonia_small(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Utonia small encoder (PT-v3m3, 3D RoPE) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("utonia_small", num_classes, in_channels, **kwargs)


@register_model("utonia_base")
def utonia_base(num_classes: int = 20, in_channels: int = 6, **kwargs: Any) -> PointNetwork:
    """Utonia base encoder (PT-v3m3, 3D RoPE) with a linear probe head; ``kwargs``:
    :class:`PTv3EncoderBackbone` arguments."""
    return _build("utonia_base", num_classes, in_channels, **kwargs)
