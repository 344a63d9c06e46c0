"""Blocks of Point Transformer V3 (Wu et al., CVPR 2024) in pure PyTorch.

The network works on voxels, one resolution per stage. Each level is a voxel
:class:`~lightning_pc.nn.point.Point` (non-negative grid coordinates per cloud, cloud index,
a sparse tensor over the same sites for the convolutions) carrying its serialisation
(:attr:`Point.serialized`: codes in ``K`` orders with their sort orders and inverses). The
blocks take the features ``[N, C]`` and the level they live on. Voxels of a level are
sorted by cloud.

- :class:`SerializedAttention`: the voxels sorted along one curve are cut into patches of
  ``patch_size`` consecutive voxels of one cloud; multi-head self-attention runs inside each
  patch through ``torch.nn.functional.scaled_dot_product_attention``. A cloud with more
  voxels than the patch size whose count is not a multiple of it has a last patch made of
  its last ``patch_size`` voxels (Pointcept's padding: the missing slots are filled with the
  voxels before them, which attend but whose outputs come from their own patch). A cloud
  with fewer voxels is one patch of its own size (a key mask pads it). No patch ever spans
  two clouds.
- :class:`RPE`: PT-v3m1's optional relative position encoding, a learned per-head bias on
  the logits from the clamped grid offsets of each pair of voxels of a patch.
- :class:`Block`: conditional positional encoding (submanifold 3x3x3 sparse convolution,
  linear, LayerNorm) added to the input; then pre-norm attention and pre-norm MLP, each
  with drop path (per voxel, as timm's ``DropPath`` on ``[N, C]``) and an optional layer
  scale (off by default, as in PT-v3m1).
- :class:`GridPooling` / :class:`GridUnpooling`: voxels sharing ``code >> 3 * log2(stride)``
  merge (linear, then max, then BatchNorm and GELU); unpooling adds the projected coarse
  features, read through the pooling's inverse map, to the projected skip features (and,
  as Pointcept's code does, the next block's positional encoding reads the projected skip
  features alone).

What reads the data in Python (the depth of the codes, the patch plan's sizes, the pooling
clusters) runs inside custom ops with fake kernels (``lightning_pc::ptv3_serialize``,
``ptv3_patch_plan``, ``ptv3_pool_clusters``), so ``torch.compile`` traces the network as one
graph and ``torch.export`` gives a program for any point and cloud counts
(``tests/models/test_compile.py``); eager outputs are those of the plain code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.nn.mlp import batch_norm_rows
from lightning_pc.nn.point import Point, Serialization
from lightning_pc.nn.segment import lengths_from_ptr, ptr_from_index
from lightning_pc.nn.serialization import inverse_permutation
from lightning_pc.nn.sparse.conv import SparseConv3d
from lightning_pc.nn.sparse.norm import _site_batch_norm as site_batch_norm
from lightning_pc.nn.sparse.tensor import SparseTensor

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def serialized(point: Point) -> Serialization:
    """The serialisation a PTv3 level carries (:attr:`Point.serialized`).

    Raises:
        ValueError: the point carries none.
    """
    if point.serialized is None:
        raise ValueError(
            "a PTv3 level is a voxel point carrying its serialisation: "
            "point.with_serialization(point.serialization(orders))"
        )
    return point.serialized


def plan_of(point: Point, patch_size: int) -> PatchPlan:
    """Attention patch plan of the voxels of ``point`` for ``patch_size`` (cached on the
    point: it depends only on the cloud sizes)."""

    def build() -> PatchPlan:
        return PatchPlan(*patch_plan(point.batch, lengths_from_ptr(point.ptr), patch_size))

    return point.cached(("ptv3_patch_plan", patch_size), build)


@dataclass(frozen=True)
class PatchPlan:
    """Where each voxel (in serialised position) sits in the attention patches.

    Attributes:
        full: [P, S] serialised positions of the ``P`` patches of ``S = patch_size`` voxels.
        short: [Q, L] serialised positions of the clouds with fewer voxels than the patch
            size, padded to the longest, ``L`` (padding slots repeat position 0 of the row).
        short_mask: [Q, L] which slots of ``short`` are real.
        take: [N] row of the flattened outputs (full patches first, then short rows) that
            holds the result of each serialised position.
    """

    full: Tensor
    short: Tensor
    short_mask: Tensor
    take: Tensor

    @staticmethod
    def build(counts: Tensor, patch_size: int) -> PatchPlan:
        """Plan for clouds of ``counts`` [B] voxels (consecutive in serialised order)."""
        dev = counts.device
        s = patch_size
        starts = torch.cumsum(counts, 0) - counts  # [B] first position of each cloud
        n = int(counts.sum())
        ar_s = torch.arange(s, device=dev)
        # clouds with at least ``s`` voxels: ceil(n / s) windows, the last one ending at n
        big = counts >= s
        m = torch.where(big, (counts + s - 1) // s, torch.zeros_like(counts))  # [B]
        cloud = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), m)  # [P]
        j = torch.arange(cloud.numel(), device=dev) - (torch.cumsum(m, 0) - m)[cloud]
        win = torch.minimum(j * s, counts[cloud] - s)  # [P] window start within its cloud
        full = (starts[cloud] + win).unsqueeze(1) + ar_s  # [P, S]
        # every position of a big cloud reads the window of index min(t // s, m - 1)
        pos_cloud = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts)
        t = torch.arange(n, device=dev) - starts[pos_cloud]  # position within the cloud
        in_big = big[pos_cloud]
        jb = torch.minimum(t // s, m[pos_cloud] - 1)
        first_patch = torch.cumsum(m, 0) - m  # [B]
        wstart = torch.minimum(jb * s, counts[pos_cloud] - s)
        take_big = (first_patch[pos_cloud] + jb) * s + (t - wstart)
        # clouds with fewer (and more than zero) voxels: one masked row each
        small = (counts > 0) & ~big
        small_ids = torch.nonzero(small).flatten()
        q = small_ids.numel()
        length = int(counts[small_ids].max()) if q else 0
        ar_l = torch.arange(length, device=dev)
        short_mask = ar_l.unsqueeze(0) < counts[small_ids].unsqueeze(1)  # [Q, L]
        short = torch.where(
            short_mask, starts[small_ids].unsqueeze(1) + ar_l, starts[small_ids].unsqueeze(1)
        )
        row_of = torch.full_like(counts, -1)
        row_of[small_ids] = torch.arange(q, device=dev)
        take_small = full.numel() + row_of[pos_cloud] * length + t
        take = torch.where(in_big, take_big, take_small)
        return PatchPlan(full, short, short_mask, take)


@torch.library.custom_op("lightning_pc::ptv3_patch_plan", mutates_args=())
def patch_plan(
    batch: Tensor, counts: Tensor, patch_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:meth:`PatchPlan.build` as a custom op: the plan's sizes (patches, short clouds, their
    longest length) depend on the cloud sizes, so its kernel runs eagerly and
    ``torch.compile`` traces it as one call with data-dependent output sizes.

    Args:
        batch: [N] cloud index of the voxels (sorted); gives ``N`` to the traced graph.
        counts: [B] voxels per cloud.
        patch_size: voxels per patch.

    Returns:
        ``full`` [P, S], ``short`` [Q, L], ``short_mask`` [Q, L], ``take`` [N] (see
        :class:`PatchPlan`).
    """
    plan = PatchPlan.build(counts, patch_size)
    return plan.full, plan.short, plan.short_mask, plan.take


