"""BaseTask: the LightningModule plumbing shared by every point-cloud task.

The shape follows torchgeo: ``__init__`` saves the hyperparameters (plain YAML types, so a
checkpoint loads with ``torch.load(weights_only=True)``), then calls the overridable
:meth:`BaseTask.configure_models`, :meth:`BaseTask.configure_losses` and
:meth:`BaseTask.configure_metrics` (not ``configure_model``, which is a Lightning hook).
"""

from __future__ import annotations

import os
import random
import warnings
from abc import ABCMeta, abstractmethod
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from typing_extensions import override

from lightning_pc.data.seeding import epoch_sample_seed, global_seed
from lightning_pc.models import create_model
from lightning_pc.nn.norm_warmup import BatchNormWarmup
from lightning_pc.tasks.guards import NonFinite, NonFiniteError, describe_clouds, nonfinite_clouds
from lightning_pc.tasks.precision import warn_if_slow_precision

#: key of the task's own entries in a checkpoint
CHECKPOINT_KEY = "lightning_pc"
_RNG_SALT = 0x6C70632D726E67  # "lpc-rng"


class BaseTask(L.LightningModule, metaclass=ABCMeta):
    """Base class of the tasks: network by registry name, cross-entropy, optimiser, schedule.

    The arguments every task shares are declared here; a subclass declares its own (and
    those whose defaults differ: ``model``, ``num_classes``, ``in_channels``) and passes
    the rest on with ``**kwargs`` (LightningCLI follows the ``**kwargs`` and lists these in
    ``--help`` and saved configs). Every ``__init__`` argument is saved with
    ``save_hyperparameters`` except ``model`` when it is an ``nn.Module`` instance (pass it
    again to ``load_from_checkpoint`` then). A subclass implements
    :meth:`configure_metrics`, ``training_step`` and :meth:`_eval_step`.

    The default optimiser (``optimizer``: ``"adamw"`` or ``"sgd"``) and schedule
    (``scheduler``: ``"cosine"`` from ``lr`` to ``min_lr`` over ``max_epochs``, or over the
    estimated steps when only ``max_steps`` is set; ``"none"``) come from the task's
    hyperparameters; LightningCLI's ``--optimizer`` / ``--lr_scheduler`` replace them.

    Non-finite values: every training, validation, test and predict batch is checked for
    NaN or infinite ``pos`` (and ``x`` when the network reads features) before the
    forward pass, and every training loss after it. A bad batch raises
    :class:`~lightning_pc.tasks.guards.NonFiniteError` naming the source file of each
    offending cloud; with ``nonfinite="skip"`` (a task argument) a bad training batch is
    skipped instead (no optimiser step, batch-norm statistics left as they were) with a
    warning naming them. Under DDP the ranks agree on every skip (one scalar all-reduce per
    training step), so they stay in step.
    Evaluation and prediction always raise: their results would otherwise silently leave
    out clouds.

    Resuming: at the first batch of every training epoch the global torch, numpy and
    Python generators are re-seeded from (run seed, epoch, global rank), the run seed
    being ``seed_everything``'s (or one drawn at the start and kept in the checkpoints).
    Dropout, random sampling starts and any other draw from them then depend on the epoch
    alone, so ``fit --ckpt_path`` from an end-of-epoch checkpoint continues exactly as the
    uninterrupted run.

    Batch norm: the first training step sets the running statistics of every batch-norm
    layer to its batch statistics, and the next ones follow them with a momentum from 0.5
    down to the layer's own (over 46 steps for 0.1), so evaluation is right from the first
    epoch; see :mod:`lightning_pc.nn.norm_warmup`.

    Args:
        model: registered network name (see :func:`~lightning_pc.models.list_models`) or an
            ``nn.Module`` instance (then not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (0: coordinates only).
        label_smoothing: cross-entropy label smoothing (DGCNN trains with 0.2).
        class_weights: per-class loss weights (``None``: uniform).
        ignore_index: target value excluded from the loss and the metrics.
        optimizer: default optimiser, ``"adamw"`` or ``"sgd"``.
        lr: learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        scheduler: ``"cosine"`` (from ``lr`` to ``min_lr``) or ``"none"``.
        min_lr: final learning rate of the cosine schedule.
        nonfinite: a training batch with NaN/inf inputs or loss: ``"raise"`` an error
            naming its source files, or ``"skip"`` it with a warning naming them.
    """

    model: nn.Module

    def __init__(
        self,
        model: str | nn.Module | None = None,
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        ignore_index: int = -100,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: Literal["cosine", "none"] = "cosine",
        min_lr: float = 0.0,
        nonfinite: NonFinite = "raise",
    ) -> None:
        super().__init__()
        given = isinstance(model, nn.Module)
        self.save_hyperparameters(ignore=["model"] if given else None)
        if self.hparams.get("nonfinite", "raise") not in ("raise", "skip"):
            raise ValueError(
                f"nonfinite must be 'raise' or 'skip', got {self.hparams['nonfinite']!r}"
            )
        if given:
            self.model = model  # type: ignore[assignment]
        self.configure_models()
        self.configure_losses()
        # evaluation loss as a metric with sum states: exact under DDP (Lightning's own
        # ``sync_dist`` mean truncates the integer sample count when ranks differ in size)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.configure_metrics()
        self._norm_warmup = BatchNormWarmup()

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

    @abstractmethod
    def configure_metrics(self) -> None:
        """Create the torchmetrics objects, one set per split."""

    @override
    def setup(self, stage: str) -> None:
        """Warn (once, on rank zero) when the trainer's precision is one that this CPU
        emulates (``bf16-mixed`` without bfloat16 instructions, say): see
        :mod:`lightning_pc.tasks.precision`.

        (Exact DDP evaluation is the data module's business: its evaluation loaders split
        the clouds across ranks without padding, see
        :func:`~lightning_pc.data.sampler.eval_sampler`.)
        """
        trainer = self._trainer
        if trainer is None:
            return
        warn_if_slow_precision(trainer.precision, trainer.strategy.root_device.type)

    # --- non-finite guard ---------------------------------------------------------------
    def _split_dataset(self, split: str) -> Any:
        """The dataset behind the trainer's ``split`` loader (``None`` when unknown)."""
        trainer = self._trainer
        if trainer is None:
            return None
        name = {
            "train": "train_dataloader",
            "val": "val_dataloaders",
            "test": "test_dataloaders",
            "predict": "predict_dataloaders",
        }[split]
        try:
            loader = getattr(trainer, name, None)
        except Exception:  # noqa: BLE001 (a loader that cannot be inspected names nothing)
            return None
        if isinstance(loader, list | tuple):
            loader = loader[0] if loader else None
        return getattr(loader, "dataset", None)

    def _any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (a collective under DDP: call it on every rank)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(trainer.strategy.reduce(value, reduce_op="sum").item() > 0)

    def _nonfinite_message(self, what: str, split: str, batch_idx: int, detail: str) -> str:
        where = f"{split} batch {batch_idx}"
        if self._trainer is not None:
            where += f" (epoch {self.current_epoch}, global step {self.global_step})"
        return (
            f"{what} in {where}, from:\n{detail}\n"
            "Fix or remove the file, or check the transforms (an augmentation can turn a "
            "degenerate cloud into NaN)."
        )

    def check_inputs(self, batch: Any, split: str, batch_idx: int) -> bool:
        """Whether the batch's ``pos`` (and ``x``, if the network reads it) are finite.

        A non-finite batch raises :class:`~lightning_pc.tasks.guards.NonFiniteError`
        naming the clouds' sources, except a training batch with ``nonfinite="skip"``:
        then a warning names them and this returns ``False`` (skip the batch). Under DDP
        a training batch is skipped (or raises) on every rank when it is bad on any.

        Args:
            batch: the packed batch.
            split: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.
            batch_idx: index of the batch in the epoch.
        """
        fields = {"pos": batch.pos}
        x = getattr(batch, "x", None)
        if x is not None and self.hparams.get("in_channels", 0):
            fields["x"] = x
        bad = {name: nonfinite_clouds(value, batch) for name, value in fields.items()}
        bad = {name: clouds for name, clouds in bad.items() if clouds}
        local = bool(bad)
        found = self._any_rank(local) if split == "train" else local
        if not found:
            return True
        skip = split == "train" and self.hparams.get("nonfinite", "raise") == "skip"
        if local:
            clouds = sorted({c for cs in bad.values() for c in cs})
            detail = describe_clouds(
                batch, clouds, self._split_dataset(split), self._datamodule_attr("root")
            )
            fields_named = " and ".join(f"batch.{name}" for name in bad)
            message = self._nonfinite_message(
                f"non-finite values (NaN or inf) in {fields_named}", split, batch_idx, detail
            )
        else:
            message = (
                f"another rank found non-finite values in its part of {split} batch "
                f"{batch_idx}; its message names the files"
            )
        if skip:
            if local:
                warnings.warn(f"skipped: {message}", UserWarning, stacklevel=2)
                # the forward pass still runs (DDP needs every rank's backward), on zeros
                for name in bad:
                    batch[name] = torch.nan_to_num(batch[name], nan=0.0, posinf=0.0, neginf=0.0)
            return False
        raise NonFiniteError(
            message + "\nTo skip such training batches instead, set the task's `nonfinite: skip`."
        )

    def check_loss(self, loss: Tensor, outputs: Tensor, batch: Any, batch_idx: int) -> bool:
        """Whether a training loss is finite (on every rank, under DDP).

        A non-finite loss raises :class:`~lightning_pc.tasks.guards.NonFiniteError` naming
        the clouds whose outputs are non-finite (all of the batch's if none is); with
        ``nonfinite="skip"`` it warns and returns ``False``. Either way the network's
        buffers (batch-norm running statistics) get back their values from before the
        batch.

        Args:
            loss: the training loss.
            outputs: the network's output (per cloud ``[B, C]`` or per point ``[N, C]``).
            batch: the packed batch.
            batch_idx: index of the batch in the epoch.
        """
        local = not bool(torch.isfinite(loss.detach()).all())
        if not self._any_rank(local):
            return True
        if local:
            clouds = nonfinite_clouds(outputs, batch) or list(range(batch.num_graphs))
            detail = describe_clouds(
                batch, clouds, self._split_dataset("train"), self._datamodule_attr("root")
            )
            message = self._nonfinite_message(
                f"non-finite training loss ({float(loss.detach())})", "train", batch_idx, detail
            )
        else:
            message = (
                f"another rank got a non-finite loss on its part of train batch {batch_idx}; "
                "its message names the files"
            )
        if self.hparams.get("nonfinite", "raise") == "skip":
            if local:
                warnings.warn(f"skipped: {message}", UserWarning, stacklevel=2)
            return False
        self._put_back_buffers()  # the model in memory stays as before the batch
        raise NonFiniteError(
            message + "\nTo skip such training batches instead, set the task's `nonfinite: skip`."
        )

    def _snapshot_buffers(self) -> None:
        """Keep the network's buffers (batch-norm statistics: a few kB), to undo the update
        of a batch with a non-finite loss."""
        self._saved_buffers = [b.detach().clone() for b in self.model.buffers()]

    def _put_back_buffers(self) -> None:
        saved = getattr(self, "_saved_buffers", None)
        if saved is not None:
            with torch.no_grad():
                for buffer, value in zip(self.model.buffers(), saved):
                    buffer.copy_(value)

    def skip_step(self, loss: Tensor) -> Tensor:
        """What ``training_step`` returns for a skipped batch: ``loss * 0``.

        Lightning refuses a ``None`` step under DDP, and every rank must run its backward
        pass (the gradient all-reduce) anyway; the step is skipped after it instead:
        :meth:`on_before_optimizer_step` drops every gradient, and torch's optimisers leave
        parameters without a gradient untouched (no update, no momentum, no weight decay).
        The network's buffers get back their values from before the batch. With
        ``accumulate_grad_batches > 1`` the whole accumulation window is skipped.
        """
        self._skip_optimizer_step = True
        self._restore_buffers = True
        return loss * 0.0

    @override
    def on_after_backward(self) -> None:
        """Gives the network's buffers back their values from before a skipped batch (after
        the backward pass, which may still read them); subclasses overriding this hook
        call ``super()``."""
        if getattr(self, "_restore_buffers", False):
            self._put_back_buffers()
        self._restore_buffers = False

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drops the gradients of a skipped batch (see :meth:`skip_step`); subclasses
        overriding this hook call ``super()``."""
        if getattr(self, "_skip_optimizer_step", False):
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self._skip_optimizer_step = False

    # --- reproducible resumption ----------------------------------------------------------
    def _run_seed(self) -> int:
        """``seed_everything``'s seed, else one drawn once per run (kept in checkpoints)."""
        if os.environ.get("PL_GLOBAL_SEED") is not None:
            return global_seed()
        if getattr(self, "_drawn_seed", None) is None:
            self._drawn_seed = random.SystemRandom().getrandbits(62)
        return int(self._drawn_seed)

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Re-seed the global generators at the first batch of each epoch (see the class
        docstring) and keep the batch-norm statistics still warming up; subclasses
        overriding this hook call ``super()``."""
        self._norm_warmup.before_step(self.model)
        if batch_idx == 0:
            salted = self._run_seed() ^ _RNG_SALT  # apart from the samplers' seeds
            seed = epoch_sample_seed(salted, self.current_epoch, self.global_rank)
            torch.manual_seed(seed)
            np.random.seed(seed % (1 << 32))
            random.seed(seed)

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Batch-norm warm-up (see the class docstring); subclasses overriding this hook
        call ``super()``."""
        self._norm_warmup.after_step()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drawn = getattr(self, "_drawn_seed", None)
        checkpoint[CHECKPOINT_KEY] = {"run_seed": None if drawn is None else int(drawn)}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drawn = (checkpoint.get(CHECKPOINT_KEY) or {}).get("run_seed")
        if drawn is not None:
            self._drawn_seed = int(drawn)

    # --- forward / optimisation ---------------------------------------------------------
    @override
    def forward(self, batch: Any) -> Tensor:
        """Logits of the network for a packed batch."""
        return self.model(batch)

    @override
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
    @abstractmethod
    def _eval_step(self, batch: Any, split: str) -> None:
        """Loss and metrics of one ``"val"`` or ``"test"`` batch."""

    def _eval_epoch_end(self, split: str) -> None:
        """Per-class values of the ``"val"`` or ``"test"`` epoch (none by default)."""

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.check_inputs(batch, "val", batch_idx)
        self._eval_step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.check_inputs(batch, "test", batch_idx)
        self._eval_step(batch, "test")

    @override
    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    @override
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
