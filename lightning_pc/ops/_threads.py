"""A per-process thread pool for CPU kernels that release the GIL (numba, scipy)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def parallel_ranges(
    fn: Callable[[int, int], object], work: np.ndarray, min_work: float = 2e5
) -> None:
    """Runs ``fn(b0, b1)`` over contiguous ranges of items with about equal ``work``.

    The kernels release the GIL, so ranges run concurrently on up to
    ``torch.get_num_threads()`` threads (1 inside DataLoader workers, where torch sets it so).
    """
    n = work.size
    threads = min(torch.get_num_threads(), n)
    total = float(work.sum())
    if threads <= 1 or total < min_work:
        fn(0, n)
        return
    cum = np.cumsum(work) / max(total, 1.0)
    cuts = [0] + [int(np.searchsorted(cum, t / threads)) + 1 for t in range(1, threads)] + [n]
    cuts = sorted(set(min(c, n) for c in cuts))
    ranges = [(b0, b1) for b0, b1 in zip(cuts[:-1], cuts[1:]) if b1 > b0]
    _run(lambda t, b0, b1: fn(b0, b1), ranges, threads)


def _run(
    fn: Callable[[int, int, int], object], ranges: list[tuple[int, int]], threads: int
) -> None:
    """``fn(t, b0, b1)`` for each range ``t`` on the pool; the calling thread takes range 0."""
    pool = _pool(threads)
    futures = [pool.submit(fn, t, b0, b1) for t, (b0, b1) in enumerate(ranges) if t > 0]
    fn(0, *ranges[0])
    for f in futures:
        f.result()


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool for this process (recreated after a fork or a change of size)."""
    global _POOL
    pid = os.getpid()
    if _POOL is None or _POOL[0] != pid or _POOL[1] != threads:
        _POOL = (
            pid,
            threads,
            ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="lpc-ops"),
        )
    return _POOL[2]


def parallel_chunks(fn: Callable[[int, int, int], object], n: int, min_items: int = 1 << 14) -> int:
    """Runs ``fn(t, i0, i1)`` over ``T`` equal contiguous ranges of ``n`` items; returns ``T``.

    ``t`` numbers the ranges ``0 .. T - 1`` so that each can write its own partial result.
    One range (``T = 1``) below ``min_items`` items or with one thread.
    """
    threads = max(1, min(torch.get_num_threads(), n // max(1, min_items)))
    if threads <= 1:
        fn(0, 0, n)
        return 1
    cuts = [n * t // threads for t in range(threads + 1)]
    _run(fn, list(zip(cuts[:-1], cuts[1:])), threads)
    return threads
