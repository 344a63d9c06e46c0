"""PartSegmentationTask: per-point part labels of shapes of known category (ShapeNetPart)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from typing_extensions import override

from lightning_pc.data.datasets.shapenetpart import CATEGORY_NAMES, PART_OFFSETS
from lightning_pc.tasks.base import BaseTask
from lightning_pc.tasks.metrics import PartIoU, mask_part_logits


def _check_layout(offsets: list[int], num_classes: int, source: str) -> list[int]:
    """``offsets`` as ints, refused unless they end at ``num_classes`` parts."""
    offsets = [int(o) for o in offsets]
    if not offsets or offsets[-1] != num_classes:
        end = offsets[-1] if offsets else None
        raise ValueError(
            f"{source} end at {end} parts but num_classes is {num_classes}: "
            "pass the data set's part_offsets"
        )
    return offsets


class PartSegmentationTask(BaseTask):
    """Part segmentation: logits ``[N, num_classes]`` (global parts) against ``batch.y [N]``.

    The batch carries ``category [B]``. Predictions are restricted to the parts of each
    shape's own category (the other logits are masked), as in the ShapeNetPart protocol;
    the loss uses the unmasked logits. Logs ``{split}/loss``, ``{split}/instance_miou`` and
    ``{split}/class_miou`` (:class:`~lightning_pc.tasks.metrics.PartIoU`) and, for
    validation and test, per-category mIoU ``{split}/miou_<category>`` at epoch end.
    ``predict_step`` returns the predicted part of every point (``[N]``).

    The category/part layout (``part_offsets``) comes from the data module: its
    ``part_offsets`` attribute (:class:`~lightning_pc.data.ShapeNetPartDataModule` and the
    synthetic shapes have one) is read when the trainer sets the task up, and saved in
    the hyperparameters, so a checkpoint loads without the data module. Without a data
    module (a task built in Python), ``part_offsets=None`` is ShapeNetPart's layout (16
    categories, 50 parts); with another ``num_classes`` the network is built when a data
    module gives the layout. A layout given here must be the data module's.

    Args:
        model: registered network name (e.g. ``"pointnet2_ssg_part_seg"``) or an
            ``nn.Module`` instance (then not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types);
            ``num_categories`` defaults to the number of categories in ``part_offsets``.
        num_classes: number of parts in all (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (normals: 3).
        part_offsets: category ``k`` owns parts ``part_offsets[k]:part_offsets[k + 1]``
            (``None``: the data module's, else ShapeNetPart's 16 categories and 50 parts).
        **kwargs: the arguments every task shares (``label_smoothing``, ``class_weights``,
            ``ignore_index``, ``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``nesterov``, ``scheduler``, ``scheduler_kwargs``, ``min_lr``, ``losses``,
            ``lr_scales``, ``layer_decay``, ``freeze_backbone``, ``head_warmup_epochs``,
            ``nonfinite``): see :class:`~lightning_pc.tasks.BaseTask`.
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
        if part_offsets is not None:
            _check_layout(part_offsets, num_classes, "part_offsets")
        super().__init__(model, model_kwargs, num_classes, in_channels, **kwargs)

    @property
    def part_offsets(self) -> list[int] | None:
        """Category ``k`` owns parts ``part_offsets[k]:part_offsets[k + 1]`` (``None`` until
        a data module gives a layout that ShapeNetPart's default cannot be)."""
        offsets = self.hparams.get("part_offsets")
        if offsets is not None:
            return list(offsets)
        return list(PART_OFFSETS) if self.hparams["num_classes"] == PART_OFFSETS[-1] else None

    @override
    def model_kwargs(self) -> dict[str, Any]:
        kwargs = super().model_kwargs()
        offsets = self.part_offsets
        if offsets is not None:
            kwargs.setdefault("num_categories", len(offsets) - 1)
        return kwargs

    @override
    def configure_models(self) -> None:
        if self.part_offsets is not None:  # else at setup, from the data module's layout
            super().configure_models()

    @override
    def configure_metrics(self) -> None:
        offsets = self.part_offsets
        if offsets is None:  # at setup, from the data module's layout
            return
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        super().configure_metrics()

    @override
    def setup(self, stage: str) -> None:
        """Takes the part layout from the data module (see the class docstring)."""
        super().setup(stage)
        given = self._datamodule_attr("part_offsets")
        offsets = self.part_offsets
        num_classes = self.hparams["num_classes"]
        if given is None:
            if offsets is None:
                raise ValueError(
                    f"PartSegmentationTask with num_classes={num_classes} (not ShapeNetPart's "
                    f"{PART_OFFSETS[-1]} parts) needs the part layout: the data module has no "
                    "part_offsets; pass the task's part_offsets"
                )
            return
        given = _check_layout(given, num_classes, "the data module's part_offsets")
        if offsets is None:
            self.hparams["part_offsets"] = given
            self.configure_models()
            self.configure_metrics()
        elif given != offsets:
            raise ValueError(
                f"the data module's part_offsets {given} differ from the task's {offsets}"
                + ("" if self.hparams.get("part_offsets") is not None else " (ShapeNetPart's)")
                + ": pass the data module's part_offsets to the task"
            )

    def _layout(self) -> list[int]:
        offsets = self.part_offsets
        if offsets is None:
            raise RuntimeError(
                f"PartSegmentationTask with num_classes={self.hparams['num_classes']} and no "
                "part_offsets has no network yet: pass part_offsets, or fit/test it with a "
                "data module that has part_offsets"
            )
        return offsets

    @override
    def forward(self, batch: Any) -> Tensor:
        self._layout()
        return super().forward(batch)

    @override
    def split_metrics(self) -> MetricCollection:
        offsets = self._layout()
        return MetricCollection(
            {
                "instance_miou": PartIoU(offsets, "instance"),
                "class_miou": PartIoU(offsets, "category"),
            }
        )

    @override
    def per_class_metric(self) -> tuple[str, Metric]:
        return "miou", PartIoU(self._layout(), "none")

    @override
    def per_class_names(self) -> list[str] | None:
        names = self._datamodule_attr("category_names")
        if names is None and self.hparams.get("part_offsets") is None:
            names = list(CATEGORY_NAMES)
        return names

    @override
    def predictions(self, logits: Tensor, batch: Any) -> Tensor:
        """The arg max over the parts of each shape's own category."""
        return mask_part_logits(logits, batch.category, batch.batch, self.offsets).argmax(1)

    @override
    def metric_inputs(
        self, preds: Tensor, target: Tensor, batch: Any, split: str
    ) -> tuple[tuple[Tensor, ...], int]:
        """Per-shape IoUs need each point's shape and each shape's category; logged per
        shape."""
        return (preds, target, batch.batch, batch.category), batch.num_graphs
