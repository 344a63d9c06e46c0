r"""Fused batch norm + activation, and batch norm + segment max, for training on the CPU.

PointNet++ and DGCNN spend most of a CPU training step in per-row MLPs over hundreds of
thousands of (centre, neighbour) rows. With separate torch ops every layer writes its batch
norm output, its activation's gradient and its batch norm's gradient as new ``[E, C]``
tensors, and the last layer also writes its batch norm output and a zero-filled gradient
for the max: memory traffic and, on a fresh allocation, page faults. Here

- :func:`batch_norm_act` computes :math:`\mathrm{act}(\mathrm{BN}(h))` with batch statistics
  in one pass after the statistics pass, and its backward in two passes over ``(grad, h)``
  writing only the input gradient (the activation's mask is recomputed from ``h``);
- :func:`batch_norm_segment_max` computes :math:`\max_{e \in s} \mathrm{BN}(h)_e` per segment
  without writing ``BN(h)``, and its backward writes the dense input gradient in one pass
  from the arg-max rows (no zero-filled ``[E, C]`` gradient, no scatter).

The gradients are the batch-norm gradients in closed form (with
:math:`\hat{x} = (h - \mu)\,\sigma^{-1}`, :math:`g_z` the gradient at the norm's output):
:math:`\partial L / \partial h = \gamma \sigma^{-1} (g_z - \overline{g_z} - \hat{x}\,
\overline{g_z \hat{x}})`, :math:`\partial L / \partial \gamma = \sum g_z \hat{x}`,
:math:`\partial L / \partial \beta = \sum g_z`. Running statistics are updated exactly as
:class:`torch.nn.BatchNorm1d` updates them.

The kernels are the ``"fused"`` implementation of the ``batch_norm`` kind of the
implementation registry (:mod:`lightning_pc.ops._backend`), which declares what they support;
the torch ops (identical results up to float rounding) are its ``"torch"`` implementation.
The torch ops run under ``torch.compile`` / ``torch.export`` tracing, off the CPU, for other
dtypes than float32 and float64, in eval mode with running statistics, for any norm layer
that is not exactly :class:`torch.nn.BatchNorm1d` (``SyncBatchNorm`` after ``sync_batchnorm``
conversion keeps its synchronised statistics), without numba, and, in the automatic choice,
for inputs under :data:`FUSE_MIN_NUMEL` elements. The environment chooses as for every kind:
``LIGHTNING_PC_IMPL_BATCH_NORM=auto|fused|torch``, or its alias ``LIGHTNING_PC_FUSED``:
``auto`` (default), ``off`` (torch ops everywhere) or ``always`` (fused whatever the size;
the tests use it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.ops._backend import Call, choose
from lightning_pc.ops._threads import parallel_chunks

#: inputs with fewer elements take the torch ops in the automatic choice (thread start-up
#: outweighs the gain); read by the registry at each choice
FUSE_MIN_NUMEL = 1 << 16
_SEGMENTS = 256  # fewest segments per thread


def fusable(norm: nn.Module, h: Tensor) -> bool:
    """Whether the fused CPU kernels apply to ``norm(h)``."""
    return h.dim() == 2 and fusable_rows(norm, h, h.size(0), h.numel())


def fusable_rows(norm: nn.Module, like: Tensor, rows: int, numel: int) -> bool:
    """Whether the fused CPU kernels apply to ``norm`` over ``rows`` rows (``numel``
    elements) of ``like``'s device and dtype."""
    if torch.compiler.is_compiling():
        # the registry declares the kernels not traceable; answered here, before any of the
        # registry's Python, so that dynamo traces nothing but this check
        return False
    call = Call(like.device, like.dtype, numel, facts={"norm": norm, "rows": rows})
    return choose("batch_norm", call) == "fused"


