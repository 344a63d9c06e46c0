"""S3DISDataModule: indoor semantic segmentation, train on crops, evaluate on whole rooms."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from lightning_pc.data.datasets.s3dis import CLASS_NAMES, S3DISCrops, S3DISRecipe, S3DISRooms
from lightning_pc.data.modules.base import PointCloudDataModule, SceneTransforms
from lightning_pc.data.packed import PackedArrays
from lightning_pc.data.palettes import S3DIS_PALETTE


class S3DISDataModule(SceneTransforms, PointCloudDataModule):
    """S3DIS (13 classes), from the raw aligned release or PointNet's hdf5 blocks.

    Raw release: ``prepare_data`` parses every room once (in parallel); training draws
    ``crops_per_room`` square crops of ``block_size`` metres per room per epoch (with
    ``block_size: null``, the whole room ``crops_per_room`` times, for transforms that crop
    themselves, as Pointcept's ``SphereCrop``), voxelised
    (a random point per ``voxel_size`` voxel), augmented and cut to ``num_points``;
    validation/test use whole rooms of ``test_area``, voxelised deterministically with
    ``inverse_index`` (every original point -> its voxel) and ``y_full`` (every original
    point's label), so ``pred[inverse_index]`` scores every original point. hdf5 layout:
    blocks, split by the area in ``room_filelist.txt``.

    Args:
        root: dataset folder (or its parent).
        test_area: held-out area (1-6).
        num_points: points per training crop (``None``: all).
        block_size: side of a training crop in metres (``None``: whole rooms).
        voxel_size: voxel edge for the default transforms (``None``: no voxelisation).
        crops_per_room: training crops per room per epoch.
        batch_size: clouds per batch (evaluation uses ``eval_batch_size``).
        eval_batch_size: rooms per evaluation batch.
        num_workers: DataLoader workers.
        **kwargs: the arguments every data module shares: ``train_transforms`` (``None``: see
            above), ``eval_transforms`` (``None``: see above), ``cache_dir``,
            ``prepare_data_per_node``, ``pin_memory``, ``cache_verify``, ``cache_fingerprint``; see
            :class:`~lightning_pc.data.PointCloudDataModule`.
    """

    def __init__(
        self,
        root: str = "data/Stanford3dDataset_v1.2_Aligned_Version",
        test_area: int = 5,
        num_points: int | None = 24000,
        block_size: float | None = 3.0,
        voxel_size: float | None = 0.04,
        crops_per_room: int = 10,
        batch_size: int = 8,
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
        if test_area not in range(1, 7):
            raise ValueError(f"test_area must be 1-6, got {test_area}")
        self.root, self.test_area, self.num_points = root, test_area, num_points
        self.block_size, self.voxel_size, self.crops_per_room = (
            block_size,
            voxel_size,
            crops_per_room,
        )
        self.class_names = list(CLASS_NAMES)

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in S3DIS_PALETTE]

    def recipe(self) -> S3DISRecipe:
        return S3DISRecipe(self.root)

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        folder = self.cache_folder() / "rooms"
        hdf5 = self.recipe().layout == "hdf5"
        areas = PackedArrays(folder).sample("area").tolist()
        train_idx = [i for i, a in enumerate(areas) if a != self.test_area]
        test_idx = [i for i, a in enumerate(areas) if a == self.test_area]
        if not test_idx:
            raise ValueError(f"S3DIS: no rooms of Area_{self.test_area} under {self.root}")
        train: S3DISRooms
        if hdf5:
            train = S3DISRooms(folder, train_idx, self.train_transform(), True, None)
        else:
            train = S3DISCrops(
                folder, train_idx, self.block_size, self.crops_per_room, self.train_transform()
            )
        test = S3DISRooms(folder, test_idx, self.eval_transform(), hdf5)
        return {"train": train, "val": test, "test": test}
