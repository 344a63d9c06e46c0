"""Reductions over contiguous segments of a packed tensor (clouds, or a centre's neighbours).

A packed batch stores the rows of cloud ``b`` at ``ptr[b]:ptr[b + 1]``; the neighbour lists
that :func:`lightning_pc.ops.radius` returns are contiguous per query in the same way. Over
contiguous segments these reductions are several times faster than ``scatter_reduce`` on
CPU, forward and backward (measured: 0.26 s against 0.9 s for a max over 350k x 128 rows):
the max runs as an ``embedding_bag`` over consecutive rows, which keeps the arg-max for the
backward pass, the mean through :func:`torch.segment_reduce`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lengths_from_ptr(ptr: Tensor) -> Tensor:
    """Segment lengths ``[S]`` from offsets ``[S + 1]``."""
    return ptr[1:] - ptr[:-1]


def ptr_from_index(index: Tensor, num_segments: int) -> Tensor:
    """Offsets ``[S + 1]`` from a sorted segment index ``[E]``.

    A binary search for the first row of every segment: the output's size is known without
    reading ``index`` (``bincount``'s is not), so this traces without a data-dependent guard.
    """
    bounds = torch.arange(num_segments + 1, device=index.device, dtype=index.dtype)
    return torch.searchsorted(index, bounds)


def segment_max(src: Tensor, ptr: Tensor) -> Tensor:
    r"""Maximum over each segment, :math:`\mathrm{out}_s = \max_{p_s \le e < p_{s+1}} \mathrm{src}_e`.

    Args:
        src: ``[E, C]`` rows grouped by segment.
        ptr: ``[S + 1]`` offsets; every segment must be non-empty.

    Returns:
        ``[S, C]``. Where rows tie for the max, one of them receives the gradient.
    """
    rows = torch.arange(src.size(0), device=src.device)
    return F.embedding_bag(rows, src, offsets=ptr[:-1], mode="max")


def segment_mean(src: Tensor, ptr: Tensor) -> Tensor:
    """Mean over each segment: ``[E, C]``, ``[S + 1]`` -> ``[S, C]``."""
    return torch.segment_reduce(src, "mean", lengths=lengths_from_ptr(ptr), axis=0)


def segment_argmax(values: Tensor, ptr: Tensor) -> Tensor:
    """Global index of the largest value of each segment (lowest index among exact ties).

    Args:
        values: ``[E]``.
        ptr: ``[S + 1]`` offsets of non-empty segments.

    Returns:
        ``[S]`` long indices into ``values``.
    """
    lengths = lengths_from_ptr(ptr)
    seg = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)
    best = torch.segment_reduce(values, "max", lengths=lengths)  # [S]
    hit = values == best[seg]  # [E]
    pos = torch.arange(values.numel(), device=values.device)
    out = torch.full_like(best, values.numel(), dtype=torch.long)
    return out.scatter_reduce_(0, seg[hit], pos[hit], "amin")
