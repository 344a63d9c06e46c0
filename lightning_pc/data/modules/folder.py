"""PointCloudFolderDataModule: classify (or segment, by LAS classification codes) a user's
own folder of point files or meshes."""

from __future__ import annotations

from typing import Any

from lightning_pc.data.datasets.folder import (
    IGNORE_INDEX,
    PointCloudFolderRecipe,
    check_features,
)
from lightning_pc.data.modules.base import PackedDataModule, PackedFields


class PointCloudFolderDataModule(PackedDataModule):
    """Shape classification on ``root/{train,val,test}/<class>/<file>``.

    With ``features``, ``x`` holds RGB in 0-1 (first, so colour transforms apply) and/or unit
    normals (rotated with the points), read from PLY/PCD files (normals also from meshes).

    Classes are the sorted folder names under ``root/train`` (listed in ``__init__``, so
    ``num_classes`` is known before ``prepare_data``). A missing ``val/`` falls back to
    ``test/``; with neither there is no validation loop.

    With ``point_labels=True`` (semantic segmentation of users' LiDAR), every LAS/LAZ file
    under ``root/<split>/`` is one sample whose per-point ``y`` is its classification code
    mapped to a class index: the position of the code in ``label_codes`` (default: every
    code the train files use, read in ``__init__``), ``-1`` (:attr:`ignore_index`; pass
    ``--model.ignore_index=-1``) for other codes. Class names are the ASPRS names
    (``ground``, ``building`` ...). Other files are skipped with a warning; a LAS file
    without classification codes is refused, naming it.

    Args:
        root: dataset folder.
        features: per-point features in ``x``: ``"rgb"`` and/or ``"normal"`` (every file
            must have them).
        num_points: points per cloud per epoch (``None``: all; clouds with fewer keep all).
        points_per_mesh: points sampled on each mesh into the cache.
        sampling_seed: seed of the mesh sampling.
        batch_size: clouds per batch.
        num_workers: DataLoader workers.
        point_labels: per-point labels from LAS/LAZ classification codes.
        label_codes: with ``point_labels``, the codes to learn, in class order.
        **kwargs: the arguments every data module shares: ``train_transforms`` (``None``: normalise,
            rotate about z, scale, jitter), ``eval_transforms`` (``None``: normalise),
            ``cache_dir``, ``prepare_data_per_node``, ``pin_memory``, ``cache_verify``,
            ``cache_fingerprint``, ``eval_batch_size`` (``None``: ``batch_size``); see
            :class:`~lightning_pc.data.PointCloudDataModule`.
    """

    ignore_index = IGNORE_INDEX
    splits = {"train": ("train",), "val": ("val", "test"), "test": ("test",)}
    sampling = {"train": "random", "eval": "strided"}
    train_transform_specs = [
        "NormalizeScale",
        {"class_path": "RandomRotate", "init_args": {"axis": "z"}},
        {"class_path": "RandomScale", "init_args": {"low": 0.8, "high": 1.25}},
        {"class_path": "RandomJitter", "init_args": {"sigma": 0.01, "clip": 0.05}},
    ]
    eval_transform_specs = ["NormalizeScale"]

    def __init__(
        self,
        root: str = "data/my_clouds",
        features: list[str] | None = None,
        num_points: int | None = 1024,
        points_per_mesh: int = 10000,
        sampling_seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 4,
        point_labels: bool = False,
        label_codes: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.root, self.num_points = root, num_points
        self.points_per_mesh, self.sampling_seed = points_per_mesh, sampling_seed
        self.features = check_features(features)
        self._recipe = PointCloudFolderRecipe(
            root, points_per_mesh, sampling_seed, self.features, point_labels, label_codes
        )
        self.point_labels = point_labels
        self.class_names = self._recipe.class_names

    def recipe(self) -> PointCloudFolderRecipe:
        return self._recipe

    def fields(self, split: str) -> PackedFields:
        points = {"pos": "pos", "seg": "y"} if self.point_labels else {"pos": "pos"}
        if "rgb" in self.features:
            points["rgb"] = "x"  # x from the start: colour transforms see it
        if "normal" in self.features:
            points["normal"] = "normal"  # transformed with the points, appended to x after
        sample = {} if self.point_labels else {"label": "y"}
        return PackedFields(points, sample, ("normal",) if "normal" in self.features else ())