def linear_before_norm(lin: nn.Linear, norm: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """``lin(x)`` for :func:`batch_norm_act` / :func:`batch_norm_segment_max` with ``norm``.

    Returns ``(h, pre_bias)``: where the fused kernels will apply, ``h = x W^T`` without the
    bias, which is returned as ``pre_bias`` (adding it is a full pass over ``h`` whose effect
    batch statistics remove); otherwise ``(lin(x), None)``.
    """
    rows = x.size(0)
    if lin.bias is not None and fusable_rows(norm, x, rows, rows * lin.out_features):
        return F.linear(x, lin.weight), lin.bias
    return lin(x), None


def _kernels() -> Any:
    from lightning_pc.nn import _fused_kernels

    return _fused_kernels


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _scalar(value: float, like: Tensor) -> np.floating:
    """``value`` as a numpy scalar of ``like``'s dtype (the kernels compute in that dtype)."""
    return _np(like).dtype.type(value)


def _channel_sums(
    kernel: Any, arrays: tuple[Any, ...], items: int, channels: int, min_items: int = 1 << 14
) -> np.ndarray:
    """Runs a sums kernel over ranges of rows (or segments) in parallel; returns ``[2, C]``
    float64 totals."""
    partial = np.zeros((torch.get_num_threads(), 2, channels))
    used = parallel_chunks(lambda t, i0, i1: kernel(*arrays, partial[t], i0, i1), items, min_items)
    return partial[:used].sum(0)


def _batch_stats(
    norm: nn.BatchNorm1d, h: Tensor, pre_bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Batch mean and ``1 / sqrt(var + eps)`` (``[C]``, ``h``'s dtype); updates the running
    statistics of ``h + pre_bias`` as :class:`torch.nn.BatchNorm1d` does in training."""
    n, c = h.shape
    sums = _channel_sums(_kernels().stats, (_np(h),), n, c)
    return _stats_from_sums(norm, sums, n, h.dtype, pre_bias)


def _stats_from_sums(
    norm: nn.BatchNorm1d, sums: np.ndarray, n: int, dtype: torch.dtype, pre_bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` from per-channel sums and sums of squares of ``n``
    rows, and the running-statistics update."""
    mean = sums[0] / n
    var = np.maximum(sums[1] / n - mean * mean, 0.0)  # biased, normalises the batch
    mean_t = torch.from_numpy(mean)
    # the running mean is that of the layer's real output, bias included
    batch_mean = mean_t if pre_bias is None else mean_t + pre_bias.detach().double()
    update_running_stats(norm, batch_mean, torch.from_numpy(var), n)
    invstd = 1.0 / np.sqrt(var + norm.eps)
    return mean_t.to(dtype), torch.from_numpy(invstd).to(dtype)


def update_running_stats(
    norm: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor, n: int
) -> None:
    """The running-statistics update of a batch norm in training, from the batch ``mean``
    and biased ``var`` (``[C]``) of ``n`` rows, as :class:`torch.nn.BatchNorm1d` does it
    (momentum, or a cumulative average with ``momentum=None``; unbiased variance)."""
    running_mean, running_var = norm.running_mean, norm.running_var
    if not norm.training or running_mean is None or running_var is None:
        return
    tracked = norm.num_batches_tracked
    assert tracked is not None
    with torch.no_grad():
        tracked.add_(1)
        factor = 1.0 / float(tracked) if norm.momentum is None else float(norm.momentum)
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        unbiased = var * (n / max(n - 1, 1))
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


class _BatchNormAct(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h: Tensor,
        weight: Tensor,
        bias: Tensor,
        mean: Tensor,
        invstd: Tensor,
        slope: float,
        pre_bias: Tensor | None,
    ) -> Tensor:
        h = h.contiguous()
        out = torch.empty_like(h)
        scale = (weight.detach() * invstd).to(h.dtype)
        beta = bias.detach().to(h.dtype)
        args = (_np(h), _np(mean), _np(scale), _np(beta), _scalar(slope, h))
        o = out.numpy()
        parallel_chunks(lambda t, i0, i1: _kernels().bn_act(*args, o, i0, i1), h.size(0))
        ctx.save_for_backward(h, weight, bias, mean, invstd)
        ctx.slope = slope
        _save_pre_bias(ctx, pre_bias)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, weight, bias, mean, invstd = ctx.saved_tensors
        n, c = h.shape
        g = grad.contiguous()
        gamma = weight.detach().to(h.dtype)
        slope = _scalar(ctx.slope, h)
        common = (_np(g), _np(h), _np(mean), _np(invstd), _np(gamma), _np(bias.to(h.dtype)), slope)
        sums = _channel_sums(_kernels().bn_act_grad_sums, common, n, c)
        grad_h = None
        if ctx.needs_input_grad[0]:
            k = _np(gamma * invstd)
            a, b = (sums / n).astype(k.dtype)
            out = torch.empty_like(h)
            o = out.numpy()
            parallel_chunks(
                lambda t, i0, i1: _kernels().bn_act_grad(*common, k, a, b, o, i0, i1), n
            )
            grad_h = out
        grad_w = torch.from_numpy(sums[1]).to(weight.dtype)
        grad_b = torch.from_numpy(sums[0]).to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, _zero_grad(ctx, 6)


class _BatchNormSegmentMax(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h: Tensor,
        ptr: Tensor,
        weight: Tensor,
        bias: Tensor,
        mean: Tensor,
        invstd: Tensor,
        pre_bias: Tensor | None,
    ) -> Tensor:
        h = h.contiguous()
        segments = ptr.numel() - 1
        out = h.new_empty(segments, h.size(1))
        arg = torch.empty(segments, h.size(1), dtype=torch.int64)
        scale = (weight.detach() * invstd).to(h.dtype)
        args = (
            _np(h),
            _np(ptr),
            _np(mean),
            _np(scale),
            _np(bias.to(h.dtype)),
            out.numpy(),
            arg.numpy(),
        )
        parallel_chunks(
            lambda t, s0, s1: _kernels().bn_segment_max(*args, s0, s1),
            segments,
            min_items=_SEGMENTS,
        )
        ctx.save_for_backward(h, ptr, weight, mean, invstd, arg)
        _save_pre_bias(ctx, pre_bias)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, ptr, weight, mean, invstd, arg = ctx.saved_tensors
        n = h.size(0)
        g = grad.contiguous().to(h.dtype)
        hit = arg >= 0
        xh = (h.gather(0, arg.clamp_min(0)) - mean) * invstd  # [S, C] at the maxima
        g64 = torch.where(hit, g, 0).double()
        sum_g = g64.sum(0)  # [C]
        sum_gx = (g64 * xh.double()).sum(0)  # [C]
        grad_h = None
        if ctx.needs_input_grad[0]:
            gamma = weight.detach().to(h.dtype)
            k = _np(gamma * invstd)
            a = (sum_g / n).numpy().astype(k.dtype)
            b = (sum_gx / n).numpy().astype(k.dtype)
            out = torch.empty_like(h)
            args = (_np(g), _np(h), _np(ptr), _np(arg), _np(mean), _np(invstd))
            o = out.numpy()
            parallel_chunks(
                lambda t, s0, s1: _kernels().bn_segment_max_grad(*args, k, a, b, o, s0, s1),
                ptr.numel() - 1,
                min_items=_SEGMENTS,
            )
            grad_h = out
        grad_w, grad_b = sum_gx.to(weight.dtype), sum_g.to(weight.dtype)
        return grad_h, None, grad_w, grad_b, None, None, _zero_grad(ctx, 6)


class _GatherBatchNormAct(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        p: Tensor,
        q: Tensor,
        ptr: Tensor,
        col: Tensor,
        weight: Tensor,
        bias: Tensor,
        mean: Tensor,
        invstd: Tensor,
        slope: float,
        pre_bias: Tensor | None,
    ) -> Tensor:
        p, q = p.contiguous(), q.contiguous()
        out = p.new_empty(col.numel(), p.size(1))
        scale = (weight.detach() * invstd).to(p.dtype)
        sl = _scalar(slope, p)
        args = (
            _np(p),
            _np(q),
            _np(ptr),
            _np(col),
            _np(mean),
            _np(scale),
            _np(bias.to(p.dtype)),
            sl,
        )
        o = out.numpy()
        parallel_chunks(
            lambda t, s0, s1: _kernels().gather_bn_act(*args, o, s0, s1), q.size(0), _SEGMENTS
        )
        ctx.save_for_backward(p, q, ptr, col, weight, bias, mean, invstd)
        ctx.slope = slope
        _save_pre_bias(ctx, pre_bias)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        p, q, ptr, col, weight, bias, mean, invstd = ctx.saved_tensors
        n, c = col.numel(), p.size(1)
        gamma = weight.detach().to(p.dtype)
        sl = _scalar(ctx.slope, p)
        tensors = (grad, p, q, ptr, col, mean, invstd, gamma, bias.to(p.dtype))
        common = (*[_np(t) for t in tensors], sl)
        sums = _channel_sums(_kernels().gather_bn_act_grad_sums, common, q.size(0), c, _SEGMENTS)
        grad_p = grad_q = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            k = _np(gamma * invstd)
            a, b = (sums / n).astype(k.dtype)
            grad_q = torch.empty_like(q)
            buffers = [torch.zeros_like(p) for _ in range(torch.get_num_threads())]
            gq = grad_q.numpy()

            def run(t: int, s0: int, s1: int) -> None:
                gp = buffers[t].numpy()
                _kernels().gather_bn_act_grad(*common, k, a, b, gp, gq, s0, s1)

            used = parallel_chunks(run, q.size(0), _SEGMENTS)
            grad_p = buffers[0]
            for extra in buffers[1:used]:
                grad_p += extra
        grad_w = torch.from_numpy(sums[1]).to(weight.dtype)
        grad_b = torch.from_numpy(sums[0]).to(bias.dtype)
        return grad_p, grad_q, None, None, grad_w, grad_b, None, None, None, _zero_grad(ctx, 9)


def _check_segments(
    ptr: Tensor,
    rows: int,
    segments: int | None = None,
    col: Tensor | None = None,
    points: int = 0,
) -> None:
    """The kernels index without bounds checks: offsets must ascend from 0 to ``rows`` (one
    segment per row of ``q`` where given) and ``col`` must index the ``points`` rows of ``p``."""
    o = _np(ptr)
    ok = o.ndim == 1 and o.size >= 1 and o[0] == 0 and o[-1] == rows and bool((np.diff(o) >= 0).all())
    ok = ok and (segments is None or o.size == segments + 1)
    if col is not None and col.numel() and ok:
        c = _np(col)
        ok = int(c.min()) >= 0 and int(c.max()) < points
    if not ok:
        raise ValueError("fused kernels: segment offsets or gathered indices out of range")


def _save_pre_bias(ctx: Any, pre_bias: Tensor | None) -> None:
    ctx.pre_bias = None if pre_bias is None else (pre_bias.shape, pre_bias.dtype)


def _zero_grad(ctx: Any, index: int) -> Tensor | None:
    """The gradient of a bias added before batch norm with batch statistics: exactly 0."""
    if ctx.pre_bias is None or not ctx.needs_input_grad[index]:
        return None
    shape, dtype = ctx.pre_bias
    return torch.zeros(shape, dtype=dtype)


def _slope(act: str, negative_slope: float) -> float:
    if act == "relu":
        return 0.0
    if act == "leaky_relu":
        return float(negative_slope)
    if act == "identity":
        return 1.0
    raise ValueError(f"unknown activation {act!r}")


def batch_norm_act(
    norm: nn.Module,
    h: Tensor,
    act: str = "relu",
    negative_slope: float = 0.2,
    pre_bias: Tensor | None = None,
) -> Tensor:
    """``act(norm(h + pre_bias))`` for rows ``h`` ``[R, C]``; ``act`` is ``"relu"``,
    ``"leaky_relu"`` or ``"identity"``. Fused on the CPU where :func:`fusable`, torch ops
    otherwise.

    ``pre_bias`` is the bias of the linear map before the norm, passed apart so that the
    caller can skip adding it: batch statistics remove it from the output (its gradient is
    exactly 0), and only the running mean needs it.
    """
    slope = _slope(act, negative_slope)
    if not fusable(norm, h):
        z = norm(h if pre_bias is None else h + pre_bias)
        if act == "relu":
            return F.relu(z, inplace=True)
        if act == "leaky_relu":
            return F.leaky_relu(z, negative_slope, inplace=True)
        return z
    assert isinstance(norm, nn.BatchNorm1d)
    mean, invstd = _batch_stats(norm, h, pre_bias)
    return _BatchNormAct.apply(h, norm.weight, norm.bias, mean, invstd, slope, pre_bias)


def batch_norm_segment_max(
    norm: nn.Module, h: Tensor, ptr: Tensor, pre_bias: Tensor | None = None
) -> Tensor:
    """``max`` of ``norm(h + pre_bias)`` over each segment ``ptr[s]:ptr[s + 1]`` of rows:
    ``[E, C]``, ``[S + 1]`` -> ``[S, C]`` (an empty segment gives 0). Fused on the CPU where
    :func:`fusable`, torch ops otherwise; ``pre_bias`` as in :func:`batch_norm_act`."""
    if not fusable(norm, h):
        from lightning_pc.nn.segment import segment_max

        return segment_max(norm(h if pre_bias is None else h + pre_bias), ptr)
    assert isinstance(norm, nn.BatchNorm1d)
    mean, invstd = _batch_stats(norm, h, pre_bias)
    ptr = ptr.to(torch.int64).contiguous()
    _check_segments(ptr, h.size(0))
    return _BatchNormSegmentMax.apply(h, ptr, norm.weight, norm.bias, mean, invstd, pre_bias)


def gather_batch_norm_act(
    norm: nn.Module,
    p: Tensor,
    q: Tensor,
    ptr: Tensor,
    col: Tensor,
    act: str = "relu",
    negative_slope: float = 0.2,
    pre_bias: Tensor | None = None,
) -> Tensor:
    """``act(norm(h))`` for the rows ``h[e] = p[col[e]] - q[s] (+ pre_bias)`` of the edges
    ``e`` in ``ptr[s]:ptr[s + 1]``: ``p [N, C]``, ``q [S, C]``, ``ptr [S + 1]``, ``col [E]``
    -> ``[E, C]``.

    This is the first layer of a grouped MLP whose linear map was split into a per-point and
    a per-centre term (PointNet++'s ``W [p_j - p_i, x_j]``). Fused on the CPU, ``h`` and its
    gradient are never written: the rows are gathered again in each pass, and the gradient
    is scattered straight onto ``p`` and ``q``.
    """
    slope = _slope(act, negative_slope)
    if not fusable_rows(norm, p, col.numel(), col.numel() * p.size(1)):
        row = torch.repeat_interleave(torch.arange(q.size(0), device=q.device), ptr.diff())
        h = p.index_select(0, col).sub_(q.index_select(0, row))  # [E, C]
        return batch_norm_act(norm, h, act, negative_slope, pre_bias)
    assert isinstance(norm, nn.BatchNorm1d)
    ptr, col = ptr.to(torch.int64).contiguous(), col.to(torch.int64).contiguous()
    _check_segments(ptr, col.numel(), q.size(0), col, p.size(0))
    sums = _channel_sums(
        _kernels().gather_stats,
        (_np(p), _np(q), _np(ptr), _np(col)),
        q.size(0),
        p.size(1),
        _SEGMENTS,
    )
    mean, invstd = _stats_from_sums(norm, sums, col.numel(), p.dtype, pre_bias)
    args = (p, q, ptr, col, norm.weight, norm.bias, mean, invstd, slope, pre_bias)
    return _GatherBatchNormAct.apply(*args)
