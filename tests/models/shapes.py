"""Small packed batches of surface-sampled shapes (sphere, box, torus, cylinder) for the model tests."""

from __future__ import annotations

import math

import torch
from torch_geometric.data import Batch, Data


def sample_surface(kind: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` points on the surface of shape ``kind`` (0 sphere, 1 box, 2 torus, 3 cylinder)."""
    u = torch.rand(n, 2, generator=g)
    if kind == 0:
        v = torch.randn(n, 3, generator=g)
        return v / v.norm(dim=1, keepdim=True)
    if kind == 1:
        face = torch.randint(0, 6, (n,), generator=g)
        p = u * 2 - 1
        out = torch.empty(n, 3)
        axis, sign = face // 2, (face % 2) * 2 - 1
        for a in range(3):
            m = axis == a
            others = [b for b in range(3) if b != a]
            out[m, a] = sign[m].float() * 0.7
            out[m, others[0]] = p[m, 0] * 0.7
            out[m, others[1]] = p[m, 1] * 0.7
        return out
    if kind == 2:
        t, s = u[:, 0] * 2 * math.pi, u[:, 1] * 2 * math.pi
        r = 0.7 + 0.25 * torch.cos(s)
        return torch.stack([r * torch.cos(t), r * torch.sin(t), 0.25 * torch.sin(s)], 1)
    t = u[:, 0] * 2 * math.pi
    return torch.stack([0.5 * torch.cos(t), 0.5 * torch.sin(t), u[:, 1] * 1.6 - 0.8], 1)


def make_batch(
    sizes: list[int],
    in_channels: int = 0,
    seed: int = 0,
    kinds: list[int] | None = None,
    point_labels: int = 0,
) -> Batch:
    """A PyG batch of surface-sampled clouds with ``y`` (shape kind), ``category``."""
    g = torch.Generator().manual_seed(seed)
    kinds = kinds if kinds is not None else [i % 4 for i in range(len(sizes))]
    data = []
    for n, kind in zip(sizes, kinds, strict=True):
        pos = sample_surface(kind, n, g)
        pos = pos + 0.01 * torch.randn(n, 3, generator=g)
        d = Data(pos=pos, y=torch.tensor([kind]), category=torch.tensor([kind]))
        if in_channels:
            d.x = torch.randn(n, in_channels, generator=g)
        if point_labels:
            d.y = (pos[:, 2] > 0).long() + 2 * (pos[:, 0] > 0).long()
        data.append(d)
    return Batch.from_data_list(data)


def permute_within_clouds(batch: Batch, seed: int = 1) -> tuple[Batch, torch.Tensor]:
    """Shuffle the points inside each cloud; returns the batch and the permutation."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.cat(
        [
            lo + torch.randperm(int(hi - lo), generator=g)
            for lo, hi in zip(batch.ptr[:-1], batch.ptr[1:], strict=False)
        ]
    )
    out = batch.clone()
    out.pos = batch.pos[perm]
    if batch.x is not None:
        out.x = batch.x[perm]
    return out, perm
