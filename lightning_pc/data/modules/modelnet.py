"""ModelNetDataModule: ModelNet10/40 from any of its three layouts, through the cache."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from lightning_pc.data.datasets.modelnet import ModelNetRecipe, class_names_for
from lightning_pc.data.modules.base import PackedDataModule, PackedFields


class ModelNetDataModule(PackedDataModule):
    """ModelNet10/40 shape classification.

    The layout (raw OFF meshes, ``modelnet40_normal_resampled``, or the 2048-point hdf5
    release) is detected under ``root``. ``prepare_data`` parses it once into the cache
    (sampling ``points_per_shape`` points on each mesh's faces for the raw layout); each
    epoch draws ``num_points`` of them (a random subset in training, the first ones in
    evaluation). The test split doubles as the validation split, as is customary.

    Args:
        root: dataset folder (or its parent).
        num_classes: 40 or 10.
        num_points: points per cloud fed to the model.
        use_normals: put normals in ``x`` (not available in the hdf5 layout).
        points_per_shape: points sampled per mesh into the cache (raw layout).
        sampling_seed: seed of the mesh sampling (raw layout).
        batch_size: clouds per batch.
        num_workers: DataLoader workers.
        **kwargs: the arguments every data module shares: ``train_transforms`` (``None``: DGCNN's
            scale + shift), ``eval_transforms`` (``None``: none), ``cache_dir``,
            ``prepare_data_per_node``, ``pin_memory``, ``cache_verify``, ``cache_fingerprint``,
            ``eval_batch_size`` (``None``: ``batch_size``); see
            :class:`~lightning_pc.data.PointCloudDataModule`.
    """

    splits = {"train": ("train",), "val": ("test",), "test": ("test",)}
    sampling = {"train": "random", "eval": "first"}
    train_transform_specs = [  # DGCNN's
        {"class_path": "RandomScale", "init_args": {"low": 2 / 3, "high": 1.5}},
        {"class_path": "RandomTranslate", "init_args": {"max_shift": 0.2}},
    ]

    def __init__(
        self,
        root: str = "data/ModelNet40",
        num_classes: int = 40,
        num_points: int = 1024,
        use_normals: bool = False,
        points_per_shape: int = 10000,
        sampling_seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.class_names = class_names_for(num_classes)
        self.root, self.num_points, self.use_normals = root, num_points, use_normals
        self.points_per_shape, self.sampling_seed = points_per_shape, sampling_seed
        self._num_classes = num_classes

    def recipe(self) -> ModelNetRecipe:
        return ModelNetRecipe(
            self.root, self._num_classes, self.points_per_shape, self.sampling_seed
        )

    def fields(self, split: str) -> PackedFields:
        normal = {"normal": "normal"} if self.use_normals else {}
        return PackedFields({"pos": "pos", **normal}, {"label": "y"}, tuple(normal))

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        if self.use_normals and self.recipe().layout == "hdf5":
            raise ValueError("use_normals=True: the hdf5 ModelNet layout has no normals")
        return super().build_datasets(stage)
