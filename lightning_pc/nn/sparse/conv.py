"""Sparse 3D convolutions: gather-GEMM-scatter with a backward that keeps no gathered copy.

For each kernel offset ``k`` with pairs ``(i, o)`` (see :mod:`kernel_map`):

.. math::
    Y[o] \\mathrel{+}= X[i] W_k, \\qquad
    \\frac{\\partial L}{\\partial X}[i] \\mathrel{+}= G[o] W_k^\\top, \\qquad
    \\frac{\\partial L}{\\partial W_k} = \\sum X[i]^\\top G[o]

Within one offset the output sites of the pairs are distinct (and so are the input sites),
so the scatter is a gather, an in-place ``addmm_`` and a plain ``index_put_``.
Pairs are processed in chunks of at most :data:`CHUNK` rows through two work buffers that
are reused across offsets, so the temporary memory of a layer is ``2 * CHUNK * C`` floats,
whatever its size. Plain autograd would instead keep every gathered ``X[i]`` for the
backward (``num_pairs * C_in`` floats, 0.5-1 GiB a layer at 450k voxels); here the backward
saves only ``X``, ``W`` and the (cached, shared) map.

Forward and backward are the custom ops ``lightning_pc::sparse_conv`` and
``lightning_pc::sparse_conv_backward`` (tied by ``register_autograd``), so compiled graphs
call them as they are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lightning_pc.nn.sparse.kernel_map import KernelMap, kernel_offsets
from lightning_pc.nn.sparse.tensor import SparseTensor

CHUNK = 1 << 16
"""Rows gathered per GEMM (the work buffers hold ``CHUNK x C`` floats)."""


def _chunks(in_idx: Tensor, out_idx: Tensor, a: int, b: int) -> list[tuple[Tensor, Tensor]]:
    """The pairs ``a:b`` (those of one offset) in slices of at most :data:`CHUNK`."""
    return [
        (in_idx[s : min(s + CHUNK, b)], out_idx[s : min(s + CHUNK, b)]) for s in range(a, b, CHUNK)
    ]


def _buffer(ref: Tensor, rows: int, cols: int) -> Tensor:
    return torch.empty(min(rows, CHUNK), cols, dtype=ref.dtype, device=ref.device)


def _max_rows(splits: list[int]) -> int:
    return max((b - a for a, b in zip(splits[:-1], splits[1:], strict=True)), default=0)


def _scatter_addmm(out: Tensor, idx: Tensor, acc: Tensor, a: Tensor, b: Tensor) -> None:
    """``out[idx] += a @ b`` for distinct ``idx`` (one pair per site and offset).

    Gather, ``addmm_`` in place, put back: about 3x faster on CPU than ``index_add_``,
    which is serial over rows there.
    """
    torch.index_select(out, 0, idx, out=acc)  # [n, C]
    acc.addmm_(a, b)
    out.index_put_((idx,), acc)


@torch.library.custom_op("lightning_pc::sparse_conv", mutates_args=())
def sparse_conv_op(
    feats: Tensor,
    weight: Tensor,
    in_idx: Tensor,
    out_idx: Tensor,
    splits: Tensor,
    num_out: int,
    identity: int | None,
) -> Tensor:
    """``Y = sum_k scatter(gather(X) W_k)``: [N_in, C_in] -> [N_out, C_out].

    The map is passed as its tensors (see :class:`KernelMap`); ``splits`` is on the CPU.
    """
    cout = weight.size(2)
    if identity is not None:
        out = feats @ weight[identity]  # [N, C_out]
    else:
        out = feats.new_zeros(num_out, cout)
    bounds = splits.tolist()
    rows = _max_rows(bounds)
    if rows == 0:
        return out
    gbuf, pbuf = _buffer(feats, rows, weight.size(1)), _buffer(feats, rows, cout)
    for k in range(len(bounds) - 1):
        w = weight[k]  # [C_in, C_out]
        for i, o in _chunks(in_idx, out_idx, bounds[k], bounds[k + 1]):
            n = i.numel()
            g, p = gbuf[:n], pbuf[:n]
            torch.index_select(feats, 0, i, out=g)  # [n, C_in]
            _scatter_addmm(out, o, p, g, w)
    return out


@sparse_conv_op.register_fake
def _sparse_conv_fake(
    feats: Tensor, weight: Tensor, _i: Tensor, _o: Tensor, _s: Tensor, num_out: int, _c: Any
) -> Tensor:
    return feats.new_empty((num_out, weight.size(2)))


@torch.library.custom_op("lightning_pc::sparse_conv_backward", mutates_args=())
def sparse_conv_backward_op(
    grad_out: Tensor,
    feats: Tensor,
    weight: Tensor,
    in_idx: Tensor,
    out_idx: Tensor,
    splits: Tensor,
    identity: int | None,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`sparse_conv_op` w.r.t. ``feats`` and ``weight`` (each an empty
    tensor when not needed)."""
    cin, cout = weight.shape[1], weight.shape[2]
    grad_out = grad_out.contiguous()
    gx = feats.new_zeros(feats.size(0) if need_x else 0, cin)
    gw = torch.zeros_like(weight) if need_w else weight.new_zeros(0, cin, cout)
    if identity is not None:
        c = identity
        if need_x:
            torch.mm(grad_out, weight[c].t(), out=gx)
        if need_w:
            torch.mm(feats.t(), grad_out, out=gw[c])
    bounds = splits.tolist()
    rows = _max_rows(bounds)
    if rows == 0:
        return gx, gw
    obuf = _buffer(feats, rows, cout)
    fbuf = _buffer(feats, rows, cin) if need_w else None
    pbuf = _buffer(feats, rows, cin) if need_x else None
    for k in range(len(bounds) - 1):
        w = weight[k]
        for i, o in _chunks(in_idx, out_idx, bounds[k], bounds[k + 1]):
            n = i.numel()
            go = obuf[:n]
            torch.index_select(grad_out, 0, o, out=go)  # [n, C_out]
            if fbuf is not None:
                f = fbuf[:n]
                torch.index_select(feats, 0, i, out=f)  # [n, C_in]
                gw[k].addmm_(f.t(), go)
            if pbuf is not None:
                _scatter_addmm(gx, i, pbuf[:n], go, w.t())
    return gx, gw


