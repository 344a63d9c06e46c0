"""Epoch seeding: the global generators re-seeded from (run seed, epoch, rank) every epoch.

Dropout, the random first centre of farthest point sampling and any other draw from torch's,
numpy's or Python's global generator would otherwise continue from wherever the process
happens to be, and ``fit --ckpt_path`` from an end-of-epoch checkpoint (a fresh process)
would diverge from the uninterrupted run. The base task holds an :class:`EpochSeeding` and
calls :meth:`EpochSeeding.seed_epoch` at the first batch of every training epoch.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from lightning_pc.data.seeding import epoch_sample_seed, global_seed

_RNG_SALT = 0x6C70632D726E67  # "lpc-rng": apart from the samplers' seeds


class EpochSeeding:
    """Re-seeds the global torch, numpy and Python generators at the start of each epoch.

    The run seed is ``seed_everything``'s (``PL_GLOBAL_SEED``), or else one drawn once per
    run and kept in the checkpoints (:meth:`state_dict` / :meth:`load_state_dict`), so a
    resumed run draws what the uninterrupted one drew.
    """

    def __init__(self) -> None:
        self.drawn_seed: int | None = None

    def run_seed(self) -> int:
        """``seed_everything``'s seed, else one drawn once per run (kept in checkpoints)."""
        if os.environ.get("PL_GLOBAL_SEED") is not None:
            return global_seed()
        if self.drawn_seed is None:
            self.drawn_seed = random.SystemRandom().getrandbits(62)
        return int(self.drawn_seed)

    def seed_epoch(self, epoch: int, rank: int) -> None:
        """Seed the global generators for ``epoch`` on global rank ``rank``."""
        seed = epoch_sample_seed(self.run_seed() ^ _RNG_SALT, epoch, rank)
        torch.manual_seed(seed)
        np.random.seed(seed % (1 << 32))
        random.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the drawn run seed (``None`` under ``seed_everything``)."""
        return {"run_seed": None if self.drawn_seed is None else int(self.drawn_seed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back the run seed of a checkpoint (a missing or ``None`` one changes nothing)."""
        drawn = (state or {}).get("run_seed")
        if drawn is not None:
            self.drawn_seed = int(drawn)
