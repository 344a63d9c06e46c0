"""Per-sample randomness, seeded from the process's torch RNG and the rank.

Under ``seed_everything`` the main process's torch generator, and so every DataLoader
worker's (seeded ``base_seed + worker_id``, with ``base_seed`` drawn from the main process
each epoch), is reproducible and different per worker. Each sample draws one 62-bit seed
from that generator and mixes in the rank, so two DDP ranks (which share the seed) augment
differently. Transforms draw only from the generator returned here.
"""

from __future__ import annotations

import os

import torch

_generator = torch.Generator()


def sample_generator(rank: int = 0) -> torch.Generator:
    """A generator for one sample's randomness in this process/worker and rank.

    Args:
        rank: global rank of the process (0 without distributed training).

    Returns:
        A ``torch.Generator`` (reused object, freshly seeded on every call).
    """
    draw = int(torch.randint(0, 1 << 62, (1,)).item())
    _generator.manual_seed(_mix(draw, rank))
    return _generator


def _mix(a: int, b: int) -> int:
    """SplitMix64-style hash of two integers into a 63-bit seed."""
    z = (a * 0x9E3779B97F4A7C15 + (b + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1


def current_rank() -> int:
    """Global rank from ``torch.distributed`` if initialised, else the ``RANK`` env variable."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))