@patch_plan.register_fake
def _patch_plan_fake(
    batch: Tensor, counts: Tensor, patch_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    ctx = torch.library.get_ctx()
    p, q, length = ctx.new_dynamic_size(), ctx.new_dynamic_size(), ctx.new_dynamic_size()
    long = torch.long
    return (
        counts.new_empty((p, patch_size), dtype=long),
        counts.new_empty((q, length), dtype=long),
        counts.new_empty((q, length), dtype=torch.bool),
        counts.new_empty((batch.size(0),), dtype=long),
    )


def _plain_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    scale: float,
    dropout_p: float,
    bias: Tensor | None = None,
) -> Tensor:
    """``scaled_dot_product_attention`` with a key mask, written out, for compiled graphs:
    the masked rows (clouds smaller than a patch) have a data-dependent length ``L`` (0 when
    there is no such cloud), on which the fused op's checks guard, which a graph cannot do;
    these ops take any size. (Full patches, of static length, keep the fused op.)

    Args:
        q, k, v: [R, H, L, d].
        mask: [R, L] which keys are real, or ``None``.
        scale: logit scale.
        dropout_p: dropout on the attention weights.
        bias: [R, H, L, L] added to the logits (relative position encoding), or ``None``.
    """
    r, h, length, _ = q.shape
    logits = torch.matmul(q * scale, k.transpose(-2, -1))  # [R, H, L, L]
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        keys = mask.view(r, 1, 1, length).expand(r, h, length, length)
        logits = logits.masked_fill(~keys, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return torch.matmul(weights, v)


class RPE(nn.Module):
    """Relative position encoding of PT-v3m1 (Pointcept's ``enable_rpe``): a learned bias
    per head on the attention logit of query voxel ``i`` and key voxel ``j``, the sum over
    the axes ``a`` of ``rpe_table[a * n + clamp(g_i[a] - g_j[a], -b, b) + b]``, with ``g``
    the level's grid coordinates, ``b = int((4 * patch_size) ** (1 / 3) * 2)`` computed in
    floating point as Pointcept does (15 for patches of 128, 31 for 1024) and ``n = 2b + 1``.

    Args:
        patch_size: voxels per patch (sets the bound ``b``).
        num_heads: attention heads.

    Attributes:
        rpe_table: [3n, num_heads] (Pointcept's ``attn.rpe.rpe_table``; truncated normal
            initialisation, std 0.02).
    """

    def __init__(self, patch_size: int, num_heads: int) -> None:
        super().__init__()
        self.pos_bnd = int((4 * patch_size) ** (1 / 3) * 2)
        self.rpe_num = 2 * self.pos_bnd + 1
        self.rpe_table = nn.Parameter(torch.zeros(3 * self.rpe_num, num_heads))
        nn.init.trunc_normal_(self.rpe_table, std=0.02)

    def forward(self, grid: Tensor) -> Tensor:
        """``grid`` [R, L, 3] (the voxels of ``R`` patches) -> bias [R, H, L, L]."""
        b = self.pos_bnd
        out: Tensor | None = None
        for a in range(3):  # one axis at a time: a [R, L, L] index, not [R, L, L, 3]
            g = grid[..., a]
            rel = (g.unsqueeze(2) - g.unsqueeze(1)).clamp(-b, b) + (b + a * self.rpe_num)
            t = self.rpe_table[rel]  # [R, L, L, H]
            out = t if out is None else out + t
        assert out is not None
        return out.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"pos_bnd={self.pos_bnd}, heads={self.rpe_table.size(1)}"


class SerializedAttention(nn.Module):
    """Multi-head self-attention inside patches of serialised voxels.

    Args:
        channels: feature width (divisible by ``num_heads``).
        num_heads: attention heads.
        patch_size: voxels per patch.
        qkv_bias: bias on the query/key/value projection.
        qk_scale: logit scale; ``head_dim ** -0.5`` when ``None``.
        attn_drop: dropout on the attention weights (training).
        proj_drop: dropout after the output projection (training).
        order_index: which of the level's serialisations this layer reads.
        enable_rpe: add :class:`RPE`'s bias to the logits (``self.rpe``; Pointcept's
            ``enable_rpe``, which its flash path cannot run: its S3DIS ``-rpe`` model).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        order_index: int = 0,
        enable_rpe: bool = False,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({num_heads})")
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.channels = channels
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.scale = qk_scale or (channels // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.order_index = order_index
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe = RPE(patch_size, num_heads) if enable_rpe else None

    def _attend(self, qkv: Tensor, mask: Tensor | None, bias: Tensor | None = None) -> Tensor:
        """[R, L, 3C] packed rows -> [R * L, C] attention outputs (``bias`` [R, H, L, L]
        added to the logits)."""
        r, length, _ = qkv.shape
        h, d = self.num_heads, self.channels // self.num_heads
        q, k, v = qkv.view(r, length, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # [R, H, L, d]
        p = self.attn_drop if self.training else 0.0
        if torch.compiler.is_compiling() and mask is not None:
            out = _plain_attention(q, k, v, mask, self.scale, p, bias)
        else:
            attn_mask: Tensor | None = None if mask is None else mask.view(r, 1, 1, length)
            if bias is not None:
                attn_mask = (
                    bias
                    if mask is None
                    else bias.masked_fill(~mask.view(r, 1, 1, length), float("-inf"))
                )
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, scale=self.scale
            )  # [R, H, L, d]
        return out.transpose(1, 2).reshape(r * length, self.channels)

    def forward(self, feat: Tensor, level: Point) -> Tensor:
        """[N, C] -> [N, C] for the voxels of ``level``."""
        plan = plan_of(level, self.patch_size)
        s = serialized(level)
        k = self.order_index % s.order.size(0)
        qkv = self.qkv(feat)[s.order[k]]  # [N, 3C] in serialised order
        full_bias = short_bias = None
        if self.rpe is not None:
            if level.grid_coord is None:
                raise ValueError("relative position encoding needs a voxel point (grid_coord)")
            grid = level.grid_coord[s.order[k]]  # [N, 3] in serialised order
            full_bias, short_bias = self.rpe(grid[plan.full]), self.rpe(grid[plan.short])
        # both kinds of rows always go through attention (an empty set gives no row): no
        # branch on the plan's data-dependent sizes, so a compiled graph holds either case
        full = self._attend(qkv[plan.full], None, full_bias)
        short = self._attend(qkv[plan.short], plan.short_mask, short_bias)
        out = torch.cat([full, short])[plan.take][s.inverse[k]]  # back to voxel order
        return self.proj_drop(self.proj(out))


class MLP(nn.Module):
    """Linear, GELU, dropout, linear, dropout."""

    def __init__(self, channels: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth per row: in training, each row is zeroed with probability ``p``
    and the others are scaled by ``1 / (1 - p)``; identity in evaluation."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.size(0), *([1] * (x.dim() - 1))).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CPE(nn.Module):
    """Conditional positional encoding: submanifold 3x3x3 conv (with bias), linear, LayerNorm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = SparseConv3d(channels, channels, 3, bias=True)
        self.linear = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, feat: Tensor, level: Point) -> Tensor:
        return self.norm(self.linear(self.conv(level.sparse_tensor(feat)).feats))


