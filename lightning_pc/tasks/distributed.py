"""Exact evaluation under DDP: validation/test loaders that do not pad the last batch.

Lightning gives evaluation loaders a ``DistributedSampler``, which repeats samples so that
every rank gets as many; metrics then count those samples twice. The tasks swap in
Lightning's ``UnrepeatedDistributedSampler`` instead (ranks differ by at most one sample),
which is safe in evaluation: no gradient is synchronised and DDP syncs buffers only on a
forward pass with gradients enabled, so the per-step work has no collective; the metrics'
collectives run once, at epoch end, on every rank.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, SequentialSampler

_MARK = "__lightning_pc_unpadded__"


def unpadded_loader(loader: Any, num_replicas: int, rank: int) -> Any:
    """``loader`` with an ``UnrepeatedDistributedSampler``, when it can be rebuilt exactly.

    Only a plain ``torch.utils.data.DataLoader`` that reads its dataset in order (a
    ``SequentialSampler``, the evaluation default) is rebuilt; anything else (a list of
    loaders, an iterable dataset, a custom sampler) is returned unchanged, and Lightning
    then pads as usual.

    Args:
        loader: what a ``*_dataloader`` hook returned.
        num_replicas: world size.
        rank: global rank of this process.

    Returns:
        The rebuilt loader (same dataset, batch size, workers, collate) or ``loader``.
    """
    if type(loader) is not DataLoader or not isinstance(loader.sampler, SequentialSampler):
        return loader
    if len(loader.dataset) < num_replicas:  # type: ignore[arg-type]
        return loader  # a rank would get no batch at all: keep Lightning's padding
    sampler = UnrepeatedDistributedSampler(
        loader.dataset, num_replicas=num_replicas, rank=rank, shuffle=False
    )
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers > 0 else None,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
        persistent_workers=loader.persistent_workers if workers > 0 else False,
    )


def use_unpadded_eval_loaders(datamodule: Any, num_replicas: int, rank: int) -> None:
    """Make ``datamodule``'s ``val_dataloader`` and ``test_dataloader`` unpadded (idempotent).

    Wraps the two hooks on the instance; the wrapped hooks call the originals and pass the
    result through :func:`unpadded_loader`.

    Args:
        datamodule: the trainer's data module.
        num_replicas: world size.
        rank: global rank of this process.
    """
    for name in ("val_dataloader", "test_dataloader"):
        hook = getattr(datamodule, name, None)
        if hook is None or getattr(hook, _MARK, False):
            continue
        setattr(datamodule, name, _wrap(hook, num_replicas, rank))


def _wrap(hook: Callable[[], Any], num_replicas: int, rank: int) -> Callable[[], Any]:
    @functools.wraps(hook)
    def wrapped() -> Any:
        return unpadded_loader(hook(), num_replicas, rank)

    setattr(wrapped, _MARK, True)
    return wrapped
