"""BaseTask: the template every point-cloud task fills in.

The shape follows torchgeo: ``__init__`` saves the hyperparameters (plain YAML types, so a
checkpoint loads with ``torch.load(weights_only=True)``), then calls the overridable
:meth:`BaseTask.configure_models`, :meth:`BaseTask.configure_losses` and
:meth:`BaseTask.configure_metrics` (not ``configure_model``, which is a Lightning hook).

The training, validation, test and predict steps are written once, here. A task says
what the target of a batch is (:meth:`~BaseTask.target`), how logits become predictions
(:meth:`~BaseTask.predictions`), which metrics apply (:meth:`~BaseTask.split_metrics`, one
collection cloned per split, and :meth:`~BaseTask.per_class_metric`) and what they read
(:meth:`~BaseTask.metric_inputs`). The non-finite guard, the epoch seeding for exact
resumption and the batch-norm warm-up are components the base holds and calls.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from typing_extensions import override

from lightning_pc.models import create_model
from lightning_pc.nn.norm_warmup import BatchNormWarmup
from lightning_pc.tasks.guards import NonFinite, NonFiniteGuard
from lightning_pc.tasks.losses import build_loss
from lightning_pc.tasks.optim import build_scheduler, param_groups
from lightning_pc.tasks.precision import warn_if_slow_precision
from lightning_pc.tasks.seeding import EpochSeeding

#: key of the task's own entries in a checkpoint
CHECKPOINT_KEY = "lightning_pc"
#: the splits with a metric collection each
SPLITS = ("train", "val", "test")


class BaseTask(L.LightningModule, metaclass=ABCMeta):
    """Base class of the tasks: network, cross-entropy, optimiser, schedule and the steps.

    The arguments every task shares are declared here; a subclass declares its own (and
    those whose defaults differ: ``model``, ``num_classes``, ``in_channels``) and passes
    the rest on with ``**kwargs`` (LightningCLI follows the ``**kwargs`` and lists these in
    ``--help`` and saved configs). Every ``__init__`` argument is saved with
    ``save_hyperparameters`` except ``model`` when it is an ``nn.Module`` instance (pass it
    again to ``load_from_checkpoint`` then).

    A subclass implements :meth:`split_metrics` and, where the defaults do not fit,
    :meth:`target` (``batch.y``), :meth:`predictions` (arg max of the logits),
    :meth:`metric_inputs` (``(predictions, target)``, logged with the number of targets),
    :meth:`per_class_metric` (none), :meth:`eval_logits` (the network's logits) and
    :meth:`predict_output` (the predictions). Every step then logs ``{split}/loss`` (the
    loss is the cross-entropy of the logits and the target), the split's metrics under
    ``{split}/<name>``, and for validation and test at epoch end one value per class
    ``{split}/<per-class name>_<class>``.

    The default optimiser (``optimizer``: ``"adamw"``, ``"adam"`` or ``"sgd"``) and schedule
    (``scheduler``: ``"cosine"`` from ``lr`` to ``min_lr`` over ``max_epochs``, or over the
    estimated steps when only ``max_steps`` is set; ``"onecycle"`` and ``"poly"`` stepped at
    every optimiser step as Pointcept's; ``"step"`` decay per epoch with a floor, as the
    PointNet++ release; ``"none"``) come from the task's hyperparameters;
    LightningCLI's ``--optimizer`` / ``--lr_scheduler`` replace them (then ``lr_scales``,
    ``layer_decay`` and ``scheduler_kwargs`` are refused: they need the task's own).
    Parameter groups (:mod:`lightning_pc.tasks.optim`): ``lr_scales`` multiplies the
    learning rate of the parameters matching a keyword (Pointcept's ``param_dicts``, e.g.
    ``{block: 0.1}``), ``layer_decay`` decays it layer by layer down the backbone (head 1,
    deepest backbone layer ``layer_decay``, stem ``layer_decay ** L``). Fine-tuning a
    network with a ``backbone`` and a ``head``
    (:class:`~lightning_pc.models.heads.PointNetwork`): ``freeze_backbone`` trains the head
    alone (linear probing: the backbone stays in evaluation mode, without gradients, and out
    of the optimiser), ``head_warmup_epochs`` freezes it so for the first epochs only, then
    trains it with its own learning rates (its parameters are in the optimiser from the
    start, untouched while frozen; the state follows the epoch, so a resumed run freezes
    or not as the uninterrupted one). The loss is cross-entropy, or the weighted sum
    ``losses`` names (:mod:`lightning_pc.tasks.losses`: ``cross_entropy``, ``lovasz``).

    In YAML (Pointcept's PTv3 S3DIS recipe)::

        model:
          class_path: lightning_pc.tasks.SemanticSegmentationTask
          init_args:
            optimizer: adamw
            lr: 0.006
            weight_decay: 0.05
            lr_scales: {block: 0.1}
            scheduler: onecycle
            scheduler_kwargs: {pct_start: 0.05, div_factor: 10.0, final_div_factor: 1000.0}
            losses: [{name: cross_entropy, weight: 1.0}, {name: lovasz, weight: 1.0}]

    Components (subclasses overriding the hooks that call them call ``super()``):

    - ``nonfinite_guard``, a :class:`~lightning_pc.tasks.guards.NonFiniteGuard`: every
      training, validation, test and predict batch is checked for NaN or infinite ``pos``
      (and ``x`` when the network reads features) before the forward pass, and every
      training loss after it. A bad batch raises
      :class:`~lightning_pc.tasks.guards.NonFiniteError` naming the source file of each
      offending cloud; with ``nonfinite="skip"`` a bad training batch is skipped instead
      (no optimiser step, batch-norm statistics left as they were) with a warning naming
      them, the ranks agreeing on every skip under DDP. Evaluation and prediction always
      raise: their results would otherwise silently leave out clouds.
    - ``epoch_seeding``, an :class:`~lightning_pc.tasks.seeding.EpochSeeding`: at the first
      batch of every training epoch the global torch, numpy and Python generators are
      re-seeded from (run seed, epoch, global rank), so ``fit --ckpt_path`` from an
      end-of-epoch checkpoint continues exactly as the uninterrupted run.
    - ``norm_warmup``, a :class:`~lightning_pc.nn.norm_warmup.BatchNormWarmup`: the first
      training step sets the running statistics of every batch-norm layer to its batch
      statistics, and the next ones follow them with a momentum from 0.5 down to the
      layer's own (over 46 steps for 0.1), so evaluation is right from the first epoch.

    Args:
        model: registered network name (see :func:`~lightning_pc.models.list_models`) or an
            ``nn.Module`` instance (then not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (0: coordinates only).
        label_smoothing: cross-entropy label smoothing (DGCNN trains with 0.2).
        class_weights: per-class loss weights (``None``: uniform).
        ignore_index: target value excluded from the loss and the metrics.
        optimizer: default optimiser, ``"adamw"``, ``"adam"`` (weight decay as an L2 term,
            as the PointNet++ release) or ``"sgd"``.
        lr: learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        scheduler: ``"cosine"`` (from ``lr`` to ``min_lr``), ``"onecycle"`` (PyTorch's
            ``OneCycleLR`` per optimiser step, peaking at each group's learning rate),
            ``"poly"`` (Pointcept's ``PolyLR`` per optimiser step), ``"step"`` (times
            ``gamma`` every ``step_size`` epochs, never below ``min_lr``) or ``"none"``.
        min_lr: final learning rate of the cosine schedule, floor of the step schedule
            (times each group's scale).
        nonfinite: a training batch with NaN/inf inputs or loss: ``"raise"`` an error
            naming its source files, or ``"skip"`` it with a warning naming them.
        nesterov: Nesterov momentum for SGD (Pointcept's SpUNet recipes).
        scheduler_kwargs: arguments of the ``onecycle`` schedule (``pct_start``,
            ``div_factor``, ``final_div_factor``, ``anneal_strategy``, ``cycle_momentum``,
            ``base_momentum``, ``max_momentum``, ``three_phase``; defaults: Pointcept's PTv3
            values, :data:`~lightning_pc.tasks.optim.ONECYCLE_DEFAULTS`), of ``poly``
            (``power``, default 0.9) or of ``step`` (``step_size`` in epochs, ``gamma``).
        losses: the loss as a weighted sum, ``[{name: cross_entropy, weight: 1.0},
            {name: lovasz, weight: 1.0}]`` (``None``: cross-entropy alone).
        lr_scales: ``{keyword: scale}`` (or ``{keyword: {lr_scale, weight_decay}}``):
            learning-rate multiplier of the parameters whose name contains the keyword or
            that a module of that class name holds (first match wins), as Pointcept's
            ``param_dicts``.
        layer_decay: layer-wise learning-rate decay over the backbone's layers (``None``:
            none); see :func:`~lightning_pc.tasks.optim.layer_ids` for the layers.
        freeze_backbone: linear probing: the backbone frozen (evaluation mode, no gradients,
            not in the optimiser), the head trained.
        head_warmup_epochs: train the head alone for this many epochs, the backbone frozen
            as with ``freeze_backbone``, then everything.
        pretrained: weights to start from: ``true`` for the pretrained card named by
            ``model`` (:func:`~lightning_pc.models.pretrained.list_pretrained`), or a
            checkpoint path (see :func:`~lightning_pc.models.create_model`). Checkpoints of
            this task save ``false`` here: they hold the weights themselves.
    """

    model: nn.Module
    train_metrics: MetricCollection
    val_metrics: MetricCollection
    test_metrics: MetricCollection
    per_class_name: str

    def __init__(
        self,
        model: str | nn.Module | None = None,
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        ignore_index: int = -100,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: Literal["cosine", "onecycle", "poly", "step", "none"] = "cosine",
        min_lr: float = 0.0,
        nonfinite: NonFinite = "raise",
        nesterov: bool = False,
        scheduler_kwargs: dict[str, Any] | None = None,
        losses: list[dict[str, Any] | str] | None = None,
        lr_scales: dict[str, Any] | None = None,
        layer_decay: float | None = None,
        freeze_backbone: bool = False,
        head_warmup_epochs: int = 0,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__()
        if head_warmup_epochs < 0:
            raise ValueError(f"head_warmup_epochs must be >= 0, got {head_warmup_epochs}")
        if freeze_backbone and head_warmup_epochs:
            raise ValueError(
                "freeze_backbone freezes the backbone for the whole run: "
                "head_warmup_epochs would never unfreeze it; set one of them"
            )
        if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        given = isinstance(model, nn.Module)
        self.save_hyperparameters(ignore=["model"] if given else None)
        hp = self.hparams
        self.nonfinite_guard = NonFiniteGuard(
            hp.get("nonfinite", "raise"), check_features=bool(hp.get("in_channels", 0))
        )
        self.epoch_seeding = EpochSeeding()
        self.norm_warmup = BatchNormWarmup()
        # a backbone frozen for a warm-up under a parallel strategy: see configure_model
        self._drop_backbone_grads = False
        if given:
            self.model = model  # type: ignore[assignment]
        self.configure_models()
        self._freeze_for_epoch(0)
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
            name,
            num_classes=self.hparams["num_classes"],
            pretrained=self.hparams.get("pretrained") or False,
            **self.model_kwargs(),
        )

    def configure_losses(self) -> None:
        """``self.criterion``: cross-entropy with ``class_weights``, ``ignore_index`` and
        ``label_smoothing``, or the weighted sum ``losses`` names
        (:func:`~lightning_pc.tasks.losses.build_loss`)."""
        hp = self.hparams
        self.criterion = build_loss(
            hp.get("losses"),
            hp["num_classes"],
            hp["ignore_index"],
            hp.get("class_weights"),
            hp["label_smoothing"],
        )

    def configure_metrics(self) -> None:
        """One :meth:`split_metrics` collection per split (``train_metrics``, ``val_metrics``,
        ``test_metrics``, names prefixed ``{split}/``) and one :meth:`per_class_metric` for
        validation and test (``val_per_class``, ``test_per_class``)."""
        metrics = self.split_metrics()
        for split in SPLITS:
            setattr(self, f"{split}_metrics", metrics.clone(prefix=f"{split}/"))
        per_class = self.per_class_metric()
        if per_class is not None:
            self.per_class_name, metric = per_class
            self.val_per_class = metric.clone()
            self.test_per_class = metric.clone()

    # --- what a task says ---------------------------------------------------------------
    @abstractmethod
    def split_metrics(self) -> MetricCollection:
        """The metrics of one split, by unprefixed name (cloned per split)."""

    def per_class_metric(self) -> tuple[str, Metric] | None:
        """A metric with one value per class and the name its values are logged under
        (``{split}/{name}_<class>``), for validation and test; ``None`` for none."""
        return None

    def per_class_names(self) -> list[str] | None:
        """Names of the :meth:`per_class_metric` values (the data module's ``class_names``);
        indices are used where there are none, or not as many."""
        return self._datamodule_attr("class_names")

    def metric_classes(self) -> dict[str, Any]:
        """``num_classes`` and ``ignore_index`` for torchmetrics' multiclass metrics."""
        return {
            "num_classes": self.hparams["num_classes"],
            "ignore_index": self.hparams["ignore_index"],
        }

    def target(self, batch: Any) -> Tensor:
        """The labels the loss and the metrics compare with: ``batch.y``, flattened."""
        return batch.y.view(-1)

    def predictions(self, logits: Tensor, batch: Any) -> Tensor:
        """How the network's logits become predictions: the arg max over the classes."""
        return logits.argmax(1)

    def metric_inputs(
        self, preds: Tensor, target: Tensor, batch: Any, split: str
    ) -> tuple[tuple[Tensor, ...], int]:
        """The arguments of the metrics' ``update`` for a batch of ``split``, and the batch
        size they are logged with: ``(preds, target)`` and the number of targets."""
        return (preds, target), target.numel()

    def eval_logits(self, batch: Any) -> Tensor:
        """The logits validation, test and predict use: the network's."""
        return self(batch)

    def predict_output(self, batch: Any) -> Tensor:
        """What ``predict`` returns for a batch: the :meth:`predictions` of its
        :meth:`eval_logits`."""
        return self.predictions(self.eval_logits(batch), batch)

    # --- Lightning hooks ------------------------------------------------------------------
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
        if stage == "fit" and "configure_optimizers" in vars(self):
            self._refuse_replaced_optimizer()

    def _refuse_replaced_optimizer(self) -> None:
        """LightningCLI's ``optimizer:`` / ``lr_scheduler:`` sections replace
        :meth:`configure_optimizers`: refuse the task's options that would then be ignored."""
        hp = self.hparams
        ignored = [
            name
            for name, unset in (
                ("lr_scales", None),
                ("layer_decay", None),
                ("scheduler_kwargs", None),
            )
            if hp.get(name) != unset
        ]
        if hp.get("scheduler") in ("onecycle", "poly"):
            ignored.append(f"scheduler={hp['scheduler']}")
        if ignored:
            raise ValueError(
                f"the config's optimizer:/lr_scheduler: sections replace the task's optimiser, "
                f"so model.init_args {', '.join(ignored)} would be ignored: remove those "
                "sections and set model.init_args.optimizer / lr / scheduler instead"
            )

    @override
    def forward(self, batch: Any) -> Tensor:
        """Logits of the network for a packed batch."""
        return self.model(batch)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        guard = self.nonfinite_guard
        skip = not guard.check_inputs(self, batch, "train", batch_idx)  # nonfinite="skip"
        guard.snapshot(self.model)
        logits = self(batch)
        target = self.target(batch)
        loss = self.criterion(logits, target)
        if skip or not guard.check_loss(self, loss, logits, batch, batch_idx):
            return guard.skip(loss)
        self.log("train/loss", loss, batch_size=target.numel(), prog_bar=True)
        preds = self.predictions(logits.detach(), batch)
        inputs, size = self.metric_inputs(preds, target, batch, "train")
        self.train_metrics(*inputs)
        self.log_dict(self.train_metrics, batch_size=size, on_step=False, on_epoch=True)
        return loss

    # validation and test share one step and one epoch end, told apart by `split`
    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_per_class("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_per_class("test")

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        self.nonfinite_guard.check_inputs(self, batch, "predict", batch_idx)
        return self.predict_output(batch)

    def backbone_frozen_at(self, epoch: int) -> bool:
        """Whether the backbone is frozen during training epoch ``epoch`` (``freeze_backbone``,
        or an epoch of the head warm-up)."""
        hp = self.hparams
        return bool(hp.get("freeze_backbone")) or epoch < int(hp.get("head_warmup_epochs") or 0)

    def _freeze_for_epoch(self, epoch: int) -> None:
        """Freeze or unfreeze the backbone as :meth:`backbone_frozen_at` says (nothing to do
        when neither ``freeze_backbone`` nor ``head_warmup_epochs`` is set)."""
        hp = self.hparams
        if not hp.get("freeze_backbone") and not hp.get("head_warmup_epochs"):
            return
        model = getattr(self, "model", None)
        if model is None:  # built at setup (part segmentation without a layout yet)
            return
        freeze = getattr(model, "freeze_backbone", None)
        if not callable(freeze):
            raise ValueError(
                "freeze_backbone and head_warmup_epochs need a network with a backbone and "
                f"a head (PointNetwork, every registered one); {type(model).__name__} has "
                "no freeze_backbone()"
            )
        frozen = self.backbone_frozen_at(epoch)
        if bool(getattr(model, "backbone_frozen", False)) != frozen:
            freeze(frozen)
        if frozen and self._drop_backbone_grads:
            # distributed warm-up: the parameters keep requiring gradients (the wrapper
            # registered them so); on_after_backward drops them while frozen
            model.backbone.requires_grad_(True)

    @override
    def configure_model(self) -> None:
        """Settles the backbone's frozen state before the strategy wraps the network.

        A distributed wrapper (DDP, FSDP) synchronises the parameters that require
        gradients when it wraps the network, and only those. A backbone frozen for good
        (``freeze_backbone``) stays out. One frozen for a warm-up must be in, or its
        gradients would never be synchronised once it trains: under a parallel strategy its
        parameters keep requiring gradients through the warm-up, its gradients are computed
        and dropped after every backward pass (no update, no optimiser state; the batch
        norms stay in evaluation mode), so the ranks stay equal.
        """
        trainer = self._trainer
        strategy = getattr(trainer, "strategy", None) if trainer is not None else None
        self._drop_backbone_grads = bool(self.hparams.get("head_warmup_epochs")) and isinstance(
            strategy, ParallelStrategy
        )
        self._freeze_for_epoch(self.current_epoch if trainer is not None else 0)

    @override
    def on_train_epoch_start(self) -> None:
        """Freezes or unfreezes the backbone for this epoch (``freeze_backbone``,
        ``head_warmup_epochs``); subclasses overriding this hook call ``super()``."""
        self._freeze_for_epoch(self.current_epoch)

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Keeps the batch-norm statistics still warming up and, at the first batch of each
        epoch, re-seeds the global generators (see the class docstring); subclasses
        overriding this hook call ``super()``."""
        self.norm_warmup.before_step(self.model)
        if batch_idx == 0:
            self.epoch_seeding.seed_epoch(self.current_epoch, self.global_rank)

    @override
    def on_after_backward(self) -> None:
        """Gives the network's buffers back their values from before a skipped batch, and
        drops the gradients of a backbone frozen for a distributed warm-up (see
        :meth:`configure_model`); subclasses overriding this hook call ``super()``."""
        self.nonfinite_guard.after_backward()
        if self._drop_backbone_grads and getattr(self.model, "backbone_frozen", False):
            backbone: nn.Module = self.model.backbone  # type: ignore[assignment]
            for p in backbone.parameters():
                p.grad = None

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drops the gradients of a skipped batch; subclasses overriding this hook call
        ``super()``."""
        self.nonfinite_guard.before_optimizer_step(optimizer)

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Batch-norm warm-up (see the class docstring); subclasses overriding this hook
        call ``super()``."""
        self.norm_warmup.after_step()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.epoch_seeding.state_dict()
        if checkpoint.get("hyper_parameters", {}).get("pretrained"):
            checkpoint["hyper_parameters"]["pretrained"] = False  # the weights are here

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.epoch_seeding.load_state_dict(checkpoint.get(CHECKPOINT_KEY) or {})

    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        """The parameter groups of the default optimiser: ``lr_scales`` and ``layer_decay``
        (:func:`~lightning_pc.tasks.optim.param_groups`), the backbone left out with
        ``freeze_backbone`` and kept (frozen for now) with ``head_warmup_epochs``."""
        hp = self.hparams
        fine_tune = hp.get("freeze_backbone") or hp.get("head_warmup_epochs")
        backbone = ("model.backbone.",) if fine_tune else ()
        return param_groups(
            self,
            hp["lr"],
            hp["weight_decay"],
            lr_scales=hp.get("lr_scales"),
            layer_decay=hp.get("layer_decay"),
            exclude=backbone if hp.get("freeze_backbone") else (),
            keep_frozen=backbone if hp.get("head_warmup_epochs") else (),
        )

    @override
    def configure_optimizers(self) -> Any:
        """AdamW or SGD over :meth:`optimizer_param_groups`, with the schedule ``scheduler``
        names (see the class docstring and :mod:`lightning_pc.tasks.optim`)."""
        hp = self.hparams
        groups = self.optimizer_param_groups()
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                groups,
                lr=hp["lr"],
                momentum=hp["momentum"],
                weight_decay=hp["weight_decay"],
                nesterov=bool(hp.get("nesterov", False)),
            )
        elif hp["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=hp["lr"], weight_decay=hp["weight_decay"])
        elif hp["optimizer"] == "adam":
            optimizer = torch.optim.Adam(groups, lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            raise ValueError(f"unknown optimizer {hp['optimizer']!r}")
        trainer = self._trainer
        scheduler = build_scheduler(
            optimizer,
            hp["scheduler"],
            total_steps=lambda: (
                float(trainer.estimated_stepping_batches) if trainer is not None else float("inf")
            ),
            max_epochs=trainer.max_epochs if trainer is not None else None,
            min_lr=hp["min_lr"],
            scheduler_kwargs=hp.get("scheduler_kwargs"),
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # --- the shared steps' parts ------------------------------------------------------------
    def _eval_step(self, batch: Any, batch_idx: int, split: str) -> None:
        """Loss and metrics of one ``"val"`` or ``"test"`` batch."""
        self.nonfinite_guard.check_inputs(self, batch, split, batch_idx)
        logits = self.eval_logits(batch)
        target = self.target(batch)
        loss = self.criterion(logits, target)
        # the epoch's mean over samples (clouds or points)
        mean_loss: MeanMetric = getattr(self, f"{split}_loss")
        mean_loss.update(loss.detach(), target.numel())
        self.log(f"{split}/loss", mean_loss, batch_size=target.numel())
        inputs, size = self.metric_inputs(self.predictions(logits, batch), target, batch, split)
        metrics: MetricCollection = getattr(self, f"{split}_metrics")
        metrics.update(*inputs)
        self.log_dict(metrics, batch_size=size, prog_bar=split == "val")
        per_class: Metric | None = getattr(self, f"{split}_per_class", None)
        if per_class is not None:
            per_class.update(*inputs)

    def _log_per_class(self, split: str) -> None:
        """Log the ``split``'s per-class values, one scalar per class (none for a class
        without samples: a ``nan`` value)."""
        metric: Metric | None = getattr(self, f"{split}_per_class", None)
        if metric is None:
            return
        values = metric.compute()
        metric.reset()
        names = self.per_class_names()
        if names is None or len(names) != values.numel():
            names = [str(i) for i in range(values.numel())]
        for name, value in zip(names, values):
            if not torch.isnan(value):
                # identical on every rank (compute() synced): sync_dist only averages equals
                self.log(f"{split}/{self.per_class_name}_{name}", value, sync_dist=True)

    def _datamodule_attr(self, name: str) -> Any:
        """An attribute of the attached datamodule (``None`` without one)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        return getattr(datamodule, name, None)
