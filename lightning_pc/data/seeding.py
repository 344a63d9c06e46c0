"""Per-sample randomness.

Training loaders use :class:`~lightning_pc.data.sampler.EpochSampler`, which hands every
sample a seed computed from (global seed, epoch, sample index): the augmentation of a
sample in a given epoch is then the same in an uninterrupted run and in one resumed from a
checkpoint, whatever the workers. The rank is mixed in, so two DDP ranks (which share the
seed) augment differently.

Elsewhere (a plain index), each sample draws one 62-bit seed from the process's torch
generator: under ``seed_everything`` the main process's generator, and so every DataLoader
worker's, is reproducible and different per worker. Transforms draw only from the
generator returned here.
"""

from __future__ import annotations

import os

import torch

_generator = torch.Generator()


def sample_generator(rank: int = 0, sample_seed: int | None = None) -> torch.Generator:
    """A generator for one sample's randomness in this process/worker and rank.

    Args:
        rank: global rank of the process (0 without distributed training).
        sample_seed: the sample's own seed (from :func:`epoch_sample_seed`); ``None`` draws
            one from the process's torch generator.

    Returns:
        A ``torch.Generator`` (reused object, freshly seeded on every call).
    """
    if sample_seed is None:
        sample_seed = int(torch.randint(0, 1 << 62, (1,)).item())
    _generator.manual_seed(_mix(sample_seed, rank))
    return _generator


def epoch_sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return _mix(_mix(seed, epoch), index)


def global_seed() -> int:
    """The seed given to ``seed_everything`` (``PL_GLOBAL_SEED``), else 0."""
    try:
        return int(os.environ.get("PL_GLOBAL_SEED", "0"))
    except ValueError:
        return 0


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