class Block(nn.Module):
    """PTv3 block: ``x += cpe(x)``; ``x += dp(attn(norm1(x)))``; ``x += dp(mlp(norm2(x)))``.

    With ``pre_norm=False`` the norms follow the residual sums instead. ``layer_scale``
    (``None``: off, as PT-v3m1) multiplies each branch by a learned per-channel vector
    initialised to that value. ``enable_rpe`` adds :class:`RPE` to the attention.

    :meth:`run` also returns what Pointcept v1.5.1's next block convolved in its positional
    encoding (see :class:`~lightning_pc.models.ptv3.PTv3Backbone`'s ``legacy``).
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
        enable_rpe: bool = False,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.cpe = CPE(channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SerializedAttention(
            channels, num_heads, patch_size, qkv_bias, qk_scale, attn_drop, proj_drop,
            order_index, enable_rpe,
        )  # fmt: skip
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = MLP(channels, int(channels * mlp_ratio), proj_drop)
        self.drop_path = DropPath(drop_path)
        self.gamma1: nn.Parameter | None = None
        self.gamma2: nn.Parameter | None = None
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((channels,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def forward(self, feat: Tensor, level: Point, cpe_input: Tensor | None = None) -> Tensor:
        """``feat`` [N, C] of ``level``; ``cpe_input`` (default ``feat``) is what the
        positional-encoding convolution reads (see :class:`GridUnpooling`)."""
        return self.run(feat, level, cpe_input)[0]

    def run(
        self, feat: Tensor, level: Point, cpe_input: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward`'s output and the features Pointcept v1.5.1's sparse tensor held
        after this block: with ``pre_norm`` the MLP branch (after drop path and layer
        scale), not the residual sum (its block ended on a ``replace_feature`` whose result
        it dropped; fixed in Pointcept's commit 74c4fc1, after its PTv3 weights were
        trained), else the output (its ``norm2`` wrote the tensor)."""
        feat = feat + self.cpe(feat if cpe_input is None else cpe_input, level)
        h = self.attn(self.norm1(feat) if self.pre_norm else feat, level)
        if self.gamma1 is not None:
            h = h * self.gamma1
        feat = feat + self.drop_path(h)
        if not self.pre_norm:
            feat = self.norm1(feat)
        h = self.mlp(self.norm2(feat) if self.pre_norm else feat)
        if self.gamma2 is not None:
            h = h * self.gamma2
        h = self.drop_path(h)
        feat = feat + h
        if not self.pre_norm:
            feat = self.norm2(feat)
            return feat, feat
        return feat, h


