r"""PointNet++ building blocks on packed clouds: set abstraction and feature propagation.

Qi et al., "PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric Space",
NeurIPS 2017. A set abstraction level samples centres by farthest point sampling, groups
the points within a ball around each centre and encodes every group with a shared MLP on
:math:`[\mathbf{p}_j - \mathbf{p}_i, \mathbf{x}_j]` followed by a max over the group:

.. math::
    \mathbf{x}'_i = \max_{j \in \mathcal{B}(i, r)} \mathrm{MLP}\big([\mathbf{p}_j - \mathbf{p}_i,
    \mathbf{x}_j]\big).

Implementation notes (each keeps the published function, and is tested against the
direct computation):

- the MLP's first layer is linear in its input, so for wide inputs
  :math:`W [\mathbf{p}_j - \mathbf{p}_i, \mathbf{x}_j] = (W_p \mathbf{p}_j + W_x \mathbf{x}_j)
  - W_p \mathbf{p}_i` runs once per point and once per centre, and only the sum is formed
  per (centre, neighbour) pair (inputs narrower than half the layer, such as coordinates
  alone, are gathered per pair directly, which is cheaper);
- groups hold the real neighbours only (no padding with repeated points, which leaves the
  max unchanged but weighs repeated points in the batch-norm statistics of training);
- a ball holding more than ``num_samples`` points keeps the first ``num_samples`` in storage
  order (``ball_query="first"``, the reference CUDA kernel's rule and the default) or the
  ``num_samples`` *nearest* (``"nearest"``: independent of the order of the points, but on a
  densely sampled surface the nearest 32 of a 0.2 ball fill a ball of about 0.1, so the
  level sees less context than its radius says; on real ModelNet10 it learned slower:
  ``benchmarks/accuracy.py``);
- in eval mode farthest point sampling starts from the point farthest from the cloud's
  centroid, so the sampled centres do not depend on the order of the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
from torch import Tensor, nn

from lightning_pc.nn.fused import fusable_rows, gather_batch_norm_act
from lightning_pc.nn.mlp import SharedMLP
from lightning_pc.nn.segment import ptr_from_index, segment_argmax, segment_mean
from lightning_pc.ops import fps, knn_interpolate, radius

#: which points a ball holding more than ``num_samples`` keeps (see the module notes)
BallQuery = Literal["first", "nearest"]
BALL_QUERIES: tuple[str, ...] = ("first", "nearest")


def sample_centres(
    pos: Tensor, batch: Tensor, ptr: Tensor, ratio: float, random_start: bool
) -> Tensor:
    """Farthest point sampling of ``ceil(n_b * ratio)`` centres per cloud.

    Args:
        pos: ``[N, 3]`` packed points.
        batch: ``[N]`` cloud index (sorted).
        ptr: ``[B + 1]`` offsets.
        ratio: fraction of each cloud to keep.
        random_start: start each cloud at a random point (training); otherwise start at
            the point farthest from the cloud's centroid, which does not depend on the
            order of the points.

    Returns:
        ``[M]`` indices into ``pos``, grouped by cloud.
    """
    num_clouds = ptr.numel() - 1
    if random_start:
        return fps(pos, batch, ratio=ratio, random_start=True, batch_size=num_clouds)
    with torch.no_grad():
        centroid = segment_mean(pos, ptr)  # [B, 3]
        spread = (pos - centroid[batch]).square().sum(1)  # [N]
        start = segment_argmax(spread, ptr)  # [B]
        first = ptr[:-1]
        perm = torch.arange(pos.size(0), device=pos.device)
        perm[first] = start
        perm[start] = first
        idx = fps(pos[perm], batch, ratio=ratio, random_start=False, batch_size=num_clouds)
        return perm[idx]


def ball_query(
    pos: Tensor,
    pos_c: Tensor,
    radius_: float,
    num_samples: int,
    batch: Tensor,
    batch_c: Tensor,
    keep: BallQuery = "first",
) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbours of each centre within ``radius_``: at most ``num_samples``, the first in
    the order of ``pos`` (``keep="first"``) or the nearest (``"nearest"``).

    Returns:
        ``row`` ``[E]`` (centre index, sorted), ``col`` ``[E]`` (point index) and ``rowptr``
        ``[M + 1]``. Each centre is a point of its cloud, so every group is non-empty.
    """
    # radius returns rows ascending: each centre's neighbours are one contiguous segment
    row, col = radius(
        pos,
        pos_c,
        radius_,
        batch_x=batch,
        batch_y=batch_c,
        max_num_neighbors=num_samples,
        keep=keep,
    )
    torch._check(row.size(0) >= pos_c.size(0))  # tells the compiler; true: see Returns
    return row, col, ptr_from_index(row, pos_c.size(0))


