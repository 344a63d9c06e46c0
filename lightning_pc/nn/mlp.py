"""Shared per-row MLPs: ``Linear -> BatchNorm1d -> activation`` on ``[R, C]`` rows.

A 1x1 ``Conv1d``/``Conv2d`` applied to points or to (centre, neighbour) pairs, as the
reference implementations write them, is a ``Linear`` on packed rows: same weights, same
parameter count. Only ``torch.nn`` BatchNorm classes are used, so
``SyncBatchNorm.convert_sync_batchnorm`` converts every norm layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.nn.fused import batch_norm_act, batch_norm_segment_max, linear_before_norm

Activation = Literal["relu", "leaky_relu"]


def _single_row_batch(norm: nn.Module, h: Tensor) -> bool:
    """Whether ``norm(h)`` would have to normalise one row by its own batch statistics.

    True for a batch norm in training given one row (e.g. the pooled vector of a batch of
    one cloud), unless it is a ``SyncBatchNorm`` inside a process group of several ranks,
    whose statistics then span every rank's rows.
    """
    if not (isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.training):
        return False
    if h.numel() // max(h.size(1), 1) != 1:
        return False
    if isinstance(norm, nn.SyncBatchNorm):
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return False
    return True


def batch_norm_rows(norm: nn.Module, h: Tensor) -> Tensor:
    """``norm(h)`` for rows ``h`` ``[R, C]``, defined for a single row in training too.

    Batch statistics of one row are undefined (its variance is 0/0, and torch raises
    "Expected more than 1 value per channel when training"). A lone row in training, such
    as the pooled vector of a last batch that holds one cloud, is normalised with the
    running statistics instead, as in evaluation, and leaves them unchanged; the affine
    parameters still receive their gradients. Every other input goes through ``norm``.

    Args:
        norm: a batch-norm layer.
        h: rows ``[R, C]``.

    Raises:
        ValueError: one row in training and the norm keeps no running statistics.
    """
    if not _single_row_batch(norm, h):
        return cast(Tensor, norm(h))
    assert isinstance(norm, nn.modules.batchnorm._BatchNorm)
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(
            "batch norm over a single row in training needs running statistics "
            "(track_running_stats=True): a batch of one cloud has no batch statistics"
        )
    return F.batch_norm(
        h, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
    )


class RowBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a lone training row with the running statistics
    (see :func:`batch_norm_rows`); same parameters and state dict as ``nn.BatchNorm1d``."""

    def forward(self, input: Tensor) -> Tensor:
        if _single_row_batch(self, input):
            return batch_norm_rows(self, input)
        return super().forward(input)


class LinearBNAct(nn.Module):
    r"""One layer :math:`\sigma(\mathrm{BN}(W x + b))` on rows ``[R, C_in] -> [R, C_out]``.

    Args:
        in_channels: input width.
        out_channels: output width.
        bias: whether the linear map has a bias (PointNet++ yes, DGCNN no).
        act: ``"relu"`` or ``"leaky_relu"``.
        negative_slope: slope of the leaky ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        act: Activation = "relu",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=bias)
        # a torch.nn BatchNorm (SyncBatchNorm after Lightning's sync_batchnorm conversion)
        self.norm: nn.modules.batchnorm._BatchNorm = nn.BatchNorm1d(out_channels)
        self.act = act
        self.negative_slope = negative_slope

    def act_fn(self, h: Tensor, inplace: bool = True) -> Tensor:
        """The activation alone."""
        if self.act == "relu":
            return F.relu(h, inplace=inplace)
        return F.leaky_relu(h, self.negative_slope, inplace=inplace)

    def forward(self, x: Tensor) -> Tensor:  # [R, C_in] -> [R, C_out]
        if _single_row_batch(self.norm, x):  # e.g. the pooled vector of a batch of one cloud
            return self.act_fn(batch_norm_rows(self.norm, self.lin(x)))
        h, pre_bias = linear_before_norm(self.lin, self.norm, x)
        return batch_norm_act(self.norm, h, self.act, self.negative_slope, pre_bias)


class SharedMLP(nn.Sequential):
    """A stack of :class:`LinearBNAct` layers, widths ``channels[0] -> ... -> channels[-1]``.

    Args:
        channels: widths, input first; at least two entries.
        bias: bias in every linear map.
        act: activation of every layer.
        negative_slope: slope of the leaky ReLU.
    """

    def __init__(
        self,
        channels: Sequence[int],
        bias: bool = True,
        act: Activation = "relu",
        negative_slope: float = 0.2,
    ) -> None:
        if len(channels) < 2:
            raise ValueError(f"an MLP needs at least two widths, got {list(channels)}")
        super().__init__(
            *[
                LinearBNAct(c_in, c_out, bias, act, negative_slope)
                for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
            ]
        )
        self.out_channels = int(channels[-1])

    @property
    def layers(self) -> list[LinearBNAct]:
        """The layers, typed."""
        return [cast(LinearBNAct, m) for m in self]

    def run(
        self,
        h: Tensor,
        first_linear_done: bool = False,
        last_act: bool = True,
        pool_ptr: Tensor | None = None,
        skip_layers: int = 0,
    ) -> Tensor:
        """Apply the layers to ``h`` ``[R, C]``.

        Args:
            h: input rows, or the first layer's linear output if ``first_linear_done``.
            first_linear_done: skip the first linear map (computed by the caller).
            last_act: apply the last activation. A caller that max-pools next can apply it
                after the pooling instead: the activations are increasing, so
                ``max_j act(y_j) = act(max_j y_j)``, values and gradients alike, and the
                pass over every row is saved.
            pool_ptr: ``[S + 1]`` offsets of contiguous row segments: return the max over
                each segment of the last layer's output, ``[S, C]`` (the last norm and the
                max are fused, so the normalised ``[R, C]`` rows are never written).
            skip_layers: ``h`` is the output of the first ``skip_layers`` layers (the
                caller ran them).
        """
        layers = self.layers
        for i, layer in enumerate(layers):
            if i < skip_layers:
                continue
            pre_bias = None
            if i > 0 or not first_linear_done:
                h, pre_bias = linear_before_norm(layer.lin, layer.norm, h)
            if i < len(layers) - 1:
                h = batch_norm_act(layer.norm, h, layer.act, layer.negative_slope, pre_bias)
            elif pool_ptr is not None:
                h = batch_norm_segment_max(layer.norm, h, pool_ptr, pre_bias)  # [S, C]
                h = layer.act_fn(h) if last_act else h
            else:
                act = layer.act if last_act else "identity"
                h = batch_norm_act(layer.norm, h, act, layer.negative_slope, pre_bias)
        return h
