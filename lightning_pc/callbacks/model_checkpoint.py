"""``ModelCheckpoint`` whose ``save_last`` writes the latest state every time, as before Lightning 2.6.

Since Lightning 2.6, ``ModelCheckpoint(monitor=..., save_last=True)`` rewrites ``last.ckpt``
only when a top-k checkpoint is saved at the same step, i.e. when the monitored metric
improves: ``last.ckpt`` is then a copy of the best checkpoint, and ``fit --ckpt_path last``
after a kill silently goes back to the best epoch and trains the epochs after it again.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``; with ``save_last=True``, ``last.ckpt`` is written at
    every checkpointing point (each validation end, or training epoch end), improved or not.

    A drop-in replacement (same arguments); the configs of this project use it, so that
    ``fit --ckpt_path last`` resumes from the latest epoch.
    """

    def _save_last_if_skipped(self, trainer: L.Trainer) -> None:
        if self.save_last is True and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(
            trainer
        ) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(
            trainer
        ) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)
