"""Helpers shared by the benchmark scripts: surface-sampled clouds, timing, tables."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch


def surface_cloud(n: int, kind: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points sampled on a sphere, box, torus or cylinder surface (about [-1, 1]^3).

    Surface samples have the neighbour counts of real scans and CAD samples, which points
    uniform in a cube do not (about 10x fewer within the same radius).
    """
    g = generator
    kind %= 4
    if kind == 0:
        p = torch.randn(n, 3, generator=g)
        return p / p.norm(dim=1, keepdim=True)
    if kind == 1:
        p = torch.rand(n, 3, generator=g) * 2 - 1
        axis = torch.randint(0, 3, (n,), generator=g)
        side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        p[torch.arange(n), axis] = side
        return p * torch.tensor([1.0, 0.6, 0.4])
    if kind == 2:
        u = torch.rand(n, generator=g) * 2 * math.pi
        v = torch.rand(n, generator=g) * 2 * math.pi
        return torch.stack(
            [(0.7 + 0.25 * v.cos()) * u.cos(), (0.7 + 0.25 * v.cos()) * u.sin(), 0.25 * v.sin()], 1
        )
    u = torch.rand(n, generator=g) * 2 * math.pi
    z = torch.rand(n, generator=g) * 2 - 1
    return torch.stack([0.5 * u.cos(), 0.5 * u.sin(), z], 1)


def clouds(num: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` surface clouds of ``size`` points each, concatenated, with their batch vector."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.cat([surface_cloud(size, i, g) for i in range(num)])
    return pos.contiguous(), torch.arange(num).repeat_interleave(size)


def scene(n: int, seed: int = 0) -> torch.Tensor:
    """A room-like scene of ``n`` surface points: floor, walls and a few objects, in metres."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    per = n // 8
    for i in range(7):
        c = surface_cloud(per, i, g) * (0.4 + 0.3 * (i % 3))
        c += torch.tensor([(i % 4) * 1.5 - 2.0, (i // 4) * 2.0 - 1.0, 0.5])
        parts.append(c)
    floor = torch.rand(n - 7 * per, 3, generator=g) * torch.tensor([6.0, 5.0, 0.0]) - torch.tensor(
        [3.0, 2.5, 0.0]
    )
    parts.append(floor)
    return torch.cat(parts).contiguous()


def median_time(
    fn: Callable[[], object], repeat: int = 7, warmup: int = 1, budget_s: float = 20.0
) -> float:
    """Median wall time of ``fn`` in seconds (fewer repeats if one call is slow)."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
    if warmup and first * repeat > budget_s:
        repeat = max(3, int(budget_s / max(first, 1e-9)))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.1f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
