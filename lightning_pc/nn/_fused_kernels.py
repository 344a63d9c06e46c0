"""CPU kernels (numba) behind :mod:`lightning_pc.nn.fused`.

All kernels work on row-major ``[R, C]`` arrays (float32 or float64) over a range of rows
or of segments, so that :func:`lightning_pc.ops._threads.parallel_chunks` can run ranges
concurrently (the kernels release the GIL). Per-channel sums are accumulated in float64.
Notation: ``xh = (h - mean) * invstd`` is the normalised input, ``z = xh * gamma + beta``
the batch-norm output, ``act(z) = z if z > 0 else slope * z`` (``slope = 0``: ReLU).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _grad_at(gv, hv, mean, invstd, gamma, beta, slope):  # type: ignore[no-untyped-def]
    """``(xh, gz)`` of one element: its normalised value and the gradient at the norm's
    output (``gv`` through the activation, whose mask is recomputed from ``hv``)."""
    xh = (hv - mean) * invstd
    z = xh * gamma + beta
    return xh, (gv if z > 0 else gv * slope)


@numba.njit(cache=True, nogil=True, inline="always")
def _add_sums(out, s, q):  # type: ignore[no-untyped-def]
    """``out[0] += s``, ``out[1] += q`` channel by channel (a range's partial sums)."""
    for c in range(out.shape[1]):
        out[0, c] += s[c]
        out[1, c] += q[c]


@numba.njit(cache=True, nogil=True)
def stats(h: np.ndarray, out: np.ndarray, r0: int, r1: int) -> None:
    """``out[0] += sum(h[r0:r1])``, ``out[1] += sum(h[r0:r1] ** 2)`` per channel (float64)."""
    c_n = h.shape[1]
    s = np.zeros(c_n)
    q = np.zeros(c_n)
    for i in range(r0, r1):
        for c in range(c_n):
            v = np.float64(h[i, c])
            s[c] += v
            q[c] += v * v
    _add_sums(out, s, q)


@numba.njit(cache=True, nogil=True)
def bn_act(
    h: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    out: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """``out = act((h - mean) * scale + beta)`` for rows ``r0:r1`` (``scale = gamma * invstd``)."""
    c_n = h.shape[1]
    for i in range(r0, r1):
        for c in range(c_n):
            z = (h[i, c] - mean[c]) * scale[c] + beta[c]
            out[i, c] = z if z > 0 else z * slope


@numba.njit(cache=True, nogil=True)
def bn_act_grad_sums(
    g: np.ndarray,
    h: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    out: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """``out[0] += sum(gz)``, ``out[1] += sum(gz * xh)`` with ``gz = g * act'(z)``."""
    c_n = h.shape[1]
    s = np.zeros(c_n)
    q = np.zeros(c_n)
    for i in range(r0, r1):
        for c in range(c_n):
            xh, gz = _grad_at(g[i, c], h[i, c], mean[c], invstd[c], gamma[c], beta[c], slope)
            s[c] += gz
            q[c] += np.float64(gz) * xh
    _add_sums(out, s, q)


@numba.njit(cache=True, nogil=True)
def bn_act_grad(
    g: np.ndarray,
    h: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    k: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """``out = k * (gz - a - xh * b)``: the batch-norm input gradient (``k = gamma * invstd``,
    ``a = mean(gz)``, ``b = mean(gz * xh)``)."""
    c_n = h.shape[1]
    for i in range(r0, r1):
        for c in range(c_n):
            xh, gz = _grad_at(g[i, c], h[i, c], mean[c], invstd[c], gamma[c], beta[c], slope)
            out[i, c] = k[c] * (gz - a[c] - xh * b[c])


@numba.njit(cache=True, nogil=True)
def bn_segment_max(
    h: np.ndarray,
    ptr: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    beta: np.ndarray,
    out: np.ndarray,
    arg: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """``out[s] = max over rows ptr[s]:ptr[s+1] of (h - mean) * scale + beta`` and the row of
    each maximum (the first among ties); an empty segment gives 0 and row -1."""
    c_n = h.shape[1]
    for s in range(s0, s1):
        p0 = ptr[s]
        p1 = ptr[s + 1]
        if p1 <= p0:
            for c in range(c_n):
                out[s, c] = 0
                arg[s, c] = -1
            continue
        for c in range(c_n):
            out[s, c] = (h[p0, c] - mean[c]) * scale[c] + beta[c]
            arg[s, c] = p0
        for i in range(p0 + 1, p1):
            for c in range(c_n):
                z = (h[i, c] - mean[c]) * scale[c] + beta[c]
                if z > out[s, c]:
                    out[s, c] = z
                    arg[s, c] = i


@numba.njit(cache=True, nogil=True)
def bn_segment_max_grad(
    grad_out: np.ndarray,
    h: np.ndarray,
    ptr: np.ndarray,
    arg: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    k: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """Input gradient of batch norm followed by a segment max, segment by segment: every
    row gets ``k * (-a - xh * b)`` and each segment's arg-max rows add ``k * grad_out``."""
    c_n = h.shape[1]
    for s in range(s0, s1):
        for i in range(ptr[s], ptr[s + 1]):
            for c in range(c_n):
                xh = (h[i, c] - mean[c]) * invstd[c]
                out[i, c] = -k[c] * (a[c] + xh * b[c])
        for c in range(c_n):
            i = arg[s, c]
            if i >= 0:
                out[i, c] += k[c] * grad_out[s, c]


# ----------------------------------------------------------------------------------------
# first layer of a grouped MLP: h[e] = p[col[e]] - q[s] for the edges e of segment s
# ----------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def gather_stats(
    p: np.ndarray,
    q: np.ndarray,
    ptr: np.ndarray,
    col: np.ndarray,
    out: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """Per-channel sum and sum of squares (float64) of ``h`` over segments ``s0:s1``."""
    c_n = p.shape[1]
    s_acc = np.zeros(c_n)
    q_acc = np.zeros(c_n)
    for s in range(s0, s1):
        for e in range(ptr[s], ptr[s + 1]):
            j = col[e]
            for c in range(c_n):
                v = np.float64(p[j, c] - q[s, c])
                s_acc[c] += v
                q_acc[c] += v * v
    _add_sums(out, s_acc, q_acc)


@numba.njit(cache=True, nogil=True)
def gather_bn_act(
    p: np.ndarray,
    q: np.ndarray,
    ptr: np.ndarray,
    col: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    out: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """``out[e] = act((h[e] - mean) * scale + beta)`` for the edges of segments ``s0:s1``."""
    c_n = p.shape[1]
    for s in range(s0, s1):
        for e in range(ptr[s], ptr[s + 1]):
            j = col[e]
            for c in range(c_n):
                z = (p[j, c] - q[s, c] - mean[c]) * scale[c] + beta[c]
                out[e, c] = z if z > 0 else z * slope


@numba.njit(cache=True, nogil=True)
def gather_bn_act_grad_sums(
    g: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    ptr: np.ndarray,
    col: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    out: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """``out[0] += sum(gz)``, ``out[1] += sum(gz * xh)`` over the edges of segments ``s0:s1``."""
    c_n = p.shape[1]
    s_acc = np.zeros(c_n)
    q_acc = np.zeros(c_n)
    for s in range(s0, s1):
        for e in range(ptr[s], ptr[s + 1]):
            j = col[e]
            for c in range(c_n):
                hv = p[j, c] - q[s, c]
                xh, gz = _grad_at(g[e, c], hv, mean[c], invstd[c], gamma[c], beta[c], slope)
                s_acc[c] += gz
                q_acc[c] += np.float64(gz) * xh
    _add_sums(out, s_acc, q_acc)


@numba.njit(cache=True, nogil=True)
def gather_bn_act_grad(
    g: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    ptr: np.ndarray,
    col: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    slope: np.floating,
    k: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    grad_p: np.ndarray,
    grad_q: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """Scatters the input gradient ``k * (gz - a - xh * b)`` of every edge of segments
    ``s0:s1``: added to ``grad_p[col[e]]`` (this range's own buffer) and subtracted from
    ``grad_q[s]`` (segments belong to one range)."""
    c_n = p.shape[1]
    for s in range(s0, s1):
        for c in range(c_n):
            grad_q[s, c] = 0
        for e in range(ptr[s], ptr[s + 1]):
            j = col[e]
            for c in range(c_n):
                hv = p[j, c] - q[s, c]
                xh, gz = _grad_at(g[e, c], hv, mean[c], invstd[c], gamma[c], beta[c], slope)
                d = k[c] * (gz - a[c] - xh * b[c])
                grad_p[j, c] += d
                grad_q[s, c] -= d