@sparse_conv_backward_op.register_fake
def _sparse_conv_backward_fake(
    grad_out: Tensor, feats: Tensor, weight: Tensor, *rest: Any
) -> tuple[Tensor, Tensor]:
    need_x, need_w = rest[-2:]
    cin, cout = weight.shape[1], weight.shape[2]
    gx = feats.new_empty((feats.size(0) if need_x else 0, cin))
    gw = weight.new_empty(weight.shape if need_w else (0, cin, cout))
    return gx, gw


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    feats, weight, in_idx, out_idx, splits, _, identity = inputs
    # The map is held by the layer's cache anyway; it goes on ``ctx`` rather than into
    # ``save_for_backward`` so the graph's saved tensors are exactly X and W.
    ctx.save_for_backward(feats, weight)
    ctx.kmap = (in_idx, out_idx, splits, identity)


def _backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    feats, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, gw = sparse_conv_backward_op(grad_out, feats, weight, *ctx.kmap, need_x, need_w)
    return gx if need_x else None, gw if need_w else None, None, None, None, None, None


sparse_conv_op.register_autograd(_backward, setup_context=_setup_context)


def sparse_conv(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """Differentiable sparse convolution of ``feats`` [N_in, C_in] with ``weight`` [K, C_in,
    C_out] over ``kmap``; returns [N_out, C_out].

    Under autocast (``precision="bf16-mixed"`` / ``"16-mixed"``) it runs with autocast off in
    float32 (float64 for float64 inputs) and returns that: each output row accumulates up to
    ``K`` products in place, which bfloat16's 8 significant bits would round at every offset.
    """
    if torch.is_autocast_enabled(feats.device.type):
        dtype = torch.promote_types(torch.promote_types(feats.dtype, weight.dtype), torch.float32)
        with torch.autocast(feats.device.type, enabled=False):
            return sparse_conv(feats.to(dtype), weight.to(dtype), kmap)
    if weight.dim() != 3 or weight.size(0) != kmap.kernel_volume:
        raise ValueError(
            f"weight must be [K={kmap.kernel_volume}, C_in, C_out], got {tuple(weight.shape)}"
        )
    if feats.size(0) != kmap.num_in or feats.size(1) != weight.size(1):
        raise ValueError(
            f"feats {tuple(feats.shape)} do not match the map ({kmap.num_in} inputs) and "
            f"weight ({weight.size(1)} input channels)"
        )
    return sparse_conv_op(  # type: ignore[no-any-return]
        feats, weight, kmap.in_idx, kmap.out_idx, kmap.splits, kmap.num_out, kmap.identity
    )


class _SparseConvBase(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        bias: bool,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError("kernel_size, stride and dilation must be positive")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        kv = kernel_size**3
        self.weight = nn.Parameter(torch.empty(kv, in_channels, out_channels))  # [K, C_in, C_out]
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv3d``'s default: uniform in +-1/sqrt(fan_in)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.weight.size(0))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def offsets(self) -> list[tuple[int, int, int]]:
        """Kernel offsets in the order of ``weight``'s first dim."""
        return kernel_offsets(self.kernel_size, self.dilation)

    def _apply_map(self, x: SparseTensor, kmap: KernelMap) -> Tensor:
        if kmap.identity is not None and kmap.kernel_volume == 1:
            out = x.feats @ self.weight[0]  # [N, C_out]
        else:
            out = sparse_conv(x.feats, self.weight, kmap)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dilation={self.dilation}, bias={self.bias is not None}"
        )


class SparseConv3d(_SparseConvBase):
    """Sparse 3D convolution: submanifold when ``stride == 1``, downsampling otherwise.

    With ``stride == 1`` the outputs are the input sites (submanifold convolution, equal to a
    dense ``conv3d(padding=(k - 1) // 2 * dilation)`` read at the sites). With ``stride > 1``
    the outputs are the sites ``floor(c / stride)`` and output ``o`` reads the inputs at
    ``o * stride + d``: a dense ``conv3d(stride=stride, padding=(k - 1) // 2 * dilation)``
    read at the output sites. ``kernel_size == stride`` (the usual 2/2) needs no search.

    Args:
        in_channels: input feature width.
        out_channels: output feature width.
        kernel_size: cubic kernel size (1, 2, 3, 5, ...).
        stride: 1 (submanifold) or the downsampling factor.
        dilation: spacing of the kernel taps.
        bias: add a learned bias (leave off before a norm).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.stride == 1:
            kmap = x.cache.submanifold(x.stride, self.kernel_size, self.dilation)
            return x.replace(self._apply_map(x, kmap))
        kmap = x.cache.downsample(x.stride, self.kernel_size, self.stride, self.dilation)
        coarse = x.stride * self.stride
        return SparseTensor(x.cache.coords[coarse], self._apply_map(x, kmap), coarse, x.cache)


class SparseConvTranspose3d(_SparseConvBase):
    """Transposed sparse convolution back to the sites of a finer level (decoders).

    Reuses, with inputs and outputs swapped, the cached map of the ``SparseConv3d`` with the
    same ``kernel_size``, ``stride`` and ``dilation`` that went down from that level: output
    site ``c`` at the finer level receives ``x[o] W_k`` from ``o = floor(c / stride)`` with
    ``c = o * stride + d_k``. Equal to a dense ``conv_transpose3d(stride=stride,
    padding=(k - 1) // 2 * dilation)`` read at the finer sites. ``weight[k, i, j]`` is the
    dense ``weight[i, j, kx, ky, kz]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        fine = x.stride // self.stride
        if fine * self.stride != x.stride or fine not in x.cache.coords:
            raise ValueError(
                f"no sites at stride {fine} to go back to from stride {x.stride}: a transposed "
                "convolution needs the tensor that was downsampled to this level"
            )
        kmap = x.cache.downsample(fine, self.kernel_size, self.stride, self.dilation)
        out = self._apply_map(x, kmap.transposed())
        return SparseTensor(x.cache.coords[fine], out, fine, x.cache)
