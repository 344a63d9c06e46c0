"""ClassificationTask: one label per cloud (ModelNet, synthetic shapes, a folder of scans)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_pc.data.collate import collate
from lightning_pc.data.transforms import Compose, TransformSpec, build_transforms
from lightning_pc.tasks.base import BaseTask

#: Test-time augmentation used when ``tta_transforms`` is ``None``: the anisotropic scaling
#: U(0.8, 1.25) of the voting recipes of PointNet++/DGCNN follow-ups (e.g. PAConv).
DEFAULT_TTA_TRANSFORMS: list[TransformSpec] = [
    {"class_path": "RandomScale", "init_args": {"low": 0.8, "high": 1.25, "anisotropic": True}}
]


def _cloud_seed(pos: Tensor, seed: int, vote: int) -> int:
    """A 63-bit seed from a cloud's coordinates (bytes), the TTA seed and the vote index.

    Keyed on the cloud's content, not on its place in a batch or on the rank, so a cloud
    gets the same augmented copies however the data is batched or split across processes.
    """
    digest = hashlib.blake2b(pos.detach().cpu().contiguous().numpy().tobytes(), digest_size=8)
    digest.update(f"{seed}/{vote}".encode())
    return int.from_bytes(digest.digest(), "little") >> 1


class ClassificationTask(BaseTask):
    """Shape classification: logits ``[B, num_classes]`` against ``batch.y [B]``.

    Logs ``{split}/loss``, ``{split}/acc`` (overall accuracy) and ``{split}/macc`` (mean
    class accuracy) as torchmetrics objects, and per-class accuracy ``{split}/acc_<class>``
    for validation and test at epoch end. ``predict_step`` returns the class probabilities
    of each cloud (``[B, num_classes]``). Validation, test and predict average the logits
    of ``tta_votes`` augmented copies of each cloud (test-time augmentation voting; off by
    default).

    Args:
        model: registered classification network (e.g. ``"pointnet2_ssg"``, ``"dgcnn"``; see
            :func:`~lightning_pc.models.list_models`) or an ``nn.Module`` instance (then
            not saved in the hyperparameters).
        model_kwargs: keyword arguments of the network's builder (plain YAML types).
        num_classes: number of shape classes (linked from ``data.num_classes`` by the CLI).
        in_channels: per-point input features in ``batch.x`` (0: coordinates only).
        tta_votes: test-time augmentation in validation, test and predict: the logits are
            the mean of the network's logits on ``tta_votes`` augmented copies of each
            cloud (``1``: plain evaluation, no augmentation).
        tta_transforms: transform specs of the copies, as the data modules' (``class_path``
            / ``init_args`` dicts or class names; ``None``: :data:`DEFAULT_TTA_TRANSFORMS`).
        tta_seed: seed of the copies. Copy ``v`` of a cloud is drawn from a generator
            seeded by ``(tta_seed, v, the cloud's coordinates)``, so votes are reproducible
            and independent of batching, worker and rank.
        **kwargs: the arguments every task shares (``label_smoothing``, ``class_weights``,
            ``ignore_index``, ``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``nesterov``, ``scheduler``, ``scheduler_kwargs``, ``min_lr``, ``losses``,
            ``lr_scales``, ``layer_decay``, ``freeze_backbone``, ``head_warmup_epochs``,
            ``nonfinite``): see :class:`~lightning_pc.tasks.BaseTask`.
    """

    def __init__(
        self,
        model: str | nn.Module = "pointnet2_ssg",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 40,
        in_channels: int = 0,
        *,
        tta_votes: int = 1,
        tta_transforms: list[TransformSpec] | None = None,
        tta_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if tta_votes < 1:
            raise ValueError(f"tta_votes must be >= 1, got {tta_votes}")
        super().__init__(model, model_kwargs, num_classes, in_channels, **kwargs)
        specs = DEFAULT_TTA_TRANSFORMS if tta_transforms is None else tta_transforms
        self.tta_transform: Compose | None = (
            build_transforms(specs, "tta_transforms") if specs else None
        )

    # --- test-time augmentation -----------------------------------------------------------
    def augmented_copies(self, batch: Any) -> list[Any]:
        """The ``tta_votes`` augmented copies of a batch (``[batch]`` when ``tta_votes == 1``).

        Each cloud is transformed on its own (``tta_transforms``, seeded as described in the
        class docstring) and the copies are re-packed with
        :func:`~lightning_pc.data.collate` and moved to the batch's device.

        Args:
            batch: a packed batch.

        Returns:
            One packed batch per vote.
        """
        votes = int(self.hparams.get("tta_votes", 1))
        if votes == 1 or self.tta_transform is None:
            return [batch] * votes
        device = batch.pos.device
        clouds = [cloud.cpu() for cloud in batch.to_data_list()]
        seed = int(self.hparams.get("tta_seed", 0))
        generator = torch.Generator()
        copies = []
        for vote in range(votes):
            augmented = []
            for cloud in clouds:
                generator.manual_seed(_cloud_seed(cloud.pos, seed, vote))
                augmented.append(self.tta_transform(cloud.clone(), generator))
            copies.append(collate(augmented).to(device))
        return copies

    @override
    def eval_logits(self, batch: Any) -> Tensor:
        """Logits ``[B, num_classes]`` for evaluation: the mean over the augmented copies."""
        copies = self.augmented_copies(batch)
        if len(copies) == 1:
            return self(batch)
        return torch.stack([self(copy) for copy in copies]).mean(0)

    @override
    def split_metrics(self) -> MetricCollection:
        classes = self.metric_classes()
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(average="micro", **classes),
                "macc": MulticlassAccuracy(average="macro", **classes),
            }
        )

    @override
    def per_class_metric(self) -> tuple[str, Metric]:
        return "acc", MulticlassAccuracy(average="none", **self.metric_classes())

    @override
    def predict_output(self, batch: Any) -> Tensor:
        """Class probabilities of each cloud, ``[B, num_classes]`` (with test-time
        augmentation, if set); ``.argmax(1)`` is the predicted class."""
        return self.eval_logits(batch).float().softmax(1)
