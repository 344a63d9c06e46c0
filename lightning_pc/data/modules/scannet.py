"""ScanNetDataModule: indoor scene semantic segmentation, ScanNet20 or ScanNet200."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from lightning_pc.data.datasets.scannet import (
    CLASS_NAMES_20,
    IGNORE_INDEX,
    ScanNetRecipe,
    class_names_200,
)
from lightning_pc.data.modules.base import PackedDataModule, PackedFields, SceneTransforms


class ScanNetDataModule(SceneTransforms, PackedDataModule):
    """ScanNet v2 (``benchmark``: 20 classes or ScanNet200; ``ignore_index = -1``).

    Reads the raw release or Pointcept's preprocessed layout (see
    :mod:`lightning_pc.data.datasets.scannet`); both label sets are cached, so switching
    ``benchmark`` does not rebuild. Training uses whole scenes voxelised at ``voxel_size``
    (a random point per voxel), rotated about z, scaled, jittered and colour-augmented, cut
    to ``num_points``; validation and test voxelise deterministically with
    ``inverse_index``/``y_full`` and score every original vertex. ``x`` is RGB in 0-1
    (``in_channels: 3``). ``predict`` uses the test scenes when present, else val.

    Args:
        root: the release folder.
        benchmark: ``"scannet20"`` or ``"scannet200"``.
        voxel_size: voxel edge in metres (``None``: no voxelisation).
        num_points: points per training scene after voxelisation (``None``: all).
        batch_size: scenes per training batch.
        eval_batch_size: scenes per evaluation batch.
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

    def __init__(
        self,
        root: str = "data/scannet",
        benchmark: Literal["scannet20", "scannet200"] = "scannet20",
        voxel_size: float | None = 0.02,
        num_points: int | None = 100000,
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
        if benchmark not in ("scannet20", "scannet200"):
            raise ValueError(f"benchmark must be 'scannet20' or 'scannet200', got {benchmark!r}")
        self.root, self.benchmark = root, benchmark
        self.voxel_size, self.num_points = voxel_size, num_points
        self.class_names = (
            list(CLASS_NAMES_20)
            if benchmark == "scannet20"
            else class_names_200(Path(root).expanduser())
        )

    def recipe(self) -> ScanNetRecipe:
        return ScanNetRecipe(self.root)

    def fields(self, split: str) -> PackedFields:
        if split == "test":  # no labels
            return PackedFields({"pos": "pos", "rgb": "x"})
        label = "segment20" if self.benchmark == "scannet20" else "segment200"
        return PackedFields({"pos": "pos", "rgb": "x", label: "y"})