class SetAbstraction(nn.Module):
    """One set abstraction level, single-scale (one radius) or multi-scale (several).

    Args:
        in_channels: feature channels of the input points (0 for coordinates only).
        ratio: fraction of each cloud's points kept as centres.
        radii: ball radius of each scale.
        num_samples: most neighbours per ball, per scale.
        mlps: hidden and output widths of each scale's MLP (the input width
            ``3 + in_channels`` is implied).
        random_start: random first centre in training (eval always uses the
            order-invariant start of :func:`sample_centres`).
        ball_query: which points a ball with more than ``num_samples`` keeps: ``"first"``
            in storage order (the authors' kernel) or ``"nearest"`` (see the module notes).

    Shapes:
        input: ``x`` ``[N, C_in]`` or ``None``, ``pos`` ``[N, 3]``, ``batch`` ``[N]``,
        ``ptr`` ``[B + 1]``; output: ``(x' [M, sum(mlp[-1])], pos' [M, 3], batch' [M],
        ptr' [B + 1])``.
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float,
        radii: Sequence[float],
        num_samples: Sequence[int],
        mlps: Sequence[Sequence[int]],
        random_start: bool = True,
        ball_query: BallQuery = "first",
    ) -> None:
        super().__init__()
        if not (len(radii) == len(num_samples) == len(mlps)):
            raise ValueError("radii, num_samples and mlps need one entry per scale")
        if ball_query not in BALL_QUERIES:
            raise ValueError(f"ball_query must be 'first' or 'nearest', got {ball_query!r}")
        self.ball_query = ball_query
        self.in_channels = in_channels
        self.ratio = float(ratio)
        self.radii = [float(r) for r in radii]
        self.num_samples = [int(k) for k in num_samples]
        self.random_start = random_start
        self.mlps = nn.ModuleList(SharedMLP([3 + in_channels, *mlp]) for mlp in mlps)
        self.out_channels = sum(int(mlp[-1]) for mlp in mlps)

    def forward(
        self, x: Tensor | None, pos: Tensor, batch: Tensor, ptr: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        idx = sample_centres(pos, batch, ptr, self.ratio, self.random_start and self.training)
        if pos.size(0) > 0:  # every non-empty cloud keeps a centre (for the compiler's shapes)
            torch._check(idx.size(0) > 0)
        pos_c, batch_c = pos[idx], batch[idx]  # [M, 3], [M]
        ptr_c = ptr_from_index(batch_c, ptr.numel() - 1)
        outs = []
        for r, k, mlp in zip(self.radii, self.num_samples, self.mlps, strict=True):
            row, col, rowptr = ball_query(pos, pos_c, r, k, batch, batch_c, self.ball_query)
            if self.training:  # batch norm needs 2+ rows in training (for the compiler's shapes)
                torch._check(row.size(0) != 1)
            first, *rest = cast(SharedMLP, mlp).layers
            if rest and fusable_rows(
                first.norm, pos, col.numel(), col.numel() * first.lin.out_features
            ):
                # CPU training: the first layer's rows are gathered inside the fused kernels
                per_point, per_centre = self._first_layer_halves(first.lin, x, pos, pos_c)
                args = (first.norm, per_point, per_centre, rowptr, col, first.act)
                h = gather_batch_norm_act(*args, first.negative_slope, first.lin.bias)  # [E, C1]
                h = cast(SharedMLP, mlp).run(h, last_act=False, pool_ptr=rowptr, skip_layers=1)
                outs.append(rest[-1].act_fn(h, inplace=False))  # [M, C]
                continue
            if 2 * (3 + self.in_channels) <= first.lin.out_features:  # narrow input: direct
                rel = pos.index_select(0, col) - pos_c.index_select(0, row)  # [E, 3]
                if x is not None and self.in_channels > 0:
                    rel = torch.cat([rel, x.index_select(0, col)], 1)  # [E, 3 + C_in]
                h = first.lin(rel)  # [E, C1]
            else:  # W [p_j - p_i, x_j] + b = (W_p p_j + W_x x_j)[col] - (W_p p_i - b)[row]
                per_point, per_centre = self._first_layer_halves(first.lin, x, pos, pos_c)
                if first.lin.bias is not None:
                    per_centre = per_centre - first.lin.bias
                h = per_point.index_select(0, col).sub_(per_centre.index_select(0, row))  # [E, C1]
            # layers, then the last norm fused with the max over each ball: [M, C]
            h = cast(SharedMLP, mlp).run(h, first_linear_done=True, last_act=False, pool_ptr=rowptr)
            last = rest[-1] if rest else first
            outs.append(last.act_fn(h, inplace=False))  # [M, C]
        return torch.cat(outs, 1) if len(outs) > 1 else outs[0], pos_c, batch_c, ptr_c

    @staticmethod
    def _first_layer_halves(
        lin: nn.Linear, x: Tensor | None, pos: Tensor, pos_c: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The first linear map ``W [p_j - p_i, x_j]`` split into a per-point term
        ``W_p p_j + W_x x_j`` ``[N, C1]`` and a per-centre term ``W_p p_i`` ``[M, C1]`` (no
        bias), so that each runs once per point or centre, not once per pair."""
        w_pos = lin.weight[:, :3]  # [C1, 3]
        per_point = pos @ w_pos.t()  # [N, C1]
        if x is not None:
            per_point = torch.addmm(per_point, x, lin.weight[:, 3:].t())
        return per_point, pos_c @ w_pos.t()