class NormAct(nn.Module):
    """BatchNorm1d (PTv3's eps 1e-3, momentum 0.01; a lone row uses the running statistics)
    then GELU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        norm = self.norm
        if torch.compiler.is_compiling() and type(norm) is nn.BatchNorm1d:
            # the row count of a level is data-dependent: no branch on it in a graph
            return self.act(site_batch_norm(norm, x))
        return self.act(batch_norm_rows(norm, x))


class Embedding(nn.Module):
    """Stem: submanifold 5x5x5 convolution (no bias), BatchNorm, GELU."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = SparseConv3d(in_channels, channels, 5, bias=False)
        self.norm = NormAct(channels)

    def forward(self, feat: Tensor, level: Point) -> Tensor:
        return self.norm(self.conv(level.sparse_tensor(feat)).feats)


class GridPooling(nn.Module):
    """Serialised grid pooling by ``stride`` (a power of two): linear, max per parent voxel,
    BatchNorm, GELU.

    Args:
        in_channels: input width.
        out_channels: output width.
        stride: pooling factor per axis (2, 4, 8, ...).
        reduce: ``"max"`` (PTv3), ``"mean"``, ``"sum"`` or ``"min"``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 2, reduce: str = "max"
    ) -> None:
        super().__init__()
        if stride < 2 or stride & (stride - 1):
            raise ValueError(f"pooling stride must be a power of two >= 2, got {stride}")
        if reduce not in ("max", "mean", "sum", "min"):
            raise ValueError(f"reduce must be max, mean, sum or min, got {reduce!r}")
        self.stride = stride
        self.reduce = reduce
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = NormAct(out_channels)

    def forward(self, feat: Tensor, level: Point, shuffle: bool) -> tuple[Tensor, Point, Tensor]:
        """Pools ``feat`` [N, C] of ``level``.

        Returns:
            the coarse features [M, C'], the coarse level (a voxel :class:`Point` whose
            ``pos`` is the mean of its fine voxels' and whose serialisation is made of the
            parents' codes), and ``cluster`` [N], the coarse voxel of each fine voxel (the
            unpooling's inverse map).
        """
        fine = serialized(level)
        if level.grid_coord is None:
            raise ValueError("grid pooling needs a voxel point (grid_coord)")
        # as Pointcept: a level coarser than its codes allow is not pooled (shift 0); the
        # depth is a tensor, so is the shift
        wanted = int(math.log2(self.stride))
        shift = wanted * (fine.depth >= wanted).long()
        code = fine.code >> (3 * shift)
        cluster, head = pool_clusters(code[0])
        m = head.size(0)
        code = code[:, head]
        order = torch.argsort(code, dim=1)
        serial = Serialization(fine.depth - shift, code, order, inverse_permutation(order))
        if shuffle:
            serial = serial.shuffled()
        h = self.proj(feat)
        red = {"max": "amax", "min": "amin", "mean": "mean", "sum": "sum"}[self.reduce]
        pooled = h.new_zeros(m, h.size(1)).scatter_reduce_(
            0, cluster.view(-1, 1).expand_as(h), h, reduce=red, include_self=False
        )
        pos = level.pos.new_zeros(m, 3).scatter_reduce_(
            0, cluster.view(-1, 1).expand_as(level.pos), level.pos, "mean", include_self=False
        )
        grid = level.grid_coord[head] >> shift
        batch = level.batch[head]  # sorted: the cloud index is the codes' high bits
        sparse = SparseTensor(torch.cat([batch.view(-1, 1), grid], dim=1), pooled)
        coarse = Point(
            pos,
            None,
            batch,
            ptr_from_index(batch, level.num_clouds),
            category=level.category,
            grid_coord=grid,
            sparse=sparse,
            serialized=serial,
        )
        return self.norm(pooled), coarse, cluster


@torch.library.custom_op("lightning_pc::ptv3_pool_clusters", mutates_args=())
def pool_clusters(code: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct values of ``code`` [N], in increasing order: ``cluster`` [N], the rank of
    each row's value, and ``head`` [M], the first row of each value. A custom op (``M``
    depends on the data) with a fake kernel, so grid pooling traces without a graph break.
    """
    _, cluster, _ = torch.unique(code, sorted=True, return_inverse=True, return_counts=True)
    m = int(cluster.max()) + 1 if cluster.numel() else 0
    ar = torch.arange(cluster.numel(), device=cluster.device)
    head = torch.full((m,), cluster.numel(), dtype=torch.long, device=cluster.device)
    head = head.scatter_reduce_(0, cluster, ar, reduce="amin")  # first member of each
    return cluster, head


@pool_clusters.register_fake
def _pool_clusters_fake(code: Tensor) -> tuple[Tensor, Tensor]:
    m = torch.library.get_ctx().new_dynamic_size()
    return torch.empty_like(code), code.new_empty((m,))


class GridUnpooling(nn.Module):
    """``skip_proj(skip) + proj(coarse)[cluster]``, each projection linear, BatchNorm, GELU.

    Returns the sum and ``skip_proj(skip)``: in Pointcept's model the first block after an
    unpooling convolves the latter in its positional encoding (its sparse tensor still holds
    the projected skip features, the sum is written to the point features only), and the
    weights it trains expect that; the decoder passes it on as the block's ``cpe_input``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.proj_norm = NormAct(out_channels)
        self.proj_skip = nn.Linear(skip_channels, out_channels)
        self.proj_skip_norm = NormAct(out_channels)

    def forward(self, coarse: Tensor, skip: Tensor, cluster: Tensor) -> tuple[Tensor, Tensor]:
        up = self.proj_norm(self.proj(coarse))
        skip = self.proj_skip_norm(self.proj_skip(skip))
        return skip + up[cluster], skip
