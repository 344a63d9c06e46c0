"""Layers of the self-supervised PTv3 encoders (Sonata, Concerto, Utonia) in pure PyTorch.

Pointcept's PT-v3m2 (Sonata, Concerto) and PT-v3m3 (Utonia) keep PT-v3m1's blocks
(:class:`~lightning_pc.nn.ptv3.Block`: positional convolution, pre-norm attention in
patches of serialised voxels, MLP) and change what sits around them:

- :class:`LinearEmbedding`: the stem is a linear map, LayerNorm and GELU per voxel (no
  convolution), with an optional learned mask token that masked voxels take in
  pretraining (:meth:`LinearEmbedding.forward` with a ``mask``); at inference no mask is
  given, and the token is only a parameter the checkpoints carry;
- :class:`LayerNormGridPooling`: voxels sharing ``floor(grid / stride)`` in a cloud merge
  (linear, max, LayerNorm, GELU); the coarse level is serialised again from its own grid
  (adaptive depth), and the map from each fine voxel to its coarse voxel is kept so the
  features of every level can be read back at the finest (:func:`upcast`, as Sonata's
  demos and Pointcept's ``DefaultSegmentorV2`` do);
- :class:`RoPESerializedAttention` / :class:`RoPEBlock` (Utonia): queries and keys are
  rotated by a 3D rotary position embedding (:class:`RoPE3D`) of the voxel coordinates of
  their level before attention.

In these models the positional convolution of each block reads that block's input (the
previous block's output), unlike the released PT-v3m1 weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lightning_pc.nn.point import Point
from lightning_pc.nn.ptv3 import (
    Block,
    SerializedAttention,
    plan_of,
    pool_clusters,
    serialized,
)
from lightning_pc.nn.segment import ptr_from_index
from lightning_pc.nn.sparse.tensor import SparseTensor

#: bits per grid axis in the pooling keys (Pointcept's serialisation allows depth 16)
_AXIS_BITS = 16


class LinearEmbedding(nn.Module):
    """Stem of PT-v3m2/m3: ``GELU(LayerNorm(Linear(x)))`` per voxel, and an optional mask
    token.

    Args:
        in_channels: input width (9 for Sonata: coordinates, colour, normal).
        channels: output width.
        mask_token: hold a learned ``[1, channels]`` token (pretraining checkpoints carry
            one; it is used only when :meth:`forward` is given a mask).
    """

    def __init__(self, in_channels: int, channels: int, mask_token: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, channels)
        self.norm = nn.LayerNorm(channels)
        self.act = nn.GELU()
        self.mask_token: nn.Parameter | None = None
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, channels))

    def forward(self, feat: Tensor, mask: Tensor | None = None) -> Tensor:
        """[N, in_channels] -> [N, channels]; rows where ``mask`` [N] is true take the
        mask token (masked pretraining; inference passes no mask).

        Raises:
            ValueError: a mask without a mask token.
        """
        h = self.act(self.norm(self.linear(feat)))
        if mask is None:
            return h
        if self.mask_token is None:
            raise ValueError("a mask was given to an embedding built without mask_token")
        return torch.where(mask.view(-1, 1), self.mask_token.to(h.dtype), h)


class LayerNormGridPooling(nn.Module):
    """Grid pooling of PT-v3m2/m3: ``GELU(LayerNorm(reduce(Linear(x))))`` over the voxels of
    a cloud sharing ``floor(grid / stride)``.

    Args:
        in_channels: input width.
        out_channels: output width.
        stride: pooling factor per axis (any integer >= 2).
        reduce: ``"max"`` (Pointcept's default), ``"mean"``, ``"sum"`` or ``"min"``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 2, reduce: str = "max"
    ) -> None:
        super().__init__()
        if stride < 2:
            raise ValueError(f"pooling stride must be >= 2, got {stride}")
        if reduce not in ("max", "mean", "sum", "min"):
            raise ValueError(f"reduce must be max, mean, sum or min, got {reduce!r}")
        self.stride = stride
        self.reduce = reduce
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels)
        self.act = nn.GELU()

    def forward(
        self, feat: Tensor, level: Point, orders: tuple[str, ...], shuffle: bool
    ) -> tuple[Tensor, Point, Tensor]:
        """Pools ``feat`` [N, C] of the voxel point ``level``.

        Returns:
            the coarse features [M, C'], the coarse level (a voxel :class:`Point`: ``pos``
            the mean of its fine voxels', grid ``floor(grid / stride)``, serialised in
            ``orders`` at the smallest depth holding its grid, shuffled when ``shuffle``),
            and ``cluster`` [N], the coarse voxel of each fine voxel (coarse voxels are
            sorted by cloud, then by grid cell).
        """
        if level.grid_coord is None:
            raise ValueError("grid pooling needs a voxel point (grid_coord)")
        grid = torch.div(level.grid_coord, self.stride, rounding_mode="floor")
        b = _AXIS_BITS
        key = (
            (level.batch.long() << (3 * b))
            | (grid[:, 0] << (2 * b))
            | (grid[:, 1] << b)
            | grid[:, 2]
        )
        cluster, head = pool_clusters(key)
        m = head.size(0)
        h = self.proj(feat)
        red = {"max": "amax", "min": "amin", "mean": "mean", "sum": "sum"}[self.reduce]
        pooled = h.new_zeros(m, h.size(1)).scatter_reduce_(
            0, cluster.view(-1, 1).expand_as(h), h, reduce=red, include_self=False
        )
        pos = level.pos.new_zeros(m, 3).scatter_reduce_(
            0, cluster.view(-1, 1).expand_as(level.pos), level.pos, "mean", include_self=False
        )
        grid = grid[head]
        batch = level.batch[head]
        sparse = SparseTensor(torch.cat([batch.view(-1, 1), grid], dim=1), pooled)
        coarse = Point(
            pos,
            None,
            batch,
            ptr_from_index(batch, level.num_clouds),
            grid_coord=grid,
            grid_size=None if level.grid_size is None else level.grid_size * self.stride,
            sparse=sparse,
        )
        coarse = coarse.with_serialization(coarse.serialization(orders, shuffle=shuffle))
        return self.act(self.norm(pooled)), coarse, cluster


