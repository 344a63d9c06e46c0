"""ClassificationTask: one label per cloud (ModelNet, synthetic shapes, a folder of scans)."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_pc.tasks.base import BaseTask


class ClassificationTask(BaseTask):
    """Shape classification: logits ``[B, num_classes]`` against ``batch.y [B]``.

    Logs ``{split}/loss``, ``{split}/acc`` (overall accuracy) and ``{split}/macc`` (mean
    class accuracy) as torchmetrics objects, and per-class accuracy ``{split}/acc_<class>``
    for validation and test at epoch end. ``predict_step`` returns the predicted label of
    each cloud (``[B]``).

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
    """

    def __init__(
        self,
        model: str | nn.Module = "pointnet2_ssg",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 40,
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
    ) -> None:
        super().__init__(model if isinstance(model, nn.Module) else None)

    def configure_metrics(self) -> None:
        n, ignore = self.hparams["num_classes"], self.hparams["ignore_index"]
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro", ignore_index=ignore),
                "macc": MulticlassAccuracy(n, average="macro", ignore_index=ignore),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_class_acc = MulticlassAccuracy(n, average="none", ignore_index=ignore)
        self.test_class_acc = MulticlassAccuracy(n, average="none", ignore_index=ignore)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits = self(batch)  # [B, C]
        y = batch.y.view(-1)
        loss = self.criterion(logits, y)
        size = y.numel()
        self.log("train/loss", loss, batch_size=size, prog_bar=True)
        self.train_metrics(logits.detach(), y)
        self.log_dict(self.train_metrics, batch_size=size, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Any, split: str) -> None:
        logits = self(batch)
        y = batch.y.view(-1)
        size = y.numel()
        self.log(f"{split}/loss", self.criterion(logits, y), batch_size=size)
        metrics = self.val_metrics if split == "val" else self.test_metrics
        metrics.update(logits, y)
        self.log_dict(metrics, batch_size=size, prog_bar=split == "val")
        (self.val_class_acc if split == "val" else self.test_class_acc).update(logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_class_acc(self, split: str) -> None:
        metric = self.val_class_acc if split == "val" else self.test_class_acc
        self._log_vector(f"{split}/acc", metric.compute(), self._datamodule_attr("class_names"))
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_class_acc("val")

    def on_test_epoch_end(self) -> None:
        self._log_class_acc("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted class of each cloud, ``[B]``."""
        return self(batch).argmax(1)
