"""SemanticSegmentationTask: per-point labels of scenes (S3DIS), scored at full resolution."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from typing_extensions import override

from lightning_pc.tasks.base import BaseTask


def full_resolution(pred: Tensor, batch: Any) -> tuple[Tensor, Tensor | None]:
    """Predictions and labels of every original point where the batch allows it.

    When the batch carries ``inverse_index [N_full]`` (each original point -> its kept
    point, offset per cloud as ``collate`` does), the predictions are ``pred[inverse_index]``
    and the labels ``y_full``; otherwise ``pred`` and ``batch.y``. The labels are ``None``
    when the batch has none (unlabelled clouds, ``predict``).

    Args:
        pred: ``[N]`` predictions (or ``[N, C]`` logits) on the points of the batch.
        batch: the packed batch.
    """
    inverse = getattr(batch, "inverse_index", None)
    if inverse is not None:
        y_full = getattr(batch, "y_full", None)
        return pred[inverse.view(-1)], None if y_full is None else y_full.view(-1)
    y = getattr(batch, "y", None)
    return pred, None if y is None else y.view(-1)


class SemanticSegmentationTask(BaseTask):
    """Semantic segmentation: logits ``[N, num_classes]`` against ``batch.y [N]``.

    The loss is computed on the points the network sees (e.g. voxel representatives);
    validation and test metrics on every original point when the batch carries
    ``inverse_index`` / ``y_full`` (S3DIS whole rooms). Logs ``{split}/loss``,
    ``{split}/miou``, ``{split}/oa`` (torchmetrics objects) and, for validation and test,
    per-class IoU ``{split}/iou_<class>`` at epoch end. These score each voxel's kept point
    and copy its prediction to the voxel's other points; for Pointcept's "precise
    evaluation" (overlapping fragments, every point seen by the network, test-time
    augmentation, votes summed on every original point), add the
    :class:`~lightning_pc.callbacks.PreciseSceneEvaluation` callback, which logs
    ``{split}/miou_precise`` beside ``{split}/miou``. ``predict_step`` returns the
    predicted label of every point (``[N_full]`` when the batch carries ``inverse_index``,
    else ``[N]``; ``batch.batch`` tells the clouds apart in the latter case).

    Args:
        model: registered network name (e.g. ``"pointnet2_ssg_sem_seg"``) or an
            ``nn.Module`` instance (then not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (RGB: 3).
        **kwargs: the arguments every task shares (``label_smoothing``, ``class_weights``,
            ``ignore_index``, ``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``nesterov``, ``scheduler``, ``scheduler_kwargs``, ``min_lr``, ``losses``,
            ``lr_scales``, ``layer_decay``, ``freeze_backbone``, ``head_warmup_epochs``,
            ``nonfinite``): see :class:`~lightning_pc.tasks.BaseTask`.
    """

    def __init__(
        self,
        model: str | nn.Module = "pointnet2_ssg_sem_seg",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 13,
        in_channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_kwargs, num_classes, in_channels, **kwargs)

    @override
    def split_metrics(self) -> MetricCollection:
        classes = self.metric_classes()
        return MetricCollection(
            {
                "miou": MulticlassJaccardIndex(average="macro", **classes),
                "oa": MulticlassAccuracy(average="micro", **classes),
            }
        )

    @override
    def per_class_metric(self) -> tuple[str, Metric]:
        return "iou", MulticlassJaccardIndex(average="none", **self.metric_classes())

    @override
    def metric_inputs(
        self, preds: Tensor, target: Tensor, batch: Any, split: str
    ) -> tuple[tuple[Tensor, ...], int]:
        """Training scores the points the network sees; validation and test every original
        point where the batch carries ``inverse_index`` and ``y_full``."""
        if split != "train":
            full, full_target = full_resolution(preds, batch)
            if full_target is not None:  # inverse_index without y_full: the kept points
                preds, target = full, full_target
        return (preds, target), target.numel()

    def class_probabilities(self, batch: Any) -> Tensor:
        """Class probabilities ``[N, num_classes]`` (float32 softmax of the logits) of the
        points of ``batch``: what fragments vote with, in ``predict`` on whole scans and in
        :class:`~lightning_pc.callbacks.PreciseSceneEvaluation`. Override it to change the
        votes (e.g. a temperature)."""
        return self(batch).float().softmax(1)

    @override
    def predict_output(self, batch: Any) -> Tensor:
        """Predicted label of every point (of every original point where possible).

        Fragments of whole scans (batches with ``source_rows``, from
        :class:`~lightning_pc.data.modules.predict.PredictScenesDataModule`) get class
        probabilities instead, ``[M, num_classes]`` float16 for the ``M`` scan points they
        cover, which :class:`~lightning_pc.callbacks.prediction_writer.ScenePredictionWriter`
        votes onto the scans' points. Labels are never needed.
        """
        if getattr(batch, "source_rows", None) is not None:
            probs, _ = full_resolution(self.class_probabilities(batch), batch)
            return probs.half()
        pred, _ = full_resolution(self.predictions(self.eval_logits(batch), batch), batch)
        return pred
