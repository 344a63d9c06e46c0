"""LightningModules joining the data modules and the networks: one per task."""

from lightning_pc.tasks.base import BaseTask
from lightning_pc.tasks.classification import ClassificationTask
from lightning_pc.tasks.guards import NonFiniteError, NonFiniteGuard
from lightning_pc.tasks.metrics import PartIoU, mask_part_logits
from lightning_pc.tasks.part_segmentation import PartSegmentationTask
from lightning_pc.tasks.seeding import EpochSeeding
from lightning_pc.tasks.semantic_segmentation import SemanticSegmentationTask, full_resolution

__all__ = [
    "BaseTask",
    "ClassificationTask",
    "EpochSeeding",
    "NonFiniteError",
    "NonFiniteGuard",
    "PartIoU",
    "PartSegmentationTask",
    "SemanticSegmentationTask",
    "full_resolution",
    "mask_part_logits",
]