def check_grid(grid: Tensor) -> None:
    """Raises a ``ValueError`` when a grid does not fit the pooling keys (16 bits per axis,
    as Pointcept's serialisation depth limit)."""
    if grid.numel() and int(grid.max()) >= 1 << _AXIS_BITS:
        raise ValueError(
            f"the scan spans {int(grid.max()) + 1} voxels along an axis; at most "
            f"{1 << _AXIS_BITS} fit (use a larger grid size or crop the scan)"
        )


def upcast(feats: list[Tensor], clusters: list[Tensor], concat_levels: int | None) -> Tensor:
    """Features of every encoder level read back at the finest level's voxels.

    Walking from the coarsest level to the finest, each step reads the current features
    at the finer voxels through the pooling's ``cluster`` map and, for the first
    ``concat_levels`` steps (all when ``None``), concatenates them after the finer level's
    own features; later steps only carry them down. ``None`` is what Pointcept's
    ``DefaultSegmentorV2`` feeds the linear-probe heads (all widths summed); 2 is what
    Sonata's PCA demo shows (the last three stages).

    Args:
        feats: per level, finest first, ``[N_s, C_s]``.
        clusters: per pooling, ``[N_{s}]`` coarse voxel of each voxel of level ``s``.
        concat_levels: how many steps concatenate.
    """
    if len(clusters) != len(feats) - 1:
        raise ValueError("upcast needs one cluster map per pooling")
    out = feats[-1]
    steps = len(clusters) if concat_levels is None else concat_levels
    for i, s in enumerate(reversed(range(len(clusters)))):
        out = out.index_select(0, clusters[s])
        if i < steps:
            out = torch.cat([feats[s], out], dim=1)
    return out


