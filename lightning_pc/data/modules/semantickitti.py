"""SemanticKITTIDataModule: outdoor LiDAR semantic segmentation (19 classes)."""

from __future__ import annotations

from typing import Any

from lightning_pc.data.datasets.semantickitti import (
    CLASS_NAMES,
    IGNORE_INDEX,
    SemanticKITTIRecipe,
)
from lightning_pc.data.modules.base import PackedDataModule, PackedFields, SceneTransforms
from lightning_pc.data.transforms import TransformSpec

#: Augmentations of LiDAR sweeps: rotation about the vertical, scale, jitter (no colour).
_LIDAR_AUGMENTATIONS: list[TransformSpec] = [
    {"class_path": "RandomRotate", "init_args": {"axis": "z"}},
    {"class_path": "RandomScale", "init_args": {"low": 0.9, "high": 1.1}},
    {"class_path": "RandomJitter", "init_args": {"sigma": 0.005, "clip": 0.02}},
]


class SemanticKITTIDataModule(SceneTransforms, PackedDataModule):
    """SemanticKITTI (19 classes, ``ignore_index = -1``), from the official release layout.

    ``prepare_data`` reads every scan once into the cache (labels through the official
    learning map). Training uses whole scans, voxelised at ``voxel_size`` (a random point
    per voxel), rotated about z, scaled and flipped, cut to ``num_points``; validation and
    test voxelise deterministically with ``inverse_index`` and ``y_full``, so metrics are
    computed on every original point. ``x`` is the intensity (``in_channels: 1``).
    ``predict`` uses the test sequences (11-21, unlabelled) when present, else val.

    Args:
        root: dataset folder (holding ``sequences/``) or its parent.
        voxel_size: voxel edge in metres (``None``: no voxelisation).
        num_points: points per training scan after voxelisation (``None``: all).
        batch_size: scans per training batch.
        eval_batch_size: scans per evaluation batch.
        num_workers: DataLoader workers.
        **kwargs: the arguments every data module shares: ``train_transforms`` (``None``: see
            above), ``eval_transforms`` (``None``: see above), ``cache_dir``,
            ``prepare_data_per_node``, ``pin_memory``, ``cache_verify``, ``cache_fingerprint``; see
            :class:`~lightning_pc.data.PointCloudDataModule`.
    """

    ignore_index = IGNORE_INDEX
    # test/ (unlabelled) only for predict, which falls back to val
    splits = {"train": ("train",), "val": ("val",), "test": ("val",), "predict": ("test", "val")}
    sampling = None  # whole scenes: the transforms voxelise and subsample
    augmentations = _LIDAR_AUGMENTATIONS

    def __init__(
        self,
        root: str = "data/semantickitti",
        voxel_size: float | None = 0.05,
        num_points: int | None = 120000,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            eval_batch_size=eval_batch_size,
            **kwargs,
        )
        self.root, self.voxel_size, self.num_points = root, voxel_size, num_points
        self.class_names = list(CLASS_NAMES)

    def recipe(self) -> SemanticKITTIRecipe:
        return SemanticKITTIRecipe(self.root)

    def fields(self, split: str) -> PackedFields:
        if split == "test":  # sequences 11-21: no labels
            return PackedFields({"pos": "pos", "intensity": "x"})
        return PackedFields({"pos": "pos", "intensity": "x", "label": "y"})
