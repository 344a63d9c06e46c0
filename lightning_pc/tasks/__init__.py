"""LightningModules joining the data modules and the networks: one per task."""

from lightning_pc.tasks.base import BaseTask
from lightning_pc.tasks.classification import ClassificationTask
from lightning_pc.tasks.guards import NonFiniteError, NonFiniteGuard
from lightning_pc.tasks.losses import LovaszSoftmaxLoss, WeightedLossSum, build_loss, lovasz_softmax
from lightning_pc.tasks.metrics import PartIoU, mask_part_logits
from lightning_pc.tasks.optim import layer_ids, param_groups
from lightning_pc.tasks.part_segmentation import PartSegmentationTask
from lightning_pc.tasks.seeding import EpochSeeding
from lightning_pc.tasks.semantic_segmentation import SemanticSegmentationTask, full_resolution

__all__ = [
    "BaseTask",
    "ClassificationTask",
    "EpochSeeding",
    "LovaszSoftmaxLoss",
    "NonFiniteError",
    "NonFiniteGuard",
    "PartIoU",
    "PartSegmentationTask",
    "SemanticSegmentationTask",
    "WeightedLossSum",
    "build_loss",
    "full_resolution",
    "layer_ids",
    "lovasz_softmax",
    "mask_part_logits",
    "param_groups",
]
