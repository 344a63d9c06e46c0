"""BaseTask: the LightningModule plumbing shared by every point-cloud task.

The shape follows torchgeo: ``__init__`` saves the hyperparameters (plain YAML types, so a
checkpoint loads with ``torch.load(weights_only=True)``), then calls the overridable
:meth:`BaseTask.configure_models`, :meth:`BaseTask.configure_losses` and
:meth:`BaseTask.configure_metrics` (not ``configure_model``, which is a Lightning hook).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from lightning_pc.models import create_model
from lightning_pc.tasks.distributed import use_unpadded_eval_loaders
from lightning_pc.tasks.precision import warn_if_slow_precision


class BaseTask(L.LightningModule):
    """Base class of the tasks: network by registry name, cross-entropy, optimiser, schedule.

    Subclasses declare their hyperparameters in their own ``__init__`` and call
    ``super().__init__(model)``; every ``__init__`` argument is saved with
    ``save_hyperparameters`` except ``model`` when it is an ``nn.Module`` instance (pass it
    again to ``load_from_checkpoint`` then).

    The default optimiser (``optimizer``: ``"adamw"`` or ``"sgd"``) and schedule
    (``scheduler``: ``"cosine"`` from ``lr`` to ``min_lr`` over ``max_epochs``, or over the
    estimated steps when only ``max_steps`` is set; ``"none"``) come from the task's
    hyperparameters; LightningCLI's ``--optimizer`` / ``--lr_scheduler`` replace them.

    Args:
        model: the network instance, when the subclass was given one (``None``: build
            ``hparams.model`` from the registry in :meth:`configure_models`).
    """

    model: nn.Module

    def __init__(self, model: nn.Module | None = None) -> None:
        super().__init__()
        given = isinstance(model, nn.Module)
        self.save_hyperparameters(ignore=["model"] if given else None)
        if given:
            self.model = model  # type: ignore[assignment]
        self.configure_models()
        self.configure_losses()
        # evaluation loss as a metric with sum states: exact under DDP (Lightning's own
        # ``sync_dist`` mean truncates the integer sample count when ranks differ in size)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.configure_metrics()

    # --- overridable construction -----------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~lightning_pc.models.create_model` (besides ``num_classes``)."""
        kwargs: dict[str, Any] = {"in_channels": self.hparams["in_channels"]}
        kwargs.update(self.hparams.get("model_kwargs") or {})
        return kwargs

    def configure_models(self) -> None:
        """Build ``self.model`` from the registry (unless an instance was passed)."""
        name = self.hparams.get("model")
        if name is None:  # an nn.Module instance was given to __init__
            return
        self.model = create_model(
            name, num_classes=self.hparams["num_classes"], **self.model_kwargs()
        )

    def configure_losses(self) -> None:
        """Cross-entropy with ``class_weights``, ``ignore_index`` and ``label_smoothing``."""
        weights = self.hparams.get("class_weights")
        if weights is not None and len(weights) != self.hparams["num_classes"]:
            raise ValueError(
                f"class_weights has {len(weights)} entries for {self.hparams['num_classes']} classes"
            )
        self.criterion = nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
            ignore_index=self.hparams["ignore_index"],
            label_smoothing=self.hparams["label_smoothing"],
        )

    def configure_metrics(self) -> None:
        """Create the torchmetrics objects, one set per split."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Under DDP, make the data module's validation/test loaders unpadded.

        Lightning's ``DistributedSampler`` repeats samples to even out the ranks, so
        distributed metrics would count some clouds twice; see
        :mod:`lightning_pc.tasks.distributed`. With this, DDP validation and test metrics
        equal a single-process evaluation.

        Also warns (once, on rank zero) when the trainer's precision is one that this CPU
        emulates (``bf16-mixed`` without bfloat16 instructions, say): see
        :mod:`lightning_pc.tasks.precision`.
        """
        trainer = self._trainer
        if trainer is None:
            return
        warn_if_slow_precision(trainer.precision, trainer.strategy.root_device.type)
        if trainer.world_size <= 1:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            use_unpadded_eval_loaders(datamodule, trainer.world_size, trainer.global_rank)

    # --- forward / optimisation ---------------------------------------------------------
    def forward(self, batch: Any) -> Tensor:
        """Logits of the network for a packed batch."""
        return self.model(batch)

    def configure_optimizers(self) -> Any:
        """AdamW or SGD with an optional cosine schedule (see the class docstring)."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        elif hp["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            raise ValueError(f"unknown optimizer {hp['optimizer']!r}")
        if hp["scheduler"] == "none":
            return optimizer
        if hp["scheduler"] != "cosine":
            raise ValueError(f"unknown scheduler {hp['scheduler']!r}")
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is not None and max_epochs > 0:
            total, interval = max_epochs, "epoch"
        else:
            total, interval = max(int(self.trainer.estimated_stepping_batches), 1), "step"
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=hp["min_lr"]
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

    # --- evaluation -----------------------------------------------------------------------
    # validation and test share one step and one epoch end per task, told apart by `split`
    def _eval_step(self, batch: Any, split: str) -> None:
        """Loss and metrics of one ``"val"`` or ``"test"`` batch."""
        raise NotImplementedError

    def _eval_epoch_end(self, split: str) -> None:
        """Per-class values of the ``"val"`` or ``"test"`` epoch (none by default)."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- helpers ------------------------------------------------------------------------
    def _log_eval_loss(self, split: str, loss: Tensor, size: int) -> None:
        """Log ``{split}/loss``, the epoch's mean over samples (clouds or points)."""
        metric = self.val_loss if split == "val" else self.test_loss
        metric.update(loss.detach(), size)
        self.log(f"{split}/loss", metric, batch_size=size)

    def _datamodule_attr(self, name: str) -> Any:
        """An attribute of the attached datamodule (``None`` without one)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        return getattr(datamodule, name, None)

    def _log_vector(self, prefix: str, values: Tensor, names: list[str] | None) -> None:
        """Log a per-class vector as one scalar per class (``{prefix}_{name}``)."""
        if names is None or len(names) != values.numel():
            names = [str(i) for i in range(values.numel())]
        for name, value in zip(names, values):
            # identical on every rank (metric.compute() synced): sync_dist only averages equals
            self.log(f"{prefix}_{name}", value, sync_dist=True)
