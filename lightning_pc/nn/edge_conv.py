r"""EdgeConv (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", TOG 2019).

.. math::
    \mathbf{x}'_i = \max_{j \in \mathcal{N}(i)}
    h_\Theta\big([\mathbf{x}_j - \mathbf{x}_i,\ \mathbf{x}_i]\big),

with :math:`h_\Theta` a shared MLP (1x1 convolutions without bias, batch norm, LeakyReLU)
over every (point, neighbour) pair of a kNN graph, usually rebuilt from the current
features at every layer ("dynamic" graph).

The first layer of :math:`h_\Theta` is linear, so with :math:`W = [W_d, W_c]`

.. math::
    W [\mathbf{x}_j - \mathbf{x}_i, \mathbf{x}_i] = W_d \mathbf{x}_j + (W_c - W_d) \mathbf{x}_i:

both terms are computed once per point (``N`` rows instead of ``N k``) and only their sum
is formed per edge. This is the same function with the same parameters as the reference
(tested against the direct computation); it removes most of the arithmetic of a
single-layer EdgeConv.

A single-layer EdgeConv (DGCNN's classifier) needs no per-edge tensor at all. Batch norm
is a per-channel affine map :math:`a z + b` and LeakyReLU is increasing, so the max over
neighbours commutes with them: it picks :math:`\max_j` (where :math:`a \ge 0`) or
:math:`\min_j` (where :math:`a < 0`) of :math:`W_d \mathbf{x}_j`, one ``embedding_bag`` over
the neighbour table. The batch statistics over all :math:`N k` edges
:math:`e_{ij} = \mathbf{p}_i + \mathbf{q}_j` follow from per-point sums:
:math:`\sum_{ij} e_{ij} = k \sum_i \mathbf{p}_i + \sum_j d_j \mathbf{q}_j` and
:math:`\sum_{ij} e_{ij}^2 = k \sum_i \mathbf{p}_i^2 + 2 \sum_i \mathbf{p}_i
\sum_{j \in \mathcal{N}(i)} \mathbf{q}_j + \sum_j d_j \mathbf{q}_j^2` (:math:`d_j` the
in-degree; both centred first, for accuracy). Running statistics are updated as
``BatchNorm1d`` does. The path is taken only for a plain ``BatchNorm1d`` (after
``SyncBatchNorm`` conversion the layer runs the direct computation, so statistics stay
synchronised). Where several neighbours tie for the max, the gradient goes to one of them
(``torch.amax`` would split it); the value is the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.nn.fused import update_running_stats
from lightning_pc.nn.mlp import SharedMLP

_FUSED_RENAMED = "EdgeConv's `fused` is renamed `edge_free`; the old name will be removed"


class EdgeConv(nn.Module):
    """EdgeConv on a fixed-degree neighbour table.

    Args:
        in_channels: point feature width ``C``.
        channels: output widths of the edge MLP's layers (input ``2 C`` implied).
        negative_slope: LeakyReLU slope.
        bias: bias in the linear maps (the reference uses none).
        edge_free: compute a single-layer edge MLP with a plain ``BatchNorm1d`` without
            any per-edge tensor (the max over neighbours taken first, as described above;
            the same function). ``False`` always runs the direct per-edge computation.
        fused: deprecated name of ``edge_free`` (it has nothing to do with the fused
            batch-norm kernels of :mod:`lightning_pc.nn.fused`).

    Shapes:
        ``x [N, C]``, ``neighbours [N, k]`` (global indices) -> ``[N, channels[-1]]``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        negative_slope: float = 0.2,
        bias: bool = False,
        edge_free: bool = True,
        *,
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        if fused is not None:
            warnings.warn(_FUSED_RENAMED, DeprecationWarning, stacklevel=2)
            edge_free = fused
        self.in_channels = in_channels
        self.negative_slope = negative_slope
        self.edge_free = edge_free
        self.mlp = SharedMLP(
            [2 * in_channels, *channels], bias=bias, act="leaky_relu", negative_slope=negative_slope
        )
        self.out_channels = int(channels[-1])

    @property
    def fused(self) -> bool:
        """Deprecated name of :attr:`edge_free`."""
        warnings.warn(_FUSED_RENAMED, DeprecationWarning, stacklevel=2)
        return self.edge_free

    @fused.setter
    def fused(self, value: bool) -> None:
        warnings.warn(_FUSED_RENAMED, DeprecationWarning, stacklevel=2)
        self.edge_free = value

    def _point_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Neighbour term ``W_d x`` and centre term ``(W_c - W_d) x (+ b)``, ``[N, C1]`` each."""
        first = self.mlp.layers[0].lin
        c = self.in_channels
        w_d, w_c = first.weight[:, :c], first.weight[:, c:]  # [C1, C] each
        c1 = w_d.size(0)
        per_point = x @ torch.cat([w_d, w_c - w_d], 0).t()  # [N, 2 C1]
        nbr_term, centre_term = per_point[:, :c1], per_point[:, c1:]
        if first.bias is not None:
            centre_term = centre_term + first.bias
        return nbr_term, centre_term

    def _forward_edge_free(self, x: Tensor, neighbours: Tensor) -> Tensor:
        q, p = self._point_terms(x)  # [N, C1] each
        if torch.finfo(q.dtype).bits >= 32 and not torch.is_autocast_enabled(x.device.type):
            return self._edge_free_from_terms(q, p, neighbours)
        # Under autocast the rest runs in float32 with autocast off: the batch statistics of
        # N k edges come from sums over all points weighted by in-degrees (thousands at
        # hubs), which overflow float16 (an infinite running variance) and lose bits in
        # bfloat16; past the two matrix products above, everything is [N, C1], cheap.
        dtype = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            return self._edge_free_from_terms(q.to(dtype), p.to(dtype), neighbours)

    def _edge_free_from_terms(self, q: Tensor, p: Tensor, neighbours: Tensor) -> Tensor:
        norm = self.mlp.layers[0].norm
        num_points, k = neighbours.shape
        if norm.training or norm.running_mean is None:
            num_edges = num_points * k
            indeg = torch.bincount(neighbours.reshape(-1), minlength=num_points).to(q.dtype)  # [N]
            p_shift, q_shift = p.mean(0).detach(), q.mean(0).detach()
            pc, qc = p - p_shift, q - q_shift  # centred, for an accurate variance
            nbr_sum = F.embedding_bag(neighbours, qc, mode="sum")  # [N, C1]
            mean_c = pc.mean(0) + (indeg @ qc) / num_edges
            sq = k * pc.square().sum(0) + 2 * (pc * nbr_sum).sum(0) + indeg @ qc.square()
            var = (sq / num_edges - mean_c.square()).clamp_min(0)  # biased, as BN normalises
            mean = mean_c + p_shift + q_shift
            update_running_stats(norm, mean.detach(), var.detach(), num_edges)
        else:
            mean, var = norm.running_mean, cast(Tensor, norm.running_var)
        scale = torch.rsqrt(var + norm.eps)  # [C1]
        shift = -mean * scale
        if norm.affine:
            scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        sign = torch.where(scale.detach() >= 0, 1.0, -1.0).to(q.dtype)  # [C1]
        best = sign * F.embedding_bag(neighbours, q * sign, mode="max")  # max_j or min_j of q_j
        return F.leaky_relu((p + best) * scale + shift, self.negative_slope)  # [N, C1]

    def edge_features(self, x: Tensor, neighbours: Tensor) -> Tensor:
        """First linear layer on every edge, ``[N * k, channels[0]]`` (before norm)."""
        nbr_term, centre_term = self._point_terms(x)
        num_points, k = neighbours.shape
        h = nbr_term.index_select(0, neighbours.reshape(-1)).view(num_points, k, -1)
        h = h.add_(centre_term.unsqueeze(1))  # [N, k, C1]
        return h.view(num_points * k, -1)

    def forward(self, x: Tensor, neighbours: Tensor) -> Tensor:
        if (
            self.edge_free
            and len(self.mlp) == 1
            and type(self.mlp.layers[0].norm) is nn.BatchNorm1d
        ):
            return self._forward_edge_free(x, neighbours)
        num_points, k = neighbours.shape
        h = self.mlp.run(self.edge_features(x, neighbours), first_linear_done=True, last_act=False)
        h = h.view(num_points, k, -1).amax(1)  # [N, C_out]
        return self.mlp.layers[-1].act_fn(h, inplace=False)  # activation after the max
