"""PartSegmentationTask: per-point part labels of shapes of known category (ShapeNetPart)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from typing_extensions import override

from lightning_pc.data.datasets.shapenetpart import CATEGORY_NAMES, PART_OFFSETS
from lightning_pc.tasks.base import BaseTask
from lightning_pc.tasks.metrics import PartIoU, mask_part_logits


class PartSegmentationTask(BaseTask):
    """Part segmentation: logits ``[N, num_classes]`` (global parts) against ``batch.y [N]``.

    The batch carries ``category [B]``. Predictions are restricted to the parts of each
    shape's own category (the other logits are masked), as in the ShapeNetPart protocol;
    the loss uses the unmasked logits. Logs ``{split}/loss``, ``{split}/instance_miou`` and
    ``{split}/class_miou`` (:class:`~lightning_pc.tasks.metrics.PartIoU`) and, for
    validation and test, per-category mIoU ``{split}/miou_<category>`` at epoch end.
    ``predict_step`` returns the predicted part of every point (``[N]``).

    Args:
        model: registered network name (e.g. ``"pointnet2_ssg_part_seg"``) or an
            ``nn.Module`` instance (then not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types);
            ``num_categories`` defaults to the number of categories in ``part_offsets``.
        num_classes: number of parts in all (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (normals: 3).
        part_offsets: category ``k`` owns parts ``part_offsets[k]:part_offsets[k + 1]``
            (``None``: ShapeNetPart's 16 categories and 50 parts).
        **kwargs: the arguments every task shares (``label_smoothing``, ``class_weights``,
            ``ignore_index``, ``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``scheduler``, ``min_lr``, ``nonfinite``): see
            :class:`~lightning_pc.tasks.BaseTask`.
    """

    offsets: Tensor

    def __init__(
        self,
        model: str | nn.Module = "pointnet2_ssg_part_seg",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 50,
        in_channels: int = 0,
        *,
        part_offsets: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        offsets = list(PART_OFFSETS) if part_offsets is None else list(part_offsets)
        if offsets[-1] != num_classes:
            raise ValueError(
                f"part_offsets end at {offsets[-1]} parts but num_classes is {num_classes}: "
                "pass the data set's part_offsets"
            )
        super().__init__(
            model=model,
            model_kwargs=model_kwargs,
            num_classes=num_classes,
            in_channels=in_channels,
            **kwargs,
        )

    @property
    def part_offsets(self) -> list[int]:
        """Category ``k`` owns parts ``part_offsets[k]:part_offsets[k + 1]``."""
        offsets = self.hparams.get("part_offsets")
        return list(PART_OFFSETS) if offsets is None else list(offsets)

    @override
    def model_kwargs(self) -> dict[str, Any]:
        kwargs = super().model_kwargs()
        kwargs.setdefault("num_categories", len(self.part_offsets) - 1)
        return kwargs

    @override
    def configure_metrics(self) -> None:
        offsets = self.part_offsets
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        metrics = MetricCollection(
            {
                "instance_miou": PartIoU(offsets, "instance"),
                "class_miou": PartIoU(offsets, "category"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_category_miou = PartIoU(offsets, "none")
        self.test_category_miou = PartIoU(offsets, "none")

    def _predict(self, logits: Tensor, batch: Any) -> Tensor:
        return mask_part_logits(logits, batch.category, batch.batch, self.offsets).argmax(1)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        skip = not self.check_inputs(batch, "train", batch_idx)  # nonfinite="skip"
        self._snapshot_buffers()
        logits = self(batch)  # [N, P]
        y = batch.y.view(-1)
        loss = self.criterion(logits, y)
        if skip or not self.check_loss(loss, logits, batch, batch_idx):
            return self.skip_step(loss)
        size = y.numel()
        self.log("train/loss", loss, batch_size=size, prog_bar=True)
        pred = self._predict(logits.detach(), batch)
        self.train_metrics(pred, y, batch.batch, batch.category)
        self.log_dict(self.train_metrics, batch_size=batch.num_graphs, on_step=False, on_epoch=True)
        return loss

    @override
    def _eval_step(self, batch: Any, split: str) -> None:
        logits = self(batch)
        y = batch.y.view(-1)
        self._log_eval_loss(split, self.criterion(logits, y), y.numel())
        pred = self._predict(logits, batch)
        metrics = self.val_metrics if split == "val" else self.test_metrics
        metrics.update(pred, y, batch.batch, batch.category)
        self.log_dict(metrics, batch_size=batch.num_graphs, prog_bar=split == "val")
        per_category = self.val_category_miou if split == "val" else self.test_category_miou
        per_category.update(pred, y, batch.batch, batch.category)

    @override
    def _eval_epoch_end(self, split: str) -> None:
        metric = self.val_category_miou if split == "val" else self.test_category_miou
        values = metric.compute()
        metric.reset()
        names = self._datamodule_attr("category_names")
        if names is None and self.hparams.get("part_offsets") is None:
            names = list(CATEGORY_NAMES)
        if names is None or len(names) != values.numel():
            names = [str(i) for i in range(values.numel())]
        for name, value in zip(names, values):
            if not torch.isnan(value):  # categories without shapes in this split
                self.log(f"{split}/miou_{name}", value, sync_dist=True)

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted global part of every point, ``[N]`` (restricted to its category)."""
        self.check_inputs(batch, "predict", batch_idx)
        return self._predict(self(batch), batch)
