"""ShapeNetPartDataModule: part segmentation with global category and part ids."""

from __future__ import annotations

from typing import Any

from lightning_pc.data.datasets.shapenetpart import (
    CATEGORY_NAMES,
    PART_NAMES,
    PART_OFFSETS,
    ShapeNetPartRecipe,
    check_categories,
)
from lightning_pc.data.modules.base import PackedDataModule, PackedFields


class ShapeNetPartDataModule(PackedDataModule):
    """ShapeNetPart part segmentation (16 categories, 50 parts).

    Batches carry ``y [N]`` (global part ids), ``category [B]`` (global category index, also
    when ``categories`` selects a subset) and, with ``use_normals``, normals in ``x``.
    ``num_classes`` is the number of parts (50); ``part_offsets[c]:part_offsets[c + 1]`` are
    category ``c``'s parts (for masking logits and per-shape IoU).

    Args:
        root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        categories: category names to keep (``None``: all 16).
        num_points: points per shape per epoch (``None``: all).
        use_normals: put normals in ``x``.
        batch_size: clouds per batch.
        num_workers: DataLoader workers.
        **kwargs: the arguments every data module shares: ``train_transforms`` (``None``: scale +
            shift), ``eval_transforms`` (``None``: none), ``cache_dir``, ``prepare_data_per_node``,
            ``pin_memory``, ``cache_verify``, ``cache_fingerprint``, ``eval_batch_size``
            (``None``: ``batch_size``); see
            :class:`~lightning_pc.data.PointCloudDataModule`.
    """

    sampling = {"train": "random", "eval": "strided"}
    train_transform_specs = [
        {"class_path": "RandomScale", "init_args": {"low": 0.8, "high": 1.25}},
        {"class_path": "RandomTranslate", "init_args": {"max_shift": 0.1}},
    ]

    def __init__(
        self,
        root: str = "data/shapenetcore_partanno_segmentation_benchmark_v0_normal",
        categories: list[str] | None = None,
        num_points: int | None = 2048,
        use_normals: bool = False,
        batch_size: int = 16,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.root, self.num_points, self.use_normals = root, num_points, use_normals
        self.categories = check_categories(categories)
        self.class_names = list(PART_NAMES)
        self.category_names = list(CATEGORY_NAMES)
        self.num_categories = len(CATEGORY_NAMES)
        self.part_offsets = list(PART_OFFSETS)

    def recipe(self) -> ShapeNetPartRecipe:
        return ShapeNetPartRecipe(self.root, self.categories)

    def fields(self, split: str) -> PackedFields:
        normal = {"normal": "normal"} if self.use_normals else {}
        return PackedFields(
            {"pos": "pos", "part": "y", **normal}, {"category": "category"}, tuple(normal)
        )
