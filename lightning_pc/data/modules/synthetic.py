"""SyntheticShapesDataModule: procedural shapes, no files; the quickstart's default data."""

from __future__ import annotations

from typing import Literal

from torch.utils.data import Dataset

from lightning_pc.data.datasets.synthetic import (
    CLASS_NAMES,
    NUM_PARTS,
    PART_OFFSETS,
    SyntheticShapes,
)
from lightning_pc.data.modules.base import PointCloudDataModule
from lightning_pc.data.transforms import TransformSpec


class SyntheticShapesDataModule(PointCloudDataModule):
    """Procedural shapes (12 classes, 27 parts) for classification or part segmentation.

    Deterministic by ``seed``: the same shapes in every process and run. With
    ``task="part_segmentation"``, ``num_classes`` / ``class_names`` are the global parts,
    ``y`` is per point and batches carry ``category``.

    Args:
        num_train: training shapes.
        num_val: validation shapes.
        num_test: test shapes.
        num_points: points per shape.
        task: ``"classification"`` or ``"part_segmentation"``.
        seed: seed of the shapes.
        noise: Gaussian noise on the points.
        batch_size: clouds per batch.
        num_workers: DataLoader workers.
        train_transforms: training transform specs (``None``: scale, up-axis rotation, jitter).
        eval_transforms: evaluation transform specs (``None``: none).
    """

    train_transform_specs = [
        {"class_path": "RandomScale", "init_args": {"low": 0.8, "high": 1.25}},
        {"class_path": "RandomRotate", "init_args": {"axis": "z"}},
        {"class_path": "RandomJitter", "init_args": {"sigma": 0.01, "clip": 0.05}},
    ]

    def __init__(
        self,
        num_train: int = 480,
        num_val: int = 120,
        num_test: int = 120,
        num_points: int = 1024,
        task: Literal["classification", "part_segmentation"] = "classification",
        seed: int = 0,
        noise: float = 0.01,
        batch_size: int = 32,
        num_workers: int = 0,
        train_transforms: list[TransformSpec] | None = None,
        eval_transforms: list[TransformSpec] | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, train_transforms, eval_transforms)
        if task not in ("classification", "part_segmentation"):
            raise ValueError(f"unknown task {task!r}")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.num_points, self.task, self.seed, self.noise = num_points, task, seed, noise
        if task == "classification":
            self.class_names = list(CLASS_NAMES)
        else:
            self.class_names = [
                f"{name}_{k}"
                for i, name in enumerate(CLASS_NAMES)
                for k in range(PART_OFFSETS[i + 1] - PART_OFFSETS[i])
            ]
        self.category_names = list(CLASS_NAMES)
        self.num_parts = NUM_PARTS
        self.part_offsets = list(PART_OFFSETS)

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        out: dict[str, Dataset] = {}
        split: Literal["train", "val", "test"]
        for split, n in (
            ("train", self.sizes["train"]),
            ("val", self.sizes["val"]),
            ("test", self.sizes["test"]),
        ):
            out[split] = SyntheticShapes(
                n,
                self.num_points,
                split,
                self.seed,
                self.task,
                self.noise,
                self.split_transform(split),  # type: ignore[arg-type]
            )
        return out
