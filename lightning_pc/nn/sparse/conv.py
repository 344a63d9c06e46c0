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


def _chunks(kmap: KernelMap, k: int) -> list[tuple[Tensor, Tensor]]:
    a, b = kmap.splits[k], kmap.splits[k + 1]
    return [
        (kmap.in_idx[s : min(s + CHUNK, b)], kmap.out_idx[s : min(s + CHUNK, b)])
        for s in range(a, b, CHUNK)
    ]


def _buffer(ref: Tensor, rows: int, cols: int) -> Tensor:
    return torch.empty(min(rows, CHUNK), cols, dtype=ref.dtype, device=ref.device)


def _scatter_addmm(out: Tensor, idx: Tensor, acc: Tensor, a: Tensor, b: Tensor) -> None:
    """``out[idx] += a @ b`` for distinct ``idx`` (one pair per site and offset).

    Gather, ``addmm_`` in place, put back: about 3x faster on CPU than ``index_add_``,
    which is serial over rows there.
    """
    torch.index_select(out, 0, idx, out=acc)  # [n, C]
    acc.addmm_(a, b)
    out.index_put_((idx,), acc)


def sparse_conv_forward(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """``Y = sum_k scatter(gather(X) W_k)`` without autograd: [N_in, C_in] -> [N_out, C_out]."""
    cin, cout = weight.shape[1], weight.shape[2]
    if kmap.identity is not None:
        out = feats @ weight[kmap.identity]  # [N, C_out]
    else:
        out = feats.new_zeros(kmap.num_out, cout)
    rows = max((kmap.splits[k + 1] - kmap.splits[k] for k in range(kmap.kernel_volume)), default=0)
    if rows == 0:
        return out
    gbuf, pbuf = _buffer(feats, rows, cin), _buffer(feats, rows, cout)
    for k in range(kmap.kernel_volume):
        w = weight[k]  # [C_in, C_out]
        for i, o in _chunks(kmap, k):
            n = i.numel()
            g, p = gbuf[:n], pbuf[:n]
            torch.index_select(feats, 0, i, out=g)  # [n, C_in]
            _scatter_addmm(out, o, p, g, w)
    return out


def sparse_conv_backward(
    grad_out: Tensor, feats: Tensor, weight: Tensor, kmap: KernelMap, need_x: bool, need_w: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`sparse_conv_forward` w.r.t. ``feats`` and ``weight``."""
    cin, cout = weight.shape[1], weight.shape[2]
    grad_out = grad_out.contiguous()
    gx = feats.new_zeros(kmap.num_in, cin) if need_x else None
    gw = torch.zeros_like(weight) if need_w else None
    if kmap.identity is not None:
        c = kmap.identity
        if gx is not None:
            torch.mm(grad_out, weight[c].t(), out=gx)
        if gw is not None:
            torch.mm(feats.t(), grad_out, out=gw[c])
    rows = max((kmap.splits[k + 1] - kmap.splits[k] for k in range(kmap.kernel_volume)), default=0)
    if rows == 0:
        return gx, gw
    obuf, fbuf, pbuf = (
        _buffer(feats, rows, cout),
        _buffer(feats, rows, cin) if need_w else None,
        _buffer(feats, rows, cin) if need_x else None,
    )
    for k in range(kmap.kernel_volume):
        w = weight[k]
        for i, o in _chunks(kmap, k):
            n = i.numel()
            go = obuf[:n]
            torch.index_select(grad_out, 0, o, out=go)  # [n, C_out]
            if gw is not None and fbuf is not None:
                f = fbuf[:n]
                torch.index_select(feats, 0, i, out=f)  # [n, C_in]
                gw[k].addmm_(f.t(), go)
            if gx is not None and pbuf is not None:
                _scatter_addmm(gx, i, pbuf[:n], go, w.t())
    return gx, gw


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        return sparse_conv_forward(feats, weight, kmap)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        feats, weight = ctx.saved_tensors
        gx, gw = sparse_conv_backward(
            grad_out, feats, weight, ctx.kmap, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        return gx, gw, None


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
    out = _SparseConvFunction.apply(feats, weight, kmap)
    return out  # type: ignore[no-any-return]


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
