"""Training sampler whose order and per-sample seeds depend only on (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler

from lightning_pc.data.seeding import epoch_sample_seed, global_seed


class EpochSampler(DistributedSampler):
    """Shuffles by ``(seed, epoch)`` and yields ``(index, sample_seed)`` pairs.

    Lightning calls :meth:`set_epoch` before every epoch, including the first one after
    resuming from a checkpoint, so a resumed run sees the same order and the same
    augmentations as an uninterrupted one (a plain ``shuffle=True`` loader draws both from
    the global RNG, which checkpoints do not restore). Being a ``DistributedSampler``, it
    also shards the samples across DDP ranks itself (Lightning then leaves it in place).

    Args:
        dataset: the training dataset.
        seed: the run's seed (default: the one given to ``seed_everything``).
        shuffle: shuffle each epoch.
    """

    def __init__(self, dataset: Dataset, seed: int | None = None, shuffle: bool = True) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=torch.distributed.get_world_size() if distributed else 1,
            rank=torch.distributed.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=global_seed() if seed is None else seed,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for index in super().__iter__():
            yield index, epoch_sample_seed(self.seed, self.epoch, index)
