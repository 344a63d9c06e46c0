"""Loader samplers: training order from (seed, epoch); evaluation split across DDP ranks unpadded."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, DistributedSampler, IterableDataset

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


def eval_sampler(dataset: Dataset, num_replicas: int, rank: int) -> DistributedSampler | None:
    """The evaluation sampler of ``dataset`` on rank ``rank`` of ``num_replicas``.

    Lightning gives evaluation loaders a ``DistributedSampler``, which repeats samples so
    that every rank gets as many: distributed metrics then count those clouds twice. This
    returns Lightning's ``UnrepeatedDistributedSampler`` instead (contiguous-free, in order;
    ranks differ by at most one sample; every sample seen exactly once), which Lightning
    leaves in place. Ranks may then take different numbers of steps, which is safe in
    evaluation: no gradient is synchronised, and DDP broadcasts buffers before a forward only
    when the previous forward ran with gradients enabled (``require_forward_param_sync``), so
    in an evaluation loop only the first step has a collective, and every rank takes that
    step (each has at least one sample, see below); the metrics' collectives run once, at
    epoch end, on every rank.

    Returns ``None`` (let Lightning decide) in a single process, for an iterable dataset,
    and when the dataset has fewer samples than ranks (a rank would get no batch at all and
    miss the epoch-end collectives; Lightning then pads as usual).

    Args:
        dataset: the validation or test dataset.
        num_replicas: world size.
        rank: global rank of this process.
    """
    if num_replicas <= 1 or isinstance(dataset, IterableDataset):
        return None
    if len(dataset) < num_replicas:  # type: ignore[arg-type]
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=num_replicas, rank=rank, shuffle=False
    )
