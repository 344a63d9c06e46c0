"""PredictScenesDataModule: run a trained segmentation model on anyone's scans."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from lightning_pc.data.collate import collate
from lightning_pc.data.datasets.scenes import SceneFragments, list_scans
from lightning_pc.data.modules.base import PointCloudDataModule
from lightning_pc.data.palettes import make_palette


class PredictScenesDataModule(PointCloudDataModule):
    """Whole scans (a file, or a folder of PLY, PCD, LAS/LAZ, NPY, TXT/XYZ/PTS files, or
    KITTI velodyne ``.bin`` scans) for
    ``predict``: no labels, no cache, any size.

    Each scan is cut lazily into overlapping fragments (square blocks of ``block_size``,
    ``stride`` apart in x-y, or spheres of diameter ``block_size`` on a ``stride`` grid),
    voxelised at ``voxel_size`` (see
    :class:`~lightning_pc.data.datasets.scenes.SceneFragments`); the task returns class
    probabilities per covered point and
    :class:`~lightning_pc.callbacks.prediction_writer.ScenePredictionWriter` votes them back
    onto every original point and writes the results (``lightning-pc predict`` adds that
    writer, with ``output_dir``, when the trainer has none).

    Example::

        lightning-pc predict --config configs/s3dis_sparse_unet.yaml \\
            --ckpt_path runs/s3dis_sparse_unet/checkpoints/best.ckpt \\
            --data PredictScenesDataModule --data.root my_scan.las \\
            --data.features '[rgb]' --data.output_dir predictions

    Args:
        root: a scan file or a folder searched recursively for scan files.
        num_classes: classes of the model (``lightning-pc predict`` fills it from
            ``--ckpt_path`` when neither this nor ``class_names`` is given).
        class_names: names of the classes (``None``: ``class_0``, ``class_1`` ...).
        features: per-point inputs the model was trained with: ``"rgb"`` and/or
            ``"intensity"`` (``in_channels`` of the task must match).
        block_size: side of a block in x-y, or a sphere's diameter (scan units; the
            training crop size).
        stride: step between fragments (blocks: ``block_size / 2`` sees every point up to
            4 times; spheres need ``block_size >= stride * sqrt(3)``).
        voxel_size: grid sampling inside a fragment (``None``: every point).
        crop: ``"block"`` (square columns, all heights) or ``"sphere"``.
        sphere_points: spheres keep at most this many points, the nearest to the centre
            (``None``: all within the radius); points left out get spheres of their own.
        output_dir: where the writer puts the results.
        batch_size: fragments per batch.
        num_workers: loader workers (each fragments whole scans).
    """

    def __init__(
        self,
        root: str = "scans",
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        features: list[str] | None = None,
        block_size: float = 3.0,
        stride: float = 1.5,
        voxel_size: float | None = 0.04,
        crop: str = "block",
        sphere_points: int | None = None,
        output_dir: str = "predictions",
        batch_size: int = 4,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if class_names is not None:
            if num_classes is not None and num_classes != len(class_names):
                raise ValueError(
                    f"num_classes={num_classes} but {len(class_names)} class_names were given"
                )
            self.class_names = list(class_names)
        elif num_classes is not None:
            if num_classes < 1:
                raise ValueError(f"num_classes must be positive, got {num_classes}")
            self.class_names = [f"class_{i}" for i in range(num_classes)]
        else:
            raise ValueError(
                "PredictScenesDataModule needs num_classes or class_names (lightning-pc "
                "predict reads num_classes from --ckpt_path)"
            )
        self.root, self.output_dir = root, output_dir
        self.files = list_scans(root)
        self.fragments = SceneFragments(
            self.files, features or [], block_size, stride, voxel_size, crop, sphere_points
        )

    @property
    def palette(self) -> list[list[int]]:
        return make_palette(self.num_classes)

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        return {"predict": self.fragments}

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.trainer is not None:
            self.fragments.rank = self.trainer.global_rank
            self.fragments.world_size = self.trainer.world_size

    def predict_dataloader(self) -> DataLoader:
        workers = min(self.num_workers, len(self.files))  # a worker fragments whole scans
        return DataLoader(
            self.fragments,
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
        )

    def _no_split(self, split: str) -> DataLoader:
        raise RuntimeError(
            f"PredictScenesDataModule has no {split} data (unlabelled scans): use `predict`"
        )

    def train_dataloader(self) -> DataLoader:
        return self._no_split("training")

    def val_dataloader(self) -> DataLoader:
        return self._no_split("validation")

    def test_dataloader(self) -> DataLoader:
        return self._no_split("test")


PredictScenes = PredictScenesDataModule
