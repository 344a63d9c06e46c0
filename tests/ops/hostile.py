"""Clouds that are not surface samples: what real scans and careless pipelines hand the ops.

Each generator returns float32 ``[n, 3]`` points from a numpy generator, so a failing case
is reproduced from ``(kind, n, seed, scale)`` alone. Magnitudes stay below ~1e18 so that
squared distances fit float32 (overflowing inputs have their own test).
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = (
    "gaussian",
    "heavy_tailed",  # Student-t with 1.5 degrees of freedom: a few points very far out
    "clusters",  # 4 tight clusters far apart
    "collinear",
    "planar",
    "identical",
    "integer_grid",  # many exact ties in distance
    "far_outlier",  # a gaussian cloud and one point 1e5 away
    "chain",  # x = 2^i: every midpoint split cuts off one point (the kd-tree's worst case)
    "duplicates",  # every point twice
)
SCALES = (1e-6, 1.0, 1e6)


def cloud(kind: str, n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        p = rng.standard_normal((n, 3))
    elif kind == "heavy_tailed":
        p = rng.standard_t(1.5, (n, 3))
    elif kind == "clusters":
        centres = rng.uniform(-100, 100, (4, 3))
        p = centres[rng.integers(0, 4, n)] + 1e-3 * rng.standard_normal((n, 3))
    elif kind == "collinear":
        p = rng.uniform(-1, 1, (n, 1)) * np.array([[0.3, -0.5, 0.8]])
    elif kind == "planar":
        p = np.concatenate([rng.uniform(-1, 1, (n, 2)), np.zeros((n, 1))], 1)
    elif kind == "identical":
        p = np.tile(rng.uniform(-1, 1, (1, 3)), (n, 1))
    elif kind == "integer_grid":
        p = rng.integers(0, 4, (n, 3)).astype(np.float64)
    elif kind == "far_outlier":
        p = rng.standard_normal((n, 3))
        if n:
            p[rng.integers(0, n)] = 1e5
    elif kind == "chain":
        p = np.zeros((n, 3))
        p[:, 0] = 2.0 ** (np.arange(n) % 36)
        p[:, 1] = rng.uniform(-1e-3, 1e-3, n)
        p = p[rng.permutation(n)]
    elif kind == "duplicates":
        half = rng.standard_normal(((n + 1) // 2, 3))
        p = np.concatenate([half, half])[:n]
    else:
        raise ValueError(kind)
    return torch.from_numpy((p * scale).astype(np.float32))


def layout(
    kind: str, sizes: list[int], seed: int, scale: float = 1.0, shuffle: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several clouds of one kind, concatenated, with their batch vector (shuffled if asked,
    i.e. an unsorted ``batch``)."""
    parts = [cloud(kind, n, seed + 7 * i, scale) for i, n in enumerate(sizes)]
    pos = torch.cat(parts) if parts else torch.empty(0, 3)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
    if shuffle and pos.size(0) > 1:
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(pos.size(0)))
        pos, batch = pos[perm], batch[perm]
    return pos, batch