class GlobalSetAbstraction(nn.Module):
    """The last level: one group per cloud, ``max_j MLP([p_j, x_j])`` over all its points.

    Args:
        in_channels: feature channels of the input points.
        mlp: widths of the MLP after the implied ``3 + in_channels``.

    Shapes:
        ``x [N, C_in]``, ``pos [N, 3]``, ``ptr [B + 1]`` -> ``[B, mlp[-1]]``.
    """

    def __init__(self, in_channels: int, mlp: Sequence[int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mlp = SharedMLP([3 + in_channels, *mlp])
        self.out_channels = int(mlp[-1])

    def forward(self, x: Tensor | None, pos: Tensor, ptr: Tensor) -> Tensor:
        if self.training:  # batch norm needs 2+ rows in training (for the compiler's shapes)
            torch._check(pos.size(0) != 1)
        h = pos if x is None else torch.cat([pos, x], 1)  # [N, 3 + C_in]
        h = self.mlp.run(h, last_act=False, pool_ptr=ptr)  # max over each cloud: [B, C]
        return self.mlp.layers[-1].act_fn(h, inplace=False)  # [B, C]


class FeaturePropagation(nn.Module):
    r"""Feature propagation: interpolate coarse features onto the finer points, concatenate
    the skip features of that level, and apply a shared MLP.

    Interpolation uses the ``k`` nearest coarse points with inverse squared distance weights
    :math:`w_{ij} = 1 / \lVert \mathbf{p}_i - \mathbf{p}_j \rVert^2` (normalised); a level
    with one coarse point per cloud (after a global level) is broadcast.

    Args:
        in_channels: coarse feature channels plus skip feature channels.
        mlp: output widths of the MLP layers.
        k: coarse neighbours used for interpolation.
    """

    def __init__(self, in_channels: int, mlp: Sequence[int], k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.mlp = SharedMLP([in_channels, *mlp])
        self.out_channels = int(mlp[-1])

    def forward(
        self,
        x_coarse: Tensor,
        pos_coarse: Tensor | None,
        batch_coarse: Tensor,
        x_skip: Tensor | None,
        pos: Tensor,
        batch: Tensor,
    ) -> Tensor:
        """``x_coarse [M, C]``, ``pos_coarse [M, 3]`` (``None`` for a global level),
        ``x_skip [N, C_skip]``, ``pos [N, 3]`` -> ``[N, mlp[-1]]``."""
        if self.training:  # batch norm needs 2+ rows in training (for the compiler's shapes)
            torch._check(pos.size(0) != 1)
        if pos_coarse is None:
            h = x_coarse[batch]  # [N, C]
        else:
            # in the coordinates' dtype: under autocast x_coarse arrives in bfloat16/float16
            x_coarse = x_coarse.to(pos_coarse.dtype)
            h = knn_interpolate(x_coarse, pos_coarse, pos, batch_coarse, batch, k=self.k)
        if x_skip is not None:
            h = torch.cat([h, x_skip], 1)  # [N, C + C_skip]
        return self.mlp(h)