class RoPE3D(nn.Module):
    """3D rotary position embedding (Utonia): the head dimension is cut in three chunks, one
    per axis; each chunk is rotated as 1D RoPE of that coordinate, with frequencies
    ``base ** (-2j / chunk)`` (rotate-half layout).

    Args:
        head_dim: per-head width (divisible by 3, with an even chunk).
        base: frequency base (Utonia: 10).
    """

    inv_freq: Tensor

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 3 or (head_dim // 3) % 2:
            raise ValueError(
                f"3D RoPE needs a head dimension divisible by 3 into even chunks, got {head_dim}"
            )
        self.chunk = head_dim // 3
        self.base = base
        inv_freq = 1.0 / (base ** (torch.arange(0, self.chunk, 2).float() / self.chunk))
        self.register_buffer("inv_freq", inv_freq)  # in the checkpoints' state dicts

    def forward(self, q: Tensor, k: Tensor, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """Rotates ``q``, ``k`` [N, H, head_dim] by the coordinates ``xyz`` [N, 3]."""
        n, h, d = q.shape
        angle = xyz.unsqueeze(-1).to(self.inv_freq.dtype) * self.inv_freq  # [N, 3, c/2]
        angle = torch.cat([angle, angle], dim=-1).unsqueeze(1)  # [N, 1, 3, c]
        cos, sin = angle.cos(), angle.sin()

        def rotate(x: Tensor) -> Tensor:
            x = x.reshape(n, h, 3, self.chunk)
            x1, x2 = x.chunk(2, dim=-1)
            rot = torch.cat([-x2, x1], dim=-1)
            return (x * cos + rot * sin).to(x.dtype).reshape(n, h, d)

        return rotate(q), rotate(k)

    def extra_repr(self) -> str:
        return f"chunk={self.chunk}, base={self.base}"


class RoPESerializedAttention(SerializedAttention):
    """:class:`~lightning_pc.nn.ptv3.SerializedAttention` whose queries and keys are
    rotated by :class:`RoPE3D` of the level's voxel coordinates (``level.pos``) first.

    Args:
        rope_base: frequency base of the rotary embedding.
        *args, **kwargs: :class:`SerializedAttention` arguments.
    """

    def __init__(self, *args: Any, rope_base: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rope = RoPE3D(self.channels // self.num_heads, rope_base)

    def forward(self, feat: Tensor, level: Point) -> Tensor:
        plan = plan_of(level, self.patch_size)
        s = serialized(level)
        i = self.order_index % s.order.size(0)
        n, c, h = feat.size(0), self.channels, self.num_heads
        q, k, v = self.qkv(feat).view(n, 3, h, c // h).unbind(1)
        q, k = self.rope(q, k, level.pos)
        qkv = torch.stack([q, k, v], dim=1).reshape(n, 3 * c)[s.order[i]]
        full = self._attend(qkv[plan.full], None)
        short = self._attend(qkv[plan.short], plan.short_mask)
        out = torch.cat([full, short])[plan.take][s.inverse[i]]
        return self.proj_drop(self.proj(out))  # type: ignore[no-any-return]


class RoPEBlock(Block):
    """:class:`~lightning_pc.nn.ptv3.Block` with :class:`RoPESerializedAttention` (Utonia).

    Args:
        rope_base: frequency base of the rotary embedding.
        (others): :class:`Block` arguments.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int = 1024,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        pre_norm: bool = True,
        order_index: int = 0,
        layer_scale: float | None = None,
        rope_base: float = 10.0,
    ) -> None:
        super().__init__(
            channels=channels, num_heads=num_heads, patch_size=patch_size, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=proj_drop,
            drop_path=drop_path, pre_norm=pre_norm, order_index=order_index,
            layer_scale=layer_scale,
        )  # fmt: skip
        self.attn = RoPESerializedAttention(
            channels=channels, num_heads=num_heads, patch_size=patch_size, qkv_bias=qkv_bias,
            qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=proj_drop,
            order_index=order_index, rope_base=rope_base,
        )  # fmt: skip


def cloud_center_shift(pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    """``pos`` minus each cloud's Pointcept ``CenterShift(apply_z=True)`` offset: the middle
    of its bounding box in x and y, its minimum in z."""
    index = batch.view(-1, 1).expand_as(pos)
    lo = pos.new_full((num_clouds, 3), math.inf).scatter_reduce(0, index, pos, "amin")
    hi = pos.new_full((num_clouds, 3), -math.inf).scatter_reduce(0, index, pos, "amax")
    shift = torch.cat([(lo[:, :2] + hi[:, :2]) / 2, lo[:, 2:]], dim=1)
    return pos - shift[batch]
