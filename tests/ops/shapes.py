"""Surface-sampled test clouds (spheres, boxes, tori): realistic neighbour counts."""

from __future__ import annotations

import math

import torch


def surface_cloud(n: int, kind: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points on the surface of a sphere (0), box (1) or torus (2), in about [-1, 1]^3."""
    g = generator
    if kind == 0:
        p = torch.randn(n, 3, generator=g)
        return p / p.norm(dim=1, keepdim=True)
    if kind == 1:
        p = torch.rand(n, 3, generator=g) * 2 - 1
        axis = torch.randint(0, 3, (n,), generator=g)
        side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        p[torch.arange(n), axis] = side
        return p * torch.tensor([1.0, 0.6, 0.4])
    u = torch.rand(n, generator=g) * 2 * math.pi
    v = torch.rand(n, generator=g) * 2 * math.pi
    big, small = 0.7, 0.25
    return torch.stack(
        [(big + small * v.cos()) * u.cos(), (big + small * v.cos()) * u.sin(), small * v.sin()], 1
    )


def batch_of_clouds(
    sizes: list[int], seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated clouds of the given sizes and their (sorted) batch vector."""
    g = torch.Generator().manual_seed(seed)
    parts = [surface_cloud(n, i % 3, g) for i, n in enumerate(sizes)]
    pos = torch.cat(parts).to(dtype) if parts else torch.empty(0, 3, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
    return pos, batch


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))
